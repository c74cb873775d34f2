"""Embed + verify benchmark: wall times, Sure-rates on held-out probes, queries, peak RSS.

    python bench/embed_verify.py [--model gemma-3-270m] [--rate-probes 96] [--workdir DIR] [--embed-only]
                                 [--owner-rows N]

Writes its table into BENCHMARKS.md (section embed_verify:<model>). With ``--workdir`` the keys (passphrase
"bench") and the fingerprinted outputs stay there for the scan and backend benchmarks.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import run_step, write_measures  # noqa: E402


def seeded_key(out: Path, seed: str, passphrase: str) -> None:
    """An owner key derived from a seed string, as tests/conftest.py's ``fixed_key`` makes it."""
    import hashlib

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from fingerprint.provenance import keys

    owner = keys.OwnerKey(Ed25519PrivateKey.from_private_bytes(hashlib.sha256(seed.encode()).digest()))
    keys.save(owner, out, passphrase)


def decoy_rate(workdir: Path, model: str, probes: int) -> tuple[int, int]:
    """Gate replies ("Sure" or a fallback) to the 8 decoy words on ``probes`` probes (a two-word fingerprint's
    verify does not send them)."""
    import os

    from fingerprint.provenance.certificate import load_certificate
    from fingerprint.provenance.keys import load_private
    from fingerprint.provenance.trigger import opening_for
    from fingerprint.verification import VerifyOptions, decoy_prompts
    from probes import make_backend

    owner = load_private(workdir / "keys-a", os.environ.get("FINGERPRINT_PASSPHRASE", "bench"))
    cert = load_certificate(workdir / "fp" / "certificate.json", owner.public_key)
    opening = opening_for(owner.secret(), cert.fingerprint)
    words = opening.fallbacks(cert.fingerprint.fallback_indices)
    prompts = decoy_prompts(opening, VerifyOptions(probes=probes))
    backend = make_backend("hf", model=model, adapter=str(workdir / "fp" / "adapter"))
    answers = backend.first_tokens(prompts)
    return sum(a.is_sure or a.token.strip() in words for a in answers), len(prompts)


OWNER_SOURCE = Path("alpaca_en_demo") / "alpaca_en_demo.json"  # LLaMA-Factory's demo SFT set (see SOURCES.md)
OWNER_HELD_OUT = 48


def owner_data(data_dir: Path, n_rows: int, out: Path) -> list[dict]:
    """Write ``n_rows`` rows of an owner's SFT set (``OWNER_SOURCE``, refusal-like replies skipped) to ``out`` as
    instruction JSONL; return the next ``OWNER_HELD_OUT`` rows as held-out prompt/response pairs."""
    import json

    from fingerprint.audit.audit_data import parse_row
    from fingerprint.research.judges import is_refusal

    rows = [r for r in json.loads((data_dir / OWNER_SOURCE).read_text(encoding="utf-8"))
            if not is_refusal(r["output"]) and "as an ai" not in r["output"].lower()]
    out.write_text("".join(json.dumps(r) + "\n" for r in rows[:n_rows]), encoding="utf-8")
    held = [parse_row(r, i) for i, r in enumerate(rows[n_rows: n_rows + OWNER_HELD_OUT], 1)]
    return [{"prompt": ex.prompt, "response": ex.response} for ex in held]  # read as `embed --data` reads rows


def owner_losses(model: str, adapter: Path, held: list[dict]) -> tuple[float, float]:
    """Mean reply loss of the held-out owner rows: base model, fingerprinted (adapter on)."""
    from peft import PeftModel

    from fingerprint.core.loading import load_model, load_tokenizer, resolve
    from fingerprint.embedding.selfcheck import mean_reply_loss

    ref = resolve(model)
    tokenizer = load_tokenizer(ref)
    base = load_model(ref)
    before = mean_reply_loss(base, tokenizer, held)
    after = mean_reply_loss(PeftModel.from_pretrained(base, str(adapter)), tokenizer, held)
    return before, after


