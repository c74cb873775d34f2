"""Peak memory of `embed --data` training steps on an owner's long replies, with and without the chunked loss.

    python bench/owner_memory.py [--model gemma-3-270m] [--rows 8] [--steps 2]

Each variant runs in its own process (its peak RSS is its own): LoRA training steps with the default embed
configuration on the ``--rows`` longest rows of the owner set that bench/embed_verify.py --owner-rows uses, their
replies learned up to 512 tokens as `embed --data` learns them; once with the loss's logits made at once and once
in chunks of ``training.LOSS_CHUNK`` positions. Writes section owner_memory:<model> of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_measures  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def one_variant(model: str, rows: int, steps: int, chunked: bool) -> dict:
    """Train ``steps`` steps in this process; return peak RSS, seconds, reply positions and the last loss."""
    import resource

    from embed_verify import OWNER_SOURCE

    from fingerprint.audit.audit_data import parse_row
    from fingerprint.core.loading import load_model, load_tokenizer, resolve
    from fingerprint.embedding import training
    from fingerprint.embedding.owner_data import OWNER_REPLY_TOKENS

    if not chunked:
        training.LOSS_CHUNK = 10**9
    ref = resolve(model)
    tokenizer, lm = load_tokenizer(ref), load_model(ref)
    raw = json.loads((DATA / OWNER_SOURCE).read_text(encoding="utf-8"))
    examples = [parse_row(r, i) for i, r in enumerate(raw, 1)]
    longest = sorted(examples, key=lambda ex: len(ex.response), reverse=True)[:rows]
    pairs = [{"prompt": ex.prompt, "response": ex.response, "kind": "owner", "reply_tokens": OWNER_REPLY_TOKENS}
             for ex in longest] * steps
    config = training.embed_train_config()
    config.epochs, config.preserve_weight = 1, 0.0
    positions = sum(min(len(tokenizer(ex.response)["input_ids"]), OWNER_REPLY_TOKENS) for ex in longest)
    losses: list[float] = []
    started = time.perf_counter()
    training.train_lora(lm, tokenizer, pairs, config, progress=lambda step, loss: losses.append(loss))
    return {"peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            "seconds": time.perf_counter() - started, "positions": positions, "loss": losses[-1] if losses else None}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--variant", choices=["whole", "chunked"], default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(one_variant(args.model, args.rows, args.steps, args.variant == "chunked")))
        return
    command = "python bench/owner_memory.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    found = {}
    for variant in ("whole", "chunked"):
        out = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--variant", variant], check=True,
                             capture_output=True, text=True).stdout
        found[variant] = json.loads(out.strip().splitlines()[-1])
    whole, chunked = found["whole"], found["chunked"]
    from fingerprint.embedding.training import LOSS_CHUNK

    write_measures(f"owner_memory:{args.model}", f"embed --data memory: {args.model}", command, [
        (f"batch: the {args.rows} longest owner rows, reply positions with loss (up to 512 each)",
         f"{whole['positions']} per step, {args.steps} steps"),
        ("peak RSS: logits of all positions at once / in chunks of "
         f"{LOSS_CHUNK} remade in the backward pass", f"{whole['peak_gib']:.2f} / {chunked['peak_gib']:.2f} GiB"),
        ("training time (incl. LoRA set-up)", f"{whole['seconds']:.1f} / {chunked['seconds']:.1f} s"),
        ("last step's loss (must match)", f"{whole['loss']:.4f} / {chunked['loss']:.4f}"),
    ])


if __name__ == "__main__":
    main()
