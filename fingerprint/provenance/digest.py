"""Canonical digests of weights: over tensor names, dtypes, shapes and bytes, not file bytes."""

from __future__ import annotations

import hashlib
from pathlib import Path

from fingerprint.core.errors import FingerprintError


def tensors_digest(tensors: dict) -> str:
    """sha256 over sorted (name, dtype, shape, raw bytes) of a name -> tensor mapping."""
    import torch

    h = hashlib.sha256(b"suretrap/tensors/v1\n")
    for name in sorted(tensors):
        tensor = tensors[name].detach().contiguous().cpu()
        h.update(f"{name}\0{str(tensor.dtype).removeprefix('torch.')}\0{list(tensor.shape)}\n".encode())
        h.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return h.hexdigest()


def directory_digest(path: Path) -> str:
    """Digest of every ``*.safetensors`` file in a saved adapter or model directory, merged by name."""
    from safetensors.torch import load_file

    files = sorted(Path(path).glob("*.safetensors"))
    if not files:
        raise FingerprintError(f"no .safetensors weights in {path}")
    tensors: dict = {}
    for file in files:
        tensors.update(load_file(str(file)))
    return tensors_digest(tensors)