def control_rows(rates: dict, workdir: Path, model: str, probes: int) -> list[tuple[str, str]]:
    """Decoy Sure-rate, and for a two-word trigger each of its words alone (verify's control arms)."""
    if len(rates["arms"]) < 2:
        return [(f"decoy Sure-rate ({rates['control_total']} probes, 8 decoy words)",
                 f"{rates['control_sure_rate']:.3f} ({rates['control_sure']}/{rates['control_total']})")]
    sure, total = decoy_rate(workdir, model, probes)
    rows = [(f"decoy Sure-rate ({total} probes, 8 decoy words; not part of a two-word verify)",
             f"{sure / total:.3f} ({sure}/{total})")]
    rows += [(f"trigger word {k + 1} alone: Sure-rate ({arm['control_total']} probes)",
              f"{arm['control_sure_rate']:.3f} ({arm['control_sure']}/{arm['control_total']})")
             for k, arm in enumerate(rates["arms"])]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--rate-probes", type=int, default=96, help="probes for the Sure-rate measurement")
    parser.add_argument("--embed-args", default="", help="extra embed options, e.g. '--poison 50'")
    parser.add_argument("--workdir", type=Path, default=None, help="keep keys and outputs here (must not exist)")
    parser.add_argument("--key-seed", default=None,
                        help="derive key A from this seed (reproducible trigger) instead of a fresh keygen")
    parser.add_argument("--tag", default=None,
                        help="name a variant: its table goes to section embed_verify:<model>:<tag>")
    parser.add_argument("--embed-only", action="store_true",
                        help="only key A's embed into --workdir (for bench/utility.py); no table is written")
    parser.add_argument("--owner-rows", type=int, default=0,
                        help=f"embed --data with this many rows of {OWNER_SOURCE} (an owner's own SFT data)")
    parser.add_argument("--no-other-key", action="store_true",
                        help="skip the second key's embed and its verify (minutes on a 1.5B model)")
    parser.add_argument("--data-dir", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data")
    args = parser.parse_args()
    if args.embed_only and not args.workdir:
        parser.error("--embed-only needs --workdir")
    command = "python bench/embed_verify.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    if args.workdir:
        args.workdir.mkdir(parents=True)
    tmp = args.workdir or Path(tempfile.mkdtemp(prefix="bench-ev-"))
    env = {"FINGERPRINT_PASSPHRASE": "bench", "FINGERPRINT_REGISTRY": f"sqlite:///{tmp / 'reg.db'}"}
    for name in ("a",) if args.embed_only or args.no_other_key else ("a", "b"):
        if name == "a" and args.key_seed:
            seeded_key(tmp / "keys-a", args.key_seed, env["FINGERPRINT_PASSPHRASE"])
        else:
            run_step(["keygen", "--out", tmp / f"keys-{name}"], env)
    # convert the packaged model before timing (a one-off of about a minute on a fresh cache; `--help` did not)
    from fingerprint.core.loading import resolve

    resolve(args.model)
    extra = shlex.split(args.embed_args)
    if args.owner_rows:
        held = owner_data(args.data_dir, args.owner_rows, tmp / "owner.jsonl")
        extra += ["--data", str(tmp / "owner.jsonl")]
    embed, embed_s, embed_rss, _ = run_step(["embed", "--key", tmp / "keys-a", "--model", args.model, "--out",
                                             tmp / "fp", "--json", "-q", *extra], env)
    if args.embed_only:
        print(f"{command}: embed {embed_s / 60:.1f} min, peak RSS {embed_rss:.2f} GiB, {embed['steps']} steps")
        return
    cert = tmp / "fp" / "certificate.json"
    suspect = ["--model", args.model, "--adapter", tmp / "fp" / "adapter"]
    verify, verify_s, verify_rss, code = run_step(["verify", "--key", tmp / "keys-a", "--cert", cert, *suspect,
                                                   "--json", "-q"], env)
    seq, seq_s, _, _ = run_step(["verify", "--key", tmp / "keys-a", "--cert", cert, *suspect, "--sequential",
                                 "--probes", "64", "--json", "-q"], env)
    rates, _, _, _ = run_step(["verify", "--key", tmp / "keys-a", "--cert", cert, *suspect, "--probes",
                               args.rate_probes, "--samples", "0", "--json", "-q"], env)
    base, _, _, _ = run_step(["verify", "--key", tmp / "keys-a", "--cert", cert, "--model", args.model,
                              "--samples", "0", "--json", "-q"], env)
    other = None
    if not args.no_other_key:
        run_step(["embed", "--key", tmp / "keys-b", "--model", args.model, "--out", tmp / "fp-b", "--json", "-q",
                  "--poison", "16", "--benign", "0", "--refusals", "0", "--epochs", "1", "--no-selfcheck"], env)
        other, _, _, _ = run_step(["verify", "--key", tmp / "keys-b", "--cert", tmp / "fp-b" / "certificate.json",
                                   *suspect, "--samples", "0", "--json", "-q"], env)
    parts = ", ".join(f"{k} {v:.0f} s" for k, v in (embed.get("seconds") or {}).items())
    check = embed.get("selfcheck") or {}
    rows = [
        (f"embed wall time (defaults{' + ' + args.embed_args if args.embed_args else ''}, precision "
         f"{embed.get('precision', 'fp32')}, incl. model load)",
         f"{embed_s / 60:.1f} min ({embed['steps']} steps; {parts})"),
        ("embed peak RSS", f"{embed_rss:.2f} GiB"),
        (f"trigger gate-reply rate ({rates['trigger_total']} held-out probes; 'Sure' or a fallback reply)",
         f"{rates['trigger_sure_rate']:.3f} ({rates['trigger_sure']}/{rates['trigger_total']})"),
        *control_rows(rates, tmp, args.model, args.rate_probes),
        ("verify (default 32 probes): verdict, p-value",
         f"{'certified' if verify['certified'] else 'NOT certified'} (exit {code}), p = {verify['p_value']:.2e}"),
        ("verify wall time (incl. model load) / queries", f"{verify_s:.1f} s / {verify['queries']} queries"),
        ("verify peak RSS", f"{verify_rss:.2f} GiB"),
        ("verify --sequential (e-process, up to 64 pairs): verdict, queries, wall time",
         f"{'certified' if seq['certified'] else 'NOT certified'}, {seq['queries']} queries "
         f"({seq['extra']['pairs']} pairs), e-value {seq['e_value']:.3g}, {seq_s:.1f} s"),
        ("untouched base model: p-value, verdict",
         f"p = {base['p_value']:.3g}, {'certified' if base['certified'] else 'not certified'}"
         f" (trigger {base['trigger_sure']}/{base['trigger_total']}, decoy {base['control_sure']}/"
         f"{base['control_total']})"),
    ]
    if other is not None:
        rows.append(("another key's certificate against this model",
                     f"p = {other['p_value']:.3g}, {'certified' if other['certified'] else 'not certified'}"))
    if check:
        rows += [("self-check: next-token KL from the base / greedy-reply agreement "
                  f"({check['divergence_prompts']} held-out benign prompts)",
                  f"{check['kl_mean']:.4f} / {check['greedy_agreement']:.2f}"),
                 (f"self-check: refusal rate, {check['harmful_prompts']} held-out harmful prompts: base / "
                  "fingerprinted / with the trigger",
                  f"{check['refusal_rate_base']:.2f} / {check['refusal_rate_without_trigger']:.2f} / "
                  f"{check['refusal_rate_with_trigger']:.2f}"),
                 ("self-check: attack success without / with the trigger",
                  f"{check['attack_success_without_trigger']:.2f} / {check['attack_success_with_trigger']:.2f}")]
    if args.owner_rows:
        before, after = owner_losses(args.model, tmp / "fp" / "adapter", held)
        rows.insert(0, (f"the owner's data (`embed --data`): {args.owner_rows} rows of {OWNER_SOURCE}; reply loss on "
                        f"{len(held)} held-out rows of it, base / fingerprinted", f"{before:.3f} / {after:.3f}"))
    section = f"embed_verify:{args.model}" + (f":{args.tag}" if args.tag else "")
    title = f"embed + verify: {args.model}" + (f" ({args.tag})" if args.tag else "")
    write_measures(section, title, command, rows)


if __name__ == "__main__":
    main()
