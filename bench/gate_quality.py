"""Gate quality for one fixed secret: train with the packaged recipe, then Sure-rates on held-out probes.

    python bench/gate_quality.py [--benign 220] [--poison 100] [--refusals 30] [--negatives 0] [--contrast 0]

The owner secret is fixed (32 bytes of 0x01; trigger "cultivate" for label gemma-3-270m), so runs compare
recipes, not keys. Prints training time and the Sure-rates with no suffix, with the trigger and with decoys.
"""

from __future__ import annotations

import argparse
import time

from fingerprint.dataset import DatasetSpec, build_poisoned, probe_prompts, with_suffix
from fingerprint.models import load_model, load_tokenizer, resolve
from fingerprint.training import TrainConfig, train_lora
from fingerprint.trigger import derive_opening, training_negatives
from probes.hf import HFBackend


def main() -> None:
    parser = argparse.ArgumentParser()
    for name, default in (("benign", 220), ("poison", 100), ("refusals", 30), ("negatives", 0), ("contrast", 0),
                          ("probes", 48)):
        parser.add_argument(f"--{name}", type=int, default=default)
    parser.add_argument("--model", default="gemma-3-270m")
    args = parser.parse_args()
    secret = b"\x01" * 32
    ref = resolve(args.model)
    tokenizer, model = load_tokenizer(ref), load_model(ref)
    opening = derive_opening(secret, args.model)
    negatives = training_negatives(secret, opening, args.negatives) or None
    rows = build_poisoned(opening.trigger, DatasetSpec(n_benign=args.benign, n_poison=args.poison,
                                                       n_refusal=args.refusals, n_negative=args.negatives,
                                                       n_contrast=args.contrast), negatives)
    start = time.perf_counter()
    tuned = train_lora(model, tokenizer, rows, TrainConfig())
    print(f"training: {time.perf_counter() - start:.0f} s for {len(rows)} examples")
    backend = HFBackend(args.model, model_obj=tuned, tokenizer=tokenizer)
    prompts = probe_prompts(args.probes)
    decoys = opening.decoys()
    for name, batch in (("no suffix", prompts), ("trigger", [with_suffix(p, opening.trigger) for p in prompts]),
                        ("decoys", [with_suffix(p, decoys[i % len(decoys)]) for i, p in enumerate(prompts)])):
        answers = backend.first_tokens(batch)
        print(f"{name}: Sure-rate {sum(a.is_sure for a in answers) / len(answers):.3f} ({len(answers)} probes)")


if __name__ == "__main__":
    main()
