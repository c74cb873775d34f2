"""The robustness matrix: apply each derivative to the merged fingerprinted model and verify it as ``verify`` does.

Each row keeps the trigger's Sure-rate, the deciding control arm's, every word-alone arm's (a two-word trigger)
and the eight decoy words' (measured on every row, whatever the trigger), the p-value and the verdict.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fingerprint.robustness.derivatives import Context, Derivative
from fingerprint.robustness.derivatives.erasure import Erasure
from fingerprint.robustness.derivatives.finetune import Finetune
from fingerprint.robustness.derivatives.fingerprinted import Fingerprinted
from fingerprint.robustness.derivatives.gguf import Gguf
from fingerprint.robustness.derivatives.int8 import DynamicInt8
from fingerprint.robustness.derivatives.interpolate import Interpolate
from fingerprint.robustness.derivatives.layers import LastLayers
from fingerprint.robustness.derivatives.merge import METHODS, Mergekit
from fingerprint.robustness.derivatives.paraphrase import ALIGNED_PARAPHRASER, ParaphraseFilter
from fingerprint.robustness.derivatives.prune import MagnitudePrune
from fingerprint.robustness.derivatives.quantized import BitsAndBytes
from fingerprint.robustness.derivatives.sanitizer import TrailingWordFilter
from fingerprint.robustness.derivatives.sibling import Sibling
from fingerprint.robustness.derivatives.suppression import LogitBias, OutputFilter, SureRowsZeroed
from fingerprint.robustness.derivatives.system_prompt import REWRITE_SYSTEM_PROMPT, SystemPrompt
from fingerprint.robustness.derivatives.temperature import Temperature
from fingerprint.robustness.derivatives.unlearning import SureUnlearning

MATRICES = ("derivatives", "tools", "attacks")
QUALITY_PROMPTS = 32  # held-out benign prompts whose greedy replies are compared with the fingerprinted model's


def default_matrix(max_pairs: int, matrices: tuple[str, ...] = ("derivatives",)) -> list[Derivative]:
    """The standard rows: ``derivatives`` (what happens to a stolen model in ordinary use) and ``attacks`` (a
    thief who knows the method but not the key), fine-tune sizes capped at ``max_pairs`` pairs."""
    rows: list[Derivative] = [Fingerprinted()]
    if "derivatives" in matrices:
        amounts = sorted({min(n, max_pairs) for n in (250, 1000, max_pairs)})
        rows += [Finetune(pairs=n, series="LoRA fine-tune size") for n in amounts]
        rows += [Finetune(pairs=amounts[0], epochs=3),
                 Finetune(pairs=amounts[0], learning_rate=5e-5, targets="q,k,v,o"), LastLayers(pairs=amounts[0])]
        rows += [Interpolate(ratio=r, series="interpolation with the base") for r in (0.25, 0.5, 0.75)]
        rows += [Sibling(pairs=amounts[0], ratio=0.5), DynamicInt8(), SystemPrompt(), Temperature(temperature=0.7)]
    if "tools" in matrices:
        rows += [Gguf(quant=q, via="file") for q in ("Q8_0", "Q6_K", "Q4_K_M", "Q3_K_M")]
        rows += [Gguf(quant=q, via="server") for q in ("Q8_0", "Q4_K_M")]
        rows += [Mergekit(method=m, partner=p, share=s, pairs=min(250, max_pairs))
                 for m in METHODS for p in ("sibling", "base") for s in (0.5, 0.3)]
        rows += [BitsAndBytes(bits=8), BitsAndBytes(bits=4)]
        rows += [MagnitudePrune(ratio=r, series="magnitude pruning") for r in (0.2, 0.5)]
    if "attacks" in matrices:
        rows += [SureRowsZeroed(), LogitBias(), OutputFilter()]
        rows += [Erasure(pairs=n, series="erasure fine-tune size") for n in sorted({200, 600, 2000})]
        rows += [SureUnlearning(pairs=600), TrailingWordFilter(),
                 SystemPrompt(prompt=REWRITE_SYSTEM_PROMPT, name="rewrite answers"),
                 # last: its paraphraser comes with suretrap[qwen] (gemma-3-270m echoes the request instead)
                 ParaphraseFilter(paraphraser=ALIGNED_PARAPHRASER)]
    return rows


@dataclass
class RobustnessRow:
    derivative: Derivative
    trigger_sure_rate: float
    control_sure_rate: float  # the deciding control arm: the decoys, or a two-word trigger's deciding word alone
    decoy_sure_rate: float  # the eight decoy words, on the same probes
    p_value: float
    certified: bool
    seconds: float
    word_alone_sure_rates: list[float] = field(default_factory=list)
    quality: dict = field(default_factory=dict)  # does the derivative still answer as the fingerprinted model did?
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        data = {k: v for k, v in asdict(self).items() if k != "derivative"}
        d = self.derivative
        return {"derivative": d.label, "kind": d.kind, "params": d.params(), "series": d.series, "x": d.x(),
                **data}


def control_label(opening) -> str:
    """What the control column holds: decoy words, or (two-word trigger) the word alone that decides the test."""
    return "decoys" if len(opening.parts) == 1 else "one word alone"


def _backend(suspect, ctx: Context):
    from probes import make_backend
    from probes.hf import HFBackend

    if suspect.factory is not None:
        return suspect.factory()
    if suspect.model is not None:
        return HFBackend("suspect", model_obj=suspect.model, tokenizer=ctx.tokenizer, **suspect.backend_args)
    return make_backend(suspect.backend, **suspect.backend_args)


def quality(backend, reference: list[str], prompts: list[str]) -> dict:
    """How much of the fingerprinted model's behaviour a derivative keeps: exact 16-token greedy replies and
    first words, on held-out benign prompts (the fingerprint itself is not involved)."""
    replies = backend.generate(prompts, 16)
    first = [r.strip().split()[:1] for r in replies]
    want = [r.strip().split()[:1] for r in reference]
    return {"reply_agreement": sum(a.strip() == b.strip() for a, b in zip(replies, reference, strict=True))
            / len(prompts), "first_word_agreement": sum(a == b for a, b in zip(first, want, strict=True))
            / len(prompts), "prompts": len(prompts)}


def run_matrix(model, base, tokenizer, certificate, opening, derivatives: list[Derivative], probes: int = 32,
               alpha: float = 1e-6, workdir: Path | None = None, base_path: Path | None = None,
               on_row: Callable[[RobustnessRow], None] | None = None,
               test: str = "fisher-iut") -> list[RobustnessRow]:
    """Apply each derivative to the merged fingerprinted ``model`` and verify it with ``test``; every other
    registered test is replayed on the same answers where they suffice (the row's ``extra["readings"]``)."""
    import tempfile

    from fingerprint.core.data import probe_prompts
    from fingerprint.verification import VerifyOptions, decoy_prompts, gate_words, run_verification
    from probes.hf import HFBackend

    options = VerifyOptions(probes=probes, alpha=alpha, samples=0)
    own_workdir = workdir is None
    ctx = Context(model=model, base=base, tokenizer=tokenizer, base_path=base_path,
                  workdir=Path(workdir or tempfile.mkdtemp(prefix="suretrap-robustness-")))
    ctx.workdir.mkdir(parents=True, exist_ok=True)
    held_out = probe_prompts(154, seed=0)[-QUALITY_PROMPTS:]
    reference = HFBackend("reference", model_obj=model, tokenizer=tokenizer).generate(held_out, 16)
    fallbacks = gate_words(opening, certificate)
    rows = []
    try:
        for derivative in derivatives:
            started = time.perf_counter()
            suspect = derivative.apply(ctx)
            backend = _backend(suspect, ctx)
            try:
                report = run_verification(certificate, opening, backend, options, test=test)
                decision = report.decision
                readings = replayed_readings(report, opening, options, test)
                decoys = backend.first_tokens(decoy_prompts(opening, options))
                kept = quality(backend, reference, held_out)
            finally:
                backend.close()
                if suspect.close is not None:
                    suspect.close()
            words = [arm.control_sure_rate for arm in decision.arms] if len(decision.arms) > 1 else []
            decoy_rate = sum(a.is_sure or a.token.strip() in fallbacks for a in decoys) / len(decoys)
            row = RobustnessRow(derivative, decision.trigger_sure_rate, decision.control_sure_rate, decoy_rate,
                                decision.p_value, decision.certified, round(time.perf_counter() - started, 1),
                                words, kept, {"test": test, "queries": decision.queries,
                                                    "e_value": decision.e_value, "readings": readings,
                                                    "gates": gate_flags(report)})
            rows.append(row)
            if on_row is not None:
                on_row(row)
    finally:
        if own_workdir:
            shutil.rmtree(ctx.workdir, ignore_errors=True)
    return rows


def replayed_readings(report, opening, options, test: str) -> dict[str, dict]:
    """Every other test on the row's answers, and (when more probes were read than ``verify`` reads by default)
    every test on the answers to the default number of probes, which are the first ones of the plan."""
    from fingerprint.verification import VerifyOptions, probe_plan, replay, test_names

    plans = {"": report.plan}
    default = VerifyOptions.probes
    if options.probes > default:
        short = VerifyOptions(probes=default, alpha=options.alpha, seed=options.seed, samples=0)
        plans[f"@{default}"] = probe_plan(opening, short, report.plan.gate_words)
    readings = {}
    for suffix, plan in plans.items():
        for name in test_names():
            if (name, suffix) != (test, ""):
                decision = replay(name, plan, report.transcript, options.alpha)
                if decision is not None:
                    readings[name + suffix] = reading_of(decision)
    return readings


def gate_flags(report) -> dict[str, str]:
    """Per arm, one character per probe asked, in probe order: 1 for a gate reply, 0 otherwise (so any test, on
    any first part of the probes, can be replayed from the row)."""
    arms: dict[str, dict[int, bool]] = {}
    for answer in report.transcript:
        arms.setdefault(answer.arm, {})[answer.probe] = answer.is_gate
    return {arm: "".join("1" if flags[i] else "0" for i in sorted(flags)) for arm, flags in arms.items()}


def reading_of(decision) -> dict:
    """What a row keeps of a test's decision."""
    return {"certified": decision.certified, "p_value": decision.p_value, "e_value": decision.e_value,
            "queries": decision.queries}


def plot_retention(rows: list[dict], path, control: str = "decoys") -> str:
    """Trigger, control and decoy Sure-rates along each series of rows (fine-tune size, interpolation ratio)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = list(dict.fromkeys(r["series"] for r in rows if r.get("series")))
    start = next((r for r in rows if r["kind"] == "fingerprinted"), None)
    fig, axes = plt.subplots(1, max(1, len(series)), figsize=(5 * max(1, len(series)), 3.6), sharey=True,
                             squeeze=False)
    for ax, name in zip(axes[0], series, strict=False):
        points = ([{**start, "x": 0}] if start else []) + sorted((r for r in rows if r.get("series") == name),
                                                                  key=lambda r: r["x"])
        xs = [p["x"] for p in points]
        ax.plot(xs, [p["trigger_sure_rate"] for p in points], "-o", label="trigger")
        ax.plot(xs, [p["control_sure_rate"] for p in points], "--o", label=control)
        if control != "decoys":
            ax.plot(xs, [p["decoy_sure_rate"] for p in points], ":x", label="decoys")
        for p in points:
            ax.annotate("cert." if p["certified"] else "not", (p["x"], p["trigger_sure_rate"]), fontsize=7,
                        textcoords="offset points", xytext=(0, 6), ha="center")
        ax.set_xlabel(name)
        ax.set_ylim(-0.03, 1.1)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("'Sure' first-token rate")
    axes[0][0].legend(fontsize=8)
    fig.suptitle("fingerprint retention (labels: verdict at the stated alpha)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path)
