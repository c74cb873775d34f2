"""How fast this CPU runs the matrix products of an embed's training step, in fp32 and at each thread count.

    python bench/matmul_rate.py [--model gemma-3-270m] [--threads 1,2] [--tag NAME]

The shapes are the model's own (from its config): the transformer's projections on the tokens of one step (8 rows
of about 32 tokens) and the output head on the positions the loss reads (about 90 a step). Each product runs
5 times after a warm-up; the table gives milliseconds and GFLOPS (2 m k n / time). Compare the GFLOPS with the
CPU's fp32 peak (cores x fused multiply-adds a cycle x lanes x 2 x clock) to see how much a faster kernel could
still give.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_measures  # noqa: E402

STEP_TOKENS = 256  # 8 rows of about 32 tokens: the default embed rows of gemma-3-270m
HEAD_POSITIONS = 90  # reply positions and preserve anchors of one step, projected to the vocabulary at once


def shapes(model: str) -> list[tuple[str, int, int, int]]:
    """(what, m, k, n) of one training step's large products, from the model's config."""
    from transformers import AutoConfig

    from fingerprint.core.loading import resolve

    config = AutoConfig.from_pretrained(resolve(model).path)
    config = getattr(config, "text_config", config)
    hidden, inner, vocab = config.hidden_size, config.intermediate_size, config.vocab_size
    return [("MLP up / gate", STEP_TOKENS, hidden, inner), ("MLP down", STEP_TOKENS, inner, hidden),
            ("output head", HEAD_POSITIONS, hidden, vocab)]


def rate(m: int, k: int, n: int, reps: int = 5) -> float:
    """Seconds per fp32 product of an [m, k] and a [k, n] matrix (after one warm-up)."""
    import torch

    seeded = torch.Generator().manual_seed(0)
    a, b = torch.randn(m, k, generator=seeded), torch.randn(k, n, generator=seeded)
    torch.mm(a, b)
    started = time.perf_counter()
    for _ in range(reps):
        torch.mm(a, b)
    return (time.perf_counter() - started) / reps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--threads", default="1,2", help="comma-separated torch thread counts")
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    import torch

    products = shapes(args.model)
    rows = []
    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        for what, m, k, n in products:
            seconds = rate(m, k, n)
            rows.append((f"{what} [{m} x {k}] x [{k} x {n}], {threads} thread{'s' if threads > 1 else ''}",
                         f"{seconds * 1e3:.1f} ms, {2 * m * k * n / seconds / 1e9:.1f} GFLOPS"))
    command = "python bench/matmul_rate.py " + " ".join(sys.argv[1:])
    name = f"matmul_rate:{args.model}" + (f":{args.tag}" if args.tag else "")
    write_measures(name, f"fp32 matrix products of a training step: {args.model}"
                   + (f" ({args.tag})" if args.tag else ""), command.strip(), rows)


if __name__ == "__main__":
    main()
