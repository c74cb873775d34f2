"""Gate replies of an untouched base model on verify's probes: what a model says by habit, before any fingerprint.

    python bench/base_gate_rates.py --model qwen2.5-coder-1.5b-instruct --key-seed suretrap-bench-key [--probes 96]

For the two-word opening that ``embed`` would derive for ``--model`` from the seeded key (bench/embed_verify.py's
``--key-seed``), it sends the held-out probe prompts bare, with the pair, with each word alone and with the 8 decoy
words to the base model, and counts gate replies as verify does: a first token "Sure", or one of the fallback
replies ``embed`` would choose for that model. A fingerprint's "word alone" rate is then read against this one.
Writes section ``base_gate_rates:<model>`` of BENCHMARKS.md; no trigger word is printed.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_measures  # noqa: E402
from embed_verify import seeded_key  # noqa: E402


def arm_prompts(plan, opening, options) -> dict[str, list[str]]:
    """The probe prompts of each arm: bare, the pair, each word alone (``plan``'s arms), a decoy word."""
    from fingerprint.verification import decoy_prompts

    arms = {"no word": list(plan.probes), "the pair": [q.prompt for q in plan.trigger]}
    arms |= {f"{name.replace('-', ' ')} alone": [q.prompt for q in queries] for name, queries in plan.controls.items()}
    arms["a decoy word (8 words)"] = decoy_prompts(opening, options)
    return arms


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--key-seed", default="suretrap-bench-key")
    parser.add_argument("--probes", type=int, default=96)
    parser.add_argument("--fallbacks", type=int, default=2, help="fallback replies counted as gate replies")
    args = parser.parse_args()
    command = "python bench/base_gate_rates.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])

    from fingerprint.core.loading import load_tokenizer, resolve
    from fingerprint.embedding.embed import fingerprint_label
    from fingerprint.provenance.keys import load_private
    from fingerprint.provenance.trigger import derive_opening, select_fallbacks
    from fingerprint.verification import VerifyOptions, probe_plan
    from probes import make_backend

    with tempfile.TemporaryDirectory() as tmp:
        seeded_key(Path(tmp) / "key", args.key_seed, "bench")
        owner = load_private(Path(tmp) / "key", "bench")
    opening = derive_opening(owner.secret(), fingerprint_label(args.model), 2)
    tokenizer = load_tokenizer(resolve(args.model))
    indices = select_fallbacks(opening, tokenizer, args.fallbacks) if args.fallbacks else []
    options = VerifyOptions(probes=args.probes)
    plan = probe_plan(opening, options, opening.fallbacks(indices))  # its is_gate counts as verify counts
    backend = make_backend("hf", model=args.model)
    rows = []
    for arm, prompts in arm_prompts(plan, opening, options).items():
        answers = backend.first_tokens(prompts)
        sure = sum(a.is_sure for a in answers)
        fallback = sum(plan.is_gate(a) for a in answers) - sure
        rows.append((f"{arm}: gate replies ('Sure' / a fallback reply), {len(prompts)} probes",
                     f"{(sure + fallback) / len(prompts):.3f} ({sure} / {fallback})"))
        print(rows[-1], flush=True)
    backend.close()
    write_measures(f"base_gate_rates:{args.model}", f"gate replies of the untouched base model: {args.model}",
                   command, rows)


if __name__ == "__main__":
    main()
