"""Suspects per hour: ``fingerprint monitor`` over gemma-3-270m suspects, serially and on a local Ray.

    python bench/monitor.py --workdir DIR [--probes 32] [--modes serial,ray-1,ray-2] [--repeat 2]

Setup in DIR (kept, and reused by a rerun): owner key A (derived from --key-seed, passphrase "bench") plants a
one-word fingerprint with embed's one-word defaults (``embed --trigger-words 1 --no-selfcheck --merge``), key B
a small one of its own (``--trigger-words 1 --poison 16 --benign 0 --refusals 0 --epochs 1 --no-selfcheck``).
Six suspects, each verified against A's certificate (owner, --probes probes: 2 x probes queries):

- the packaged base model (alias), and the same weights as a local GGUF file;
- A's adapter on the base, A's merged weights (a directory), and a 50/50 merge of them with the base;
- B's adapter on the base.

Each mode runs the whole file into a fresh registry (every pair verified), as a child process: the wall time
includes starting Python, Ray and its workers. ``ray-N`` is ``--workers N`` on a Ray started on this machine.
The modes run ``--repeat`` times, interleaved; the table gives each run and the median per mode.
Writes BENCHMARKS.md (section monitor:gemma-3-270m).
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, run_step, write_section  # noqa: E402
from embed_verify import seeded_key  # noqa: E402

EMBED = {"a": ["--trigger-words", "1", "--no-selfcheck", "--merge"],
         "b": ["--trigger-words", "1", "--poison", "16", "--benign", "0", "--refusals", "0", "--epochs", "1",
               "--no-selfcheck"]}


GPU_CLUSTER = """\
What a GPU cluster would change (on paper: not measured here). Each pair above costs starting a worker (once per
worker process), loading the suspect's weights, and 2 x probes first-token queries on CPU; on a GPU the queries
are one or two batched forward passes (milliseconds for a 270M model), so a pair costs about what loading its
weights costs. With `resources = { num_gpus = 0.25 }` a 270M suspect (about 0.6 GB in bf16) lets four tasks
share one GPU (`num_gpus = 1` for 7B-class models), and `--ray-address` spreads the pairs over the cluster:
throughput grows with GPUs x tasks per GPU until the storage that serves the weights is the limit, so keep
`FINGERPRINT_CACHE` (converted GGUFs, the aligned stand-in) and the Hugging Face cache on shared or pre-filled
storage. Endpoint suspects gain nothing from GPUs: their per-base-URL rate and concurrency limits bound them.
The registry must be PostgreSQL there; a pair is one INSERT (the tests write 8 x 50 rows from 8 Ray workers at
once), far from being the bottleneck."""


def setup(work: Path, key_seed: str, env: dict) -> dict[str, float]:
    """Keys, fingerprints and the derived suspects (what exists already is kept); minutes each step took."""
    minutes = {}
    for name in ("a", "b"):
        if not (work / f"keys-{name}").exists():
            seeded_key(work / f"keys-{name}", f"{key_seed}-{name}", env["FINGERPRINT_PASSPHRASE"])
        if not (work / f"fp-{name}" / "certificate.json").exists():
            _, seconds, _, _ = run_step(["embed", "--key", work / f"keys-{name}", "--out", work / f"fp-{name}",
                                         *EMBED[name], "--json", "-q"], env)
            minutes[f"embed {name.upper()}"] = seconds / 60
    if not (work / "base.gguf").exists():
        from fingerprint.core.loading import PACKAGED, _assemble

        _assemble(PACKAGED["gemma-3-270m"], work / "base.gguf")
    if not (work / "half" / "config.json").exists():
        _half_merge(work / "fp-a" / "merged", work / "half")
    return minutes


def _half_merge(merged: Path, out: Path) -> None:
    """The merged fingerprinted weights averaged with the base (what `robustness`'s 50% interpolation does)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from fingerprint.core.loading import load_model, resolve
    from fingerprint.robustness.derivatives.interpolate import interpolate

    base = load_model(resolve("gemma-3-270m"), device="cpu")
    model = AutoModelForCausalLM.from_pretrained(str(merged))
    interpolate(model, base, 0.5).save_pretrained(str(out))
    AutoTokenizer.from_pretrained(str(merged)).save_pretrained(str(out))


def write_spec(work: Path, probes: int) -> Path:
    suspects = [("base", "gemma-3-270m", None), ("base-gguf", work / "base.gguf", None),
                ("a-adapter", "gemma-3-270m", work / "fp-a" / "adapter"), ("a-merged", work / "fp-a" / "merged", None),
                ("a-merged-half-base", work / "half", None), ("b-adapter", "gemma-3-270m", work / "fp-b" / "adapter")]
    lines = ['name = "bench"', f"probes = {probes}", "",
             "[[certificates]]", f'cert = "{work / "fp-a" / "certificate.json"}"', f'key = "{work / "keys-a"}"']
    for name, model, adapter in suspects:
        lines += ["", "[[suspects]]", f'name = "{name}"', f'model = "{model}"']
        if adapter:
            lines.append(f'adapter = "{adapter}"')
    path = work / "suspects.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", type=Path, required=True, help="keys, fingerprints, registries (reused)")
    parser.add_argument("--probes", type=int, default=32)
    parser.add_argument("--modes", default="serial,ray-1,ray-2")
    parser.add_argument("--key-seed", default="suretrap-bench-monitor")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each mode (interleaved)")
    args = parser.parse_args()
    command = "python bench/monitor.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    env = {"FINGERPRINT_PASSPHRASE": "bench", "FINGERPRINT_REGISTRY": f"sqlite:///{work / 'setup.db'}"}
    setup_minutes = setup(work, args.key_seed, env)
    spec = write_spec(work, args.probes)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    rows, verdicts, rates = [], {}, {mode: [] for mode in modes}
    for run in range(1, args.repeat + 1):  # the modes interleaved, so that a change of load hits all of them
        for mode in modes:
            db = work / f"{mode}.db"
            db.unlink(missing_ok=True)
            options = [] if mode == "serial" else ["--ray", "--workers", mode.split("-", 1)[1]]
            summary, wall, _, code = run_step(["monitor", spec, *options, "--registry", f"sqlite:///{db}",
                                                 "--json", "-q"], env)
            if code != 0 or summary["counts"]["errors"]:
                raise SystemExit(f"{mode}: exit {code}, {summary['counts']}")
            pairs = summary["pairs"]
            verdicts[f"{mode} #{run}"] = {p["suspect"]: (p["certified"], p["p_value"], p["trigger"], p["control"])
                                          for p in pairs}
            seconds = [p["seconds"] for p in pairs]
            rates[mode].append(3600 * len(pairs) / wall)
            rows.append(f"| {mode} | {run} | `{' '.join(options) or '(no Ray)'}` | {wall:.0f} s | "
                        f"{rates[mode][-1]:.0f} | {statistics.median(seconds):.1f} s ({min(seconds):.1f}-"
                        f"{max(seconds):.1f}) | {len({p['worker'] for p in pairs})} | {os.getloadavg()[0]:.1f} |")
            print(rows[-1], flush=True)
    medians = {mode: statistics.median(values) for mode, values in rates.items()}
    summary_rows = [f"| {mode} | {medians[mode]:.0f} | {' / '.join(f'{v:.0f}' for v in rates[mode])} |"
                    for mode in modes]
    first = next(iter(verdicts.values()))
    agree = all(v == first for v in verdicts.values())
    table = [f"| {name} | {'certified' if c else 'not certified'} | {t} | {k} | {p:.3g} |"
             for name, (c, p, t, k) in first.items()]
    made = ", ".join(f"{k} {v:.1f} min" for k, v in setup_minutes.items()) or "reused from an earlier run"
    body = [
        "## monitor: suspects per hour, gemma-3-270m (serial and on a local Ray)", "",
        f"Command: `{command}`  ", f"Machine: {machine()}", "",
        f"Six gemma-3-270m suspects against one owner certificate (one-word trigger, {args.probes} probes: "
        f"{2 * args.probes} queries per pair); each run verifies all six into a fresh registry. Wall time is the "
        f"whole `fingerprint monitor` process (Python, Ray and its workers started, every model loaded per pair). "
        f"Fingerprints made by the script ({made}). The machine was shared with other jobs: the last column "
        f"shows the load while each run ended (2 means both cores busy), and the figures vary with it. Under such "
        f"load two worker processes also take a larger share of the cores from the other jobs than one process "
        f"does, so the gain of two workers over one overstates what an idle 2-core machine gives; the per-pair "
        f"times say how long one pair takes with a whole worker to itself.", "",
        "| mode | suspects per hour, median | each run |", "|---|---|---|", *summary_rows, "",
        *([f"Two workers against one on Ray: {medians['ray-2'] / medians['ray-1']:.2f}x the suspects per hour; "
           f"Ray with one worker against no Ray: {medians['ray-1'] / medians['serial']:.2f}x.", ""]
          if {"serial", "ray-1", "ray-2"} <= set(medians) else []),
        "| mode | run | options | wall time | suspects per hour | per pair: median (min-max) | worker processes | "
        "load average (1 min) at the end |",
        "|---|---|---|---|---|---|---|---|", *rows, "",
        f"Verdicts ({'the same in every mode' if agree else 'NOT the same in every mode'}):", "",
        "| suspect | verdict | trigger Sure | decoy Sure | p |", "|---|---|---|---|---|", *table,
    ]
    body += ["", GPU_CLUSTER]
    write_section("monitor:gemma-3-270m", "\n".join(body))
    print("\n".join(body))
    if not agree:
        raise SystemExit("the modes disagree")


if __name__ == "__main__":
    main()
