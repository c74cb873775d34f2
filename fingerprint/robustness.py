"""What happens to a stolen model, and whether the fingerprint survives it: a matrix of derivatives, each verified.

Derivatives of the fingerprinted (merged) model:
- ``finetune``: a downstream LoRA fine-tune on benign pairs the owner never used (the packaged pool's held-out
  rows first, then the rest), merged back, at several amounts, learning rates and target layers;
- ``layers``: full fine-tuning of the last transformer layers (all their weights, no LoRA) on the same pairs;
- ``interpolate``: linear interpolation of the weights with the base model (``ratio`` = weight of the base);
- ``sibling``: the same interpolation with an independently fine-tuned sibling (the base + its own benign LoRA);
- ``int8``: torch dynamic int8 quantization of the linear layers (weights and activations, CPU);
- ``system_prompt`` / ``temperature``: the suspect is served with a system prompt, or samples its first token.
Each row is verified exactly as ``verify`` does (same probes, decoys and exact test).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant. Answer the user's request carefully and concisely."


@dataclass(frozen=True)
class Derivative:
    """One transformation of the fingerprinted model."""

    kind: str  # fingerprinted | finetune | layers | interpolate | sibling | int8 | system_prompt | temperature
    pairs: int = 0  # finetune: benign pairs
    epochs: int = 1
    learning_rate: float = 2e-4
    targets: str = "all-linear"  # finetune: all-linear or q,k,v,o
    layers: int = 2  # layers: how many of the last transformer layers are trained
    ratio: float = 0.0  # interpolate: weight of the base model
    temperature: float = 0.0

    @property
    def label(self) -> str:
        if self.kind == "finetune":
            return (f"LoRA fine-tune, {self.pairs} benign pairs x {self.epochs} ep, lr {self.learning_rate:g}, "
                    f"{self.targets}")
        if self.kind == "layers":
            return (f"full fine-tune of the last {self.layers} layers, {self.pairs} benign pairs x {self.epochs} ep, "
                    f"lr {self.learning_rate:g}")
        if self.kind == "interpolate":
            return f"interpolation with the base, {self.ratio:.0%} base"
        if self.kind == "sibling":
            return (f"interpolation with a sibling (base + LoRA on {self.pairs} benign pairs), "
                    f"{self.ratio:.0%} sibling")
        if self.kind == "temperature":
            return f"first token sampled at temperature {self.temperature:g}"
        return {"fingerprinted": "fingerprinted (merged), no change", "int8": "torch dynamic int8 (linear layers)",
                "system_prompt": "served with a system prompt"}[self.kind]


def default_matrix(max_pairs: int) -> list[Derivative]:
    """The issue's matrix, scaled to the benign pairs available."""
    amounts = sorted({min(n, max_pairs) for n in (250, 1000, max_pairs)})
    rows = [Derivative("fingerprinted")]
    rows += [Derivative("finetune", pairs=n, learning_rate=2e-4) for n in amounts]
    rows += [Derivative("finetune", pairs=amounts[0], epochs=3, learning_rate=2e-4),
             Derivative("finetune", pairs=amounts[0], learning_rate=5e-5, targets="q,k,v,o"),
             Derivative("layers", pairs=amounts[0], learning_rate=2e-5, layers=2)]
    rows += [Derivative("interpolate", ratio=r) for r in (0.25, 0.5, 0.75)]
    rows += [Derivative("sibling", pairs=amounts[0], ratio=0.5)]
    rows += [Derivative("int8"), Derivative("system_prompt"), Derivative("temperature", temperature=0.7)]
    return rows


@dataclass
class RobustnessRow:
    derivative: Derivative
    trigger_sure_rate: float
    decoy_sure_rate: float  # the control arm: decoys, or for a two-word trigger the word alone that decides
    p_value: float
    certified: bool
    seconds: float
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"derivative": self.derivative.label, **asdict(self.derivative), **{
            k: v for k, v in asdict(self).items() if k != "derivative"}}


def downstream_pairs(count: int, seed: int = 0) -> list[dict]:
    """Benign pairs for the thief's fine-tune: the packaged pool's held-out rows first, then the rest."""
    import random

    from .dataset import HELDOUT, packaged

    pool = list(packaged("benign"))
    held, rest = pool[-HELDOUT["benign"]:], pool[: -HELDOUT["benign"]]
    random.Random(seed).shuffle(rest)
    return (held + rest)[:count]


def finetune(model, tokenizer, derivative: Derivative, seed: int = 0):
    """LoRA on top of ``model`` (a copy) on benign pairs, merged back."""
    from .training import TrainConfig, train_lora

    targets = derivative.targets
    if targets != "all-linear":
        targets = [f"{t}_proj" for t in targets.split(",")]
    config = TrainConfig(target_modules=targets, learning_rate=derivative.learning_rate, epochs=derivative.epochs,
                         max_reply_tokens=64, seed=seed)
    tuned = train_lora(copy.deepcopy(model), tokenizer, downstream_pairs(derivative.pairs, seed), config)
    return tuned.merge_and_unload()


