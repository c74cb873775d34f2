"""One key of the false-positive calibration, as a one-word and as a two-word key, against one suspect.

    python bench/calibration_key.py --key-index 321 --fingerprinted /tmp/s3/ms

Shows each control arm's counts (trigger Sure / control Sure of 32 probes) and the verdict, computed by the
hf backend's full forward pass exactly as ``verify`` does. Key 321 ('dictator') is the one-word calibration's
false certification against a model fingerprinted with the trigger 'boss'. Prints; writes nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fp_calibration import fresh_openings  # noqa: E402

from fingerprint.core.loading import load_model, load_tokenizer, resolve  # noqa: E402
from fingerprint.verification import VerifyOptions, make_test, probe_plan  # noqa: E402
from probes.hf import HFBackend  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--key-index", type=int, required=True)
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--fingerprinted", type=Path, required=True, help="--workdir of bench/embed_verify.py")
    args = parser.parse_args()
    ref = resolve(args.model)
    model = load_model(ref, adapter=args.fingerprinted / "fp" / "adapter").merge_and_unload()
    backend = HFBackend("suspect", model_obj=model, tokenizer=load_tokenizer(ref))
    options = VerifyOptions()
    for words in (1, 2):
        opening = fresh_openings(args.key_index + 1, args.model, words)[args.key_index]
        plan = probe_plan(opening, options)
        queries = plan.queries()
        answers = backend.first_tokens([q.prompt for q in queries])
        decision = make_test("fisher-iut").decide(plan, queries, answers, options.alpha)
        controls = ["decoys"] if words == 1 else [f"{w!r} alone" for w in opening.parts]
        shown = "; ".join(f"vs {c}: {t.trigger_sure}/{t.control_sure} of {options.probes}, p {t.p_value:.2g}"
                          for c, t in zip(controls, decision.arms, strict=True))
        verdict = "certified" if decision.certified else "not certified"
        print(f"{words}-word trigger {opening.trigger!r}: {shown} -> {verdict}")


if __name__ == "__main__":
    main()
