"""The registered derivatives; each module defines one and registers it (``@register("kind")``)."""

from fingerprint.robustness.derivatives import (  # noqa: F401, E402 - each import registers a derivative
    finetune,
    fingerprinted,
    int8,
    interpolate,
    layers,
    merge,
    paraphrase,
    prune,
    quantized,
    sanitizer,
    sibling,
    suppression,
    system_prompt,
    temperature,
    unlearning,
)
from fingerprint.robustness.derivatives.base import DERIVATIVES, Context, Derivative, Suspect, register


def derivative_kinds() -> list[str]:
    return sorted(DERIVATIVES)


__all__ = ["DERIVATIVES", "Context", "Derivative", "Suspect", "derivative_kinds", "register"]