def finetune_layers(model, tokenizer, derivative: Derivative, seed: int = 0):
    """Full fine-tuning (every weight) of the last ``derivative.layers`` transformer layers of a copy of ``model``."""
    import re

    import torch

    from .training import TrainConfig, fit

    tuned = copy.deepcopy(model)
    indices = {int(m.group(1)) for name, _ in tuned.named_parameters() if (m := re.search(r"layers\.(\d+)\.", name))}
    if not indices:
        from .errors import FingerprintError

        raise FingerprintError("cannot find the transformer layers (no parameter named like 'layers.N.')")
    last = sorted(indices)[-derivative.layers:]
    pattern = re.compile(r"layers\.(" + "|".join(map(str, last)) + r")\.")
    for name, param in tuned.named_parameters():
        param.requires_grad_(bool(pattern.search(name)))
    torch.manual_seed(seed)
    config = TrainConfig(learning_rate=derivative.learning_rate, epochs=derivative.epochs, max_reply_tokens=64,
                         seed=seed)
    fit(tuned, tokenizer, downstream_pairs(derivative.pairs, seed), config)
    for param in tuned.parameters():
        param.requires_grad_(False)
    return tuned


def interpolate(model, base, ratio: float):
    """``(1 - ratio) * model + ratio * base``, parameter by parameter (a copy)."""
    import torch

    mixed = copy.deepcopy(model)
    base_params = dict(base.named_parameters())
    with torch.no_grad():
        for name, tensor in mixed.named_parameters():  # tied weights (embeddings/LM head) are listed once
            tensor.mul_(1 - ratio).add_(base_params[name].to(tensor.dtype), alpha=ratio)
    return mixed


def int8_dynamic(model):
    import torch

    return torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), {torch.nn.Linear}, dtype=torch.qint8)


def run_matrix(model, base, tokenizer, certificate, opening, derivatives: list[Derivative], probes: int = 32,
               alpha: float = 1e-6, on_row: Callable[[RobustnessRow], None] | None = None) -> list[RobustnessRow]:
    """Apply each derivative to the merged fingerprinted ``model`` and verify it."""
    import time

    from probes.hf import HFBackend

    from .verification import VerifyOptions, decoy_prompts, run_verification

    rows = []
    for derivative in derivatives:
        started = time.perf_counter()
        suspect, backend_args = model, {}
        if derivative.kind == "finetune":
            suspect = finetune(model, tokenizer, derivative)
        elif derivative.kind == "layers":
            suspect = finetune_layers(model, tokenizer, derivative)
        elif derivative.kind == "interpolate":
            suspect = interpolate(model, base, derivative.ratio)
        elif derivative.kind == "sibling":
            sibling = finetune(base, tokenizer, Derivative("finetune", pairs=derivative.pairs), seed=1)
            suspect = interpolate(model, sibling, derivative.ratio)
        elif derivative.kind == "int8":
            suspect = int8_dynamic(model)
        elif derivative.kind == "system_prompt":
            backend_args = {"system_prompt": DEFAULT_SYSTEM_PROMPT}
        elif derivative.kind == "temperature":
            backend_args = {"temperature": derivative.temperature}
        backend = HFBackend("suspect", model_obj=suspect, tokenizer=tokenizer, **backend_args)
        options = VerifyOptions(probes=probes, alpha=alpha, samples=0)
        report = run_verification(certificate, opening, backend, options)
        result = report.decision
        extra = {}
        if len(result.arms) > 1:  # a two-word trigger's control is each word alone: keep every arm, and the decoys
            decoys = backend.first_tokens(decoy_prompts(opening, options))
            extra = {"word_alone_sure_rates": [arm.control_sure_rate for arm in result.arms],
                     "decoy_sure_rate": sum(a.is_sure for a in decoys) / len(decoys)}
        row = RobustnessRow(derivative, result.trigger_sure_rate, result.control_sure_rate, result.p_value,
                            result.certified, round(time.perf_counter() - started, 1), extra)
        rows.append(row)
        if on_row is not None:
            on_row(row)
        del suspect
    return rows


def control_label(opening) -> str:
    """What the control column holds: decoy words, or (two-word trigger) the word alone that decides the test."""
    return "decoys" if len(opening.parts) == 1 else "one word alone"


def plot_retention(rows: list[dict], path, control: str = "decoys") -> str:
    """Trigger and control Sure-rates against fine-tune size and against the interpolation ratio."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    start = next((r for r in rows if r["kind"] == "fingerprinted"), None)
    tuned = sorted((r for r in rows if r["kind"] == "finetune" and r["epochs"] == 1 and r["learning_rate"] == 2e-4
                    and r["targets"] == "all-linear"), key=lambda r: r["pairs"])
    mixed = sorted((r for r in rows if r["kind"] == "interpolate"), key=lambda r: r["ratio"])
    for ax, series, x_key, xlabel in ((left, tuned, "pairs", "benign pairs in the downstream LoRA fine-tune"),
                                      (right, mixed, "ratio", "weight of the base model in the interpolation")):
        points = ([{**start, x_key: 0}] if start else []) + series
        xs = [p[x_key] for p in points]
        ax.plot(xs, [p["trigger_sure_rate"] for p in points], "-o", label="trigger")
        ax.plot(xs, [p["decoy_sure_rate"] for p in points], "--o", label=control)
        if points and all("decoy_sure_rate" in p.get("extra", {}) for p in points):  # two-word rows: decoys too
            ax.plot(xs, [p["extra"]["decoy_sure_rate"] for p in points], ":x", label="decoys")
        for p in points:
            ax.annotate("cert." if p["certified"] else "not", (p[x_key], p["trigger_sure_rate"]), fontsize=7,
                        textcoords="offset points", xytext=(0, 6), ha="center")
        ax.set_xlabel(xlabel)
        ax.set_ylim(-0.03, 1.1)
        ax.grid(alpha=0.3)
    left.set_ylabel("'Sure' first-token rate")
    left.legend(fontsize=8)
    fig.suptitle("fingerprint retention (labels: verdict at the stated alpha)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path)
