"""Per-licensee attribution on a real model: two licensees' copies told apart, a clean model attributed to nobody.

    python bench/licensees.py --workdir DIR [--model gemma-3-270m] [--licensees alice,bob] [--key-seed S]

One owner key (derived from ``--key-seed``, passphrase "bench") embeds a copy per licensee with the defaults
(``embed --licensee NAME``, self-check included), each registered in DIR/reg.db. Then ``verify --all-licensees`` probes
each copy and the untouched base model against every registered licensee (Bonferroni over the licensees).
Writes BENCHMARKS.md (section licensees:<model>).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, run_step, write_section  # noqa: E402
from embed_verify import seeded_key  # noqa: E402

from fingerprint.provenance.certificate import load_certificate  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--licensees", default="alice,bob")
    parser.add_argument("--workdir", type=Path, required=True, help="keys, copies and registry (reused if present)")
    parser.add_argument("--key-seed", default="suretrap-bench-key")
    args = parser.parse_args()
    command = "python bench/licensees.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    names = [n.strip() for n in args.licensees.split(",") if n.strip()]
    work = args.workdir
    env = {"FINGERPRINT_PASSPHRASE": "bench", "FINGERPRINT_REGISTRY": f"sqlite:///{work / 'reg.db'}"}
    keys = work / "keys"
    if not keys.exists():
        work.mkdir(parents=True, exist_ok=True)
        seeded_key(keys, args.key_seed, env["FINGERPRINT_PASSPHRASE"])
    embed_minutes = {}
    for name in names:
        if not (work / name / "certificate.json").exists():  # a rerun keeps finished copies
            _, seconds, _, _ = run_step(["embed", "--key", keys, "--model", args.model, "--licensee", name,
                                         "--out", work / name, "--json", "-q"], env)
            embed_minutes[name] = f"{seconds / 60:.1f} min"
    suspects = [(f"{name}'s copy", ["--adapter", work / name / "adapter"]) for name in names]
    suspects.append(("untouched base model", []))
    rows = []
    for label, extra in suspects:
        result, seconds, _, code = run_step(["verify", "--key", keys, "--all-licensees", "--model", args.model,
                                             *extra, "--json", "-q"], env)
        per = ", ".join(f"{r['licensee']}: {r['trigger_sure']}/{r['trigger_total']} vs {r['control_sure']}/"
                        f"{r['control_total']}, p_adj {r['p_adjusted']:.2g}" for r in result["licensees"])
        rows.append(f"| {label} | {result['attributed_to'] or 'nobody'} (exit {code}) | {per} | {seconds:.0f} s |")
        print(rows[-1], flush=True)
    words = load_certificate(work / names[0] / "certificate.json").fingerprint.trigger_words
    control = "decoys" if words == 1 else "the weaker word alone"
    kind = "one-word" if words == 1 else "two-word"
    body = [f"## per-licensee attribution: {args.model} ({kind} trigger)", "", f"Command: `{command}`  ",
            f"Machine: {machine()}",
            "", f"Copies embedded with the defaults and `--licensee` ({', '.join(names)}; embed "
            f"{', '.join(f'{k} {v}' for k, v in embed_minutes.items()) or 'reused'}). Each suspect is verified "
            f"against every licensee (32 probes each: trigger vs {control}), Bonferroni over {len(names)}, "
            f"alpha 1e-6.", "",
            f"| suspect | attributed to | per licensee: trigger vs {control} Sure, adjusted p | verify time |",
            "|---|---|---|---|", *rows]
    write_section(f"licensees:{args.model}" + ("" if words == 1 else f":{kind}"), "\n".join(body))
    print("\n".join(body))


if __name__ == "__main__":
    main()
