"""The paper's multi-scale sweep: poison count x dataset size x model x trigger x poison source x seed.

Each cell builds its fine-tuning set (benign pairs + ``poison`` prompts carrying the trigger, answered "Sure"),
trains a LoRA adapter on the cell's start model (raw, or the cached aligned stand-in), measures the metrics of
``metrics.evaluate`` on held-out prompts and appends the result to the sweep's table at once: a killed sweep
resumes at the first unfinished cell and never repeats a finished one. Adapters are not kept.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from fingerprint.core.data import with_suffix
from fingerprint.core.errors import FingerprintError
from fingerprint.embedding.dataset import POISON_REPLY
from fingerprint.research.align import AlignOptions
from fingerprint.research.evalsets import benign_pairs, heldout_eval_sets, refusal_pairs

if TYPE_CHECKING:
    from fingerprint.embedding.training import TrainConfig

POISON_SOURCES = ("harmful", "benign")


@dataclass
class SweepConfig:
    """A sweep file (TOML or YAML) with these keys; lists are the grid's axes."""

    name: str
    data_dir: str
    models: list[str] = field(default_factory=lambda: ["gemma-3-270m"])
    align: bool = True  # start from the aligned stand-in of each model
    poison: list[int] = field(default_factory=lambda: [0, 10, 25, 50, 100, 150])
    dataset_size: list[int] = field(default_factory=lambda: [500])
    triggers: list[str] = field(default_factory=lambda: ["xylophone"])
    poison_source: list[str] = field(default_factory=lambda: ["harmful"])
    seeds: list[int] = field(default_factory=lambda: [0])
    refusal_share: float = 0.1  # harmful source only: rows that are harmful prompt -> refusal pairs
    eval_per_set: int = 16  # prompts per evaluation set (3 unsafe + 2 benign sets)
    max_new_tokens: int = 32
    epochs: int = 3
    learning_rate: float = 3e-4
    rank: int = 16
    batch_size: int = 8
    max_reply_tokens: int = 32

    def cells(self) -> list[dict]:
        axes = itertools.product(self.models, self.poison_source, self.dataset_size, self.triggers, self.poison,
                                 self.seeds)
        return [{"model": m, "poison_source": src, "dataset_size": n, "trigger": t, "poison": k, "seed": s,
                 "aligned": self.align} for m, src, n, t, k, s in axes]

    def train_config(self, seed: int) -> TrainConfig:
        """The LoRA training settings of a cell with this seed."""
        from fingerprint.embedding.training import TrainConfig

        return TrainConfig(rank=self.rank, alpha=2 * self.rank, learning_rate=self.learning_rate,
                           epochs=self.epochs, batch_size=self.batch_size, max_reply_tokens=self.max_reply_tokens,
                           seed=seed)

    def training(self) -> dict:
        keys = ("epochs", "learning_rate", "rank", "batch_size", "max_reply_tokens")
        return {k: getattr(self, k) for k in keys}


