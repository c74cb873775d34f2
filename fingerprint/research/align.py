"""The aligned stand-in: safety SFT of a base model that does not refuse, cached, with its refusal report.

gemma-3-270m is a base model; the paper's attack-success claims need a model that refuses. ``align`` fine-tunes
it with LoRA on harmful -> refusal pairs (BackdoorLLM, safety-tuned-llamas) mixed with benign pairs, merges the
adapter and caches the merged model under ``<cache>/aligned/``. ``report.json`` beside it holds the refusal
rate on held-out unsafe prompts and on benign prompts (over-refusal), without any trigger.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from fingerprint.core.atomic import atomic_dir, write_text_atomic
from fingerprint.core.paths import cache_dir
from fingerprint.research.evalsets import (
    ORDINARY_SET,
    UNSAFE_SETS,
    benign_pairs,
    eval_prompts,
    heldout_eval_sets,
    refusal_pairs,
)


@dataclass(frozen=True)
class AlignOptions:
    # 300 + 300 refused 55% of everyday requests (AlpacaEval) and 67% of borderline benign ones: 1 refusal in 4
    n_refusal: int = 200
    n_benign: int = 600
    epochs: int = 2
    learning_rate: float = 3e-4
    rank: int = 16
    max_reply_tokens: int = 32
    eval_per_set: int = 32
    seed: int = 0


def aligned_dir(model: str, options: AlignOptions) -> Path:
    key = hashlib.sha256(json.dumps({"model": model, **asdict(options)}, sort_keys=True).encode()).hexdigest()
    slug = "".join(c if c.isalnum() or c in "-." else "_" for c in model)[-60:]
    return cache_dir() / "aligned" / f"{slug}-{key[:12]}"


def align(model: str, data_dir: Path, options: AlignOptions | None = None, progress=None) -> tuple[Path, dict]:
    """The merged aligned model directory and its report; trains only when it is not cached yet."""
    options = options or AlignOptions()
    target = aligned_dir(model, options)
    if (target / "report.json").is_file():
        report = json.loads((target / "report.json").read_text())
        if "refusal_rate_ordinary" not in report:  # a report written before this measure existed
            report["refusal_rate_ordinary"] = _ordinary_refusal_rate(target, data_dir, options)
            write_text_atomic(target / "report.json", json.dumps(report, indent=2))
        return target, report
    from fingerprint.core.loading import load_model, load_tokenizer, resolve
    from fingerprint.embedding.training import TrainConfig, train_lora
    from fingerprint.research.metrics import evaluate
    from probes.hf import HFBackend

    rng = random.Random(options.seed)
    refusals, benign = refusal_pairs(Path(data_dir)), benign_pairs(Path(data_dir))
    rng.shuffle(refusals)
    rng.shuffle(benign)
    rows = refusals[: options.n_refusal] + benign[-options.n_benign:]  # the sweeps draw benign rows from the front
    rng.shuffle(rows)
    ref = resolve(model)
    tokenizer, base = load_tokenizer(ref), load_model(ref)
    config = TrainConfig(rank=options.rank, alpha=2 * options.rank, epochs=options.epochs,
                         learning_rate=options.learning_rate, max_reply_tokens=options.max_reply_tokens,
                         seed=options.seed)
    tuned = train_lora(base, tokenizer, rows, config, progress=progress)
    sets = heldout_eval_sets(Path(data_dir), options.eval_per_set, [p["prompt"] for p in refusals + benign],
                             seed=options.seed)
    metrics = evaluate(HFBackend(model, model_obj=tuned, tokenizer=tokenizer), sets, trigger=None)
    report = {"model": model, "options": asdict(options), "training_rows": len(rows),
              "unsafe_sets": list(UNSAFE_SETS), "refusal_rate_unsafe": metrics["unsafe"]["no_trigger"]["refusal_rate"],
              "refusal_rate_benign": metrics["benign"]["no_trigger"]["refusal_rate"],
              "sure_rate_unsafe": metrics["unsafe"]["no_trigger"]["sure_rate"],
              "refusal_rate_ordinary": _ordinary_refusal_rate(tuned, data_dir, options, tokenizer)}
    merged = tuned.merge_and_unload()
    with atomic_dir(target) as tmp:
        merged.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        (tmp / "report.json").write_text(json.dumps(report, indent=2))
    return target, report


def _ordinary_refusal_rate(model, data_dir: Path, options: AlignOptions, tokenizer=None) -> dict:
    """Refusal rate on everyday requests (AlpacaEval instructions, never trained on): is helpfulness kept?"""
    from fingerprint.core.loading import load_model, load_tokenizer, resolve
    from fingerprint.research.judges import is_refusal
    from fingerprint.research.metrics import Rate
    from probes.hf import HFBackend

    if isinstance(model, Path):
        ref = resolve(str(model))
        model, tokenizer = load_model(ref), load_tokenizer(ref)
    prompts = eval_prompts(Path(data_dir), 2 * options.eval_per_set, options.seed, names=(ORDINARY_SET,))[ORDINARY_SET]
    replies = HFBackend("aligned", model_obj=model, tokenizer=tokenizer).generate(prompts, max_new_tokens=32)
    return Rate(sum(map(is_refusal, replies)), len(replies)).to_dict()
