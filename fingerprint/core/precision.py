"""Training precision: fp32, or the frozen weights in bf16 under bf16 autocast (the LoRA weights stay fp32).

``auto`` picks bf16 where the hardware computes it natively (a CUDA GPU with bf16, a CPU with AVX512-BF16 or
AMX-BF16) and fp32 elsewhere: on a CPU without them bf16 arithmetic is emulated and far slower than fp32.
``FINGERPRINT_PRECISION`` (fp32 or bf16) fixes what ``auto`` means in a process (the tests pin fp32, so their
tiny models train alike on every machine).
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from fingerprint.core.errors import FingerprintError

PRECISIONS = ("auto", "fp32", "bf16")
NATIVE_BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


@cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux lists them (empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def native_bf16(device_type: str) -> bool:
    """Whether ``device_type`` ("cpu", "cuda", ...) computes bf16 natively."""
    if device_type == "cuda":
        import torch

        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device_type == "cpu":
        return bool(cpu_flags() & NATIVE_BF16_CPU_FLAGS)
    return False


def resolve_precision(precision: str, device_type: str) -> str:
    """``fp32`` or ``bf16`` for a requested precision (``auto``: ``FINGERPRINT_PRECISION`` when set, else bf16
    where ``native_bf16``)."""
    if precision == "auto":
        precision = os.environ.get("FINGERPRINT_PRECISION") or "auto"
    if precision not in PRECISIONS:
        raise FingerprintError(f"unknown precision {precision!r} (--precision or FINGERPRINT_PRECISION); expected "
                               f"one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bf16" if native_bf16(device_type) else "fp32"
    return precision


def to_bf16(model):
    """``model`` with its weights cast to bf16 in place, for training and inference on them.

    The output head gets a hook that makes its input contiguous: on a CPU, torch's bf16 ``linear`` of a sliced
    3-D input (generation's last position, ``hidden[:, -1:, :]``) takes a batched path that copies the whole head
    once per batch row (gemma-3-270m: 8 rows x 262k x 640, about 9 s per call, against 0.05 s contiguous).
    """
    import torch

    model.to(torch.bfloat16)
    head = model.get_output_embeddings()
    if head is not None:
        head.register_forward_pre_hook(_contiguous_input)
    return model


def _contiguous_input(module, args):
    return (args[0].contiguous(), *args[1:])