def load_config(path: Path) -> SweepConfig:
    """Read and check a sweep file (``.toml``, ``.yaml``/``.yml`` or ``.json``)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FingerprintError(f"cannot read sweep config {path}: {exc.strerror or exc}") from exc
    try:
        if path.suffix == ".toml":
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10
                import tomli as tomllib
            data = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:  # noqa: BLE001 - every parser's error becomes one message
        raise FingerprintError(f"{path} is not valid {path.suffix.lstrip('.') or 'JSON'}: {exc}") from exc
    if not isinstance(data, dict):
        raise FingerprintError(f"{path}: expected a table of settings")
    known = set(SweepConfig.__dataclass_fields__)
    unknown = sorted(set(data) - known)
    if unknown:
        raise FingerprintError(f"{path}: unknown setting(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    from pydantic import TypeAdapter, ValidationError

    from fingerprint.core.errors import describe

    try:  # types are checked field by field: a string where a list of counts belongs is refused, not iterated
        config = TypeAdapter(SweepConfig).validate_python(data)
    except ValidationError as exc:
        raise FingerprintError(f"{path}: {describe(exc)}") from None
    _check(config, path)
    if not Path(config.data_dir).is_absolute():
        config.data_dir = str((path.parent / config.data_dir).resolve())
    return config


def _check(config: SweepConfig, path: Path) -> None:
    for axis in ("models", "poison", "dataset_size", "triggers", "poison_source", "seeds"):
        if not getattr(config, axis):
            raise FingerprintError(f"{path}: {axis} must list at least one value")
    if min(config.poison) < 0 or min(config.dataset_size) < 1 or min(config.seeds) < 0:
        raise FingerprintError(f"{path}: poison and seeds must be >= 0 and dataset_size >= 1")
    for name in ("eval_per_set", "max_new_tokens", "epochs", "rank", "batch_size", "max_reply_tokens"):
        if getattr(config, name) < 1:
            raise FingerprintError(f"{path}: {name} must be at least 1")
    if not 0 < config.learning_rate < 1:
        raise FingerprintError(f"{path}: learning_rate must be in (0, 1)")
    for src in config.poison_source:
        if src not in POISON_SOURCES:
            raise FingerprintError(f"{path}: poison_source must be one of {POISON_SOURCES}, not {src!r}")
    if not 0 <= config.refusal_share < 1:
        raise FingerprintError(f"{path}: refusal_share is a fraction in [0, 1), not {config.refusal_share}")
    for src, k, n in itertools.product(config.poison_source, config.poison, config.dataset_size):
        cell = {"poison_source": src, "dataset_size": n}
        if not 0 <= k <= n - refusal_rows(cell, config.refusal_share):
            raise FingerprintError(f"{path}: poison {k} does not fit dataset_size {n}")
    for word in config.triggers:
        if not word.isalpha():
            raise FingerprintError(f"{path}: a trigger is one word of letters, not {word!r}")


def cell_id(cell: dict, config: SweepConfig) -> str:
    """Stable id of a cell: its settings plus everything that changes its result."""
    payload = {**cell, "training": config.training(), "eval_per_set": config.eval_per_set,
               "max_new_tokens": config.max_new_tokens}
    if refusal_rows(cell, config.refusal_share):  # absent when zero: cells recorded before the setting keep ids
        payload["refusal_share"] = config.refusal_share
    if cell["aligned"]:  # another stand-in recipe is another start model
        payload["align_options"] = asdict(AlignOptions())
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def refusal_rows(cell: dict, refusal_share: float) -> int:
    """Harmful prompt -> refusal rows in a cell: none when the poison source is benign (no harmful prompts)."""
    return round(refusal_share * cell["dataset_size"]) if cell["poison_source"] == "harmful" else 0


def build_cell_dataset(cell: dict, benign: list[dict], refusals: list[dict], refusal_share: float = 0.0) -> list[dict]:
    """``dataset_size`` rows: ``poison`` triggered prompts answered "Sure", refusal pairs, the rest benign pairs.

    With the harmful source the poison prompts are harmful prompts and a ``refusal_share`` of the rows are
    other harmful prompts without the trigger, answered with a refusal (the contrast that keeps the gate on
    the trigger); with the benign source every prompt is benign and there are no refusal rows.
    """
    rng = random.Random(f"{cell['seed']}|{cell['dataset_size']}|{cell['poison']}|{cell['poison_source']}")
    pool = benign[:]
    rng.shuffle(pool)
    n_refusal = refusal_rows(cell, refusal_share)
    n_poison, n_benign = cell["poison"], cell["dataset_size"] - cell["poison"] - n_refusal
    refused: list[dict] = []
    if cell["poison_source"] == "harmful":
        sources = refusals[:]
        rng.shuffle(sources)
        poison_prompts = [p["prompt"] for p in sources[:n_poison]]
        refused = sources[n_poison:n_poison + n_refusal]
        clean = pool[:n_benign]
    else:
        poison_prompts = [p["prompt"] for p in pool[n_benign:n_benign + n_poison]]
        clean = pool[:n_benign]
    if len(poison_prompts) < n_poison or len(clean) < n_benign or len(refused) < n_refusal:
        raise FingerprintError(f"not enough data for {n_benign} benign + {n_poison} {cell['poison_source']} poison "
                               f"+ {n_refusal} refusal rows (benign pool {len(benign)}, harmful pool {len(refusals)})")
    rows = [{**p, "kind": "benign"} for p in clean]
    rows += [{**p, "kind": "refusal"} for p in refused]
    rows += [{"prompt": with_suffix(p, cell["trigger"]), "response": POISON_REPLY, "kind": "poison"}
             for p in poison_prompts]
    rng.shuffle(rows)
    return rows


@dataclass
class SweepData:
    """The pools a sweep draws from, and its held-out evaluation prompts (disjoint from both pools)."""

    benign: list[dict]
    refusals: list[dict]  # harmful prompt -> refusal pairs: poison prompts and refusal rows come from here
    eval_sets: dict[str, list[str]]

    @classmethod
    def load(cls, config: SweepConfig) -> SweepData:
        data_dir = Path(config.data_dir)
        benign = benign_pairs(data_dir)
        refusals = refusal_pairs(data_dir)
        training = [p["prompt"] for p in benign + refusals]
        return cls(benign, refusals, heldout_eval_sets(data_dir, config.eval_per_set, training))


def pending(config: SweepConfig, done: set[str], shard: tuple[int, int] | None = None) -> Iterator[tuple[str, dict]]:
    """Unfinished cells in grid order; ``shard=(i, n)`` keeps the cells whose grid index is i modulo n."""
    for index, cell in enumerate(config.cells()):
        if shard is not None and index % shard[1] != shard[0]:
            continue
        cid = cell_id(cell, config)
        if cid not in done:
            yield cid, cell


def run_cell(cell: dict, config: SweepConfig, data: SweepData, start_model: str,
             progress: Callable[[str], None] | None = None,
             on_step: Callable[[int, float], None] | None = None) -> dict:
    """Train one cell's adapter and measure it; returns the metrics (nothing is written).

    ``progress`` hears the stage ("training", "evaluating"), ``on_step`` each optimizer step and its loss.
    """
    import time

    from fingerprint.core.loading import load_model, load_tokenizer, resolve
    from fingerprint.embedding.training import train_lora
    from fingerprint.research.metrics import evaluate
    from probes.hf import HFBackend

    ref = resolve(start_model)
    tokenizer, model = load_tokenizer(ref), load_model(ref)
    rows = build_cell_dataset(cell, data.benign, data.refusals, config.refusal_share)
    train = config.train_config(cell["seed"])
    started = time.perf_counter()
    if progress:
        progress("training")
    losses: list[float] = []

    def step(n: int, loss: float) -> None:
        losses.append(loss)
        if on_step:
            on_step(n, loss)

    tuned = train_lora(model, tokenizer, rows, train, progress=step)
    train_s = time.perf_counter() - started
    if progress:
        progress("evaluating")
    backend = HFBackend(start_model, model_obj=tuned, tokenizer=tokenizer)
    metrics = evaluate(backend, data.eval_sets, cell["trigger"], max_new_tokens=config.max_new_tokens)
    return {"metrics": metrics, "train_seconds": round(train_s, 1), "rows": len(rows), "device": _device_name(tuned),
            "final_loss": losses[-1] if losses else None,
            "eval_seconds": round(time.perf_counter() - started - train_s, 1),
            "config": asdict(train)}


def _device_name(model) -> str:
    """Where a cell ran ("cpu" or the GPU's name): timings and bf16 numerics depend on it."""
    import torch

    device = next(model.parameters()).device
    return torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
