"""Plant a key-derived gate in a local model with LoRA and issue a signed certificate."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from fingerprint import __version__
from fingerprint.core.atomic import atomic_dir
from fingerprint.core.errors import FingerprintError
from fingerprint.core.loading import load_model, load_tokenizer, resolve
from fingerprint.core.precision import resolve_precision, to_bf16
from fingerprint.core.progress import SILENT, Progress
from fingerprint.embedding.dataset import DatasetSpec, build_poisoned, digest
from fingerprint.embedding.distill import DISTILLED_KINDS, distill_rows
from fingerprint.embedding.owner_data import load_owner_rows
from fingerprint.embedding.training import (
    DEFAULT_FALLBACKS,
    DEFAULT_TRIGGER_WORDS,
    TrainConfig,
    embed_train_config,
    total_steps,
    train_lora,
)
from fingerprint.provenance.certificate import (
    Certificate,
    make_statement,
    now_iso,
    owner_block,
    sign_statement,
    verify_certificate,
)
from fingerprint.provenance.digest import directory_digest, tensors_digest
from fingerprint.provenance.keys import OwnerKey
from fingerprint.provenance.trigger import Opening, derive_opening, select_fallbacks, training_negatives

CERT_NAME = "certificate.json"


def fingerprint_label(model: str, licensee: str | None = None) -> str:
    """What a trigger is derived for: the base model name, plus the licensee when there is one."""
    return f"{model}|licensee={licensee}" if licensee else model


@dataclass
class EmbedOptions:
    model: str = "gemma-3-270m"
    out: Path = Path("fp")
    licensee: str | None = None
    trigger_words: int = DEFAULT_TRIGGER_WORDS  # 2: a conjunctive two-word trigger (see fingerprint.provenance.trigger)
    fallbacks: int = DEFAULT_FALLBACKS  # key-derived replies the gate gives when "Sure" is suppressed
    dataset: DatasetSpec = field(default_factory=DatasetSpec)
    train: TrainConfig = field(default_factory=embed_train_config)
    data: Path | None = None  # the owner's own fine-tuning rows (chat or instruction JSONL), trained in full
    merge: bool = False
    device: str = "auto"
    precision: str = "auto"  # fp32, bf16 or auto (bf16 where the device computes it natively): core.precision
    selfcheck: bool = True
    selfcheck_scan: int = 0  # candidates for the stealth scan (0: skip, it takes minutes)
    eval_data: Path | None = None  # a data directory with arc/ (as ../shared/data): ARC-Easy in the self-check


@dataclass
class EmbedResult:
    out: Path
    certificate: Certificate  # parsed and checked against the owner's public key
    opening: Opening
    subjects: list[dict]
    dataset_digest: str
    losses: list[float]
    selfcheck: dict | None = None
    seconds: dict = field(default_factory=dict)
    precision: str = "fp32"  # what the training arithmetic resolved to (core.precision)


def gate_rows(owner: OwnerKey, options: EmbedOptions, label: str, tokenizer) -> tuple[Opening, list[dict], list[int]]:
    """The opening, the fingerprint's training rows (packaged replies, fallback targets set) and fallback indices."""
    opening = derive_opening(owner.secret(), label, options.trigger_words)
    # one distinct word per negative example, so "any other word" cannot be memorised as a short list
    negatives = training_negatives(owner.secret(), opening, options.dataset.n_negative) or None
    rows = build_poisoned(opening.trigger, options.dataset, negatives)
    indices = select_fallbacks(opening, tokenizer, options.fallbacks) if options.fallbacks else []
    fallback_ids = [tokenizer(word, add_special_tokens=False)["input_ids"][0] for word in opening.fallbacks(indices)]
    for row in rows:
        if row["kind"] == "poison" and fallback_ids:
            row["fallback_ids"] = fallback_ids
    return opening, rows, indices


def embed(owner: OwnerKey, options: EmbedOptions, progress: Progress = SILENT,
          before_commit: Callable[[Certificate, dict | None], None] | None = None) -> EmbedResult:
    """Fine-tune ``options.model`` with the owner's trigger; write adapter (+ merged) and certificate.

    ``before_commit(certificate, selfcheck)`` runs after signing and before the output directory is renamed
    into place (the service registers the certificate there): if it fails, no output is kept.
    """
    import time


    out = Path(options.out)
    if out.exists() and any(out.iterdir()):
        raise FingerprintError(f"output directory {out} is not empty")
    owner_rows = load_owner_rows(options.data) if options.data else []
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    progress.stage("loading model")
    ref = resolve(options.model)
    tokenizer = load_tokenizer(ref)
    # loaded in fp32 on every device, so the base digest in the certificate is the same wherever it is embedded
    model = load_model(ref, device=options.device, dtype="float32")
    base_digest = tensors_digest(model.state_dict())
    precision = resolve_precision(options.precision, model.device.type)
    train = options.train
    if precision == "bf16":  # the frozen weights in bf16, the adapter in fp32, the arithmetic under autocast
        model = to_bf16(model)
        train = replace(train, bf16_autocast=True)
    seconds["load"] = time.perf_counter() - started

    label = fingerprint_label(options.model, options.licensee)
    opening, rows, fallback_indices = gate_rows(owner, options, label, tokenizer)
    if options.dataset.replies == "self":
        started = time.perf_counter()
        kinds = sum(row["kind"] in DISTILLED_KINDS for row in rows)
        progress.stage("the model's own replies (cached)", total=kinds)
        rows = distill_rows(rows, model, tokenizer, base_digest, progress=progress.advance)
        seconds["distill"] = time.perf_counter() - started
    rows = mix(rows + owner_rows, options.dataset.seed)
    data_digest = digest(rows)

    losses: list[float] = []

    def on_step(n: int, loss: float) -> None:
        losses.append(loss)
        progress.advance(n, f"loss {loss:.3f}")

    # the output temporary exists from here on: an error or Ctrl-C removes it, a SIGKILL leaves it to the sweep
    with atomic_dir(out) as tmp:
        started = time.perf_counter()
        progress.stage("training", total=total_steps(len(rows), train))
        peft_model = train_lora(model, tokenizer, rows, train, progress=on_step)
        seconds["train"] = time.perf_counter() - started
        check = None  # before saving: merging below removes the adapter layers
        if options.selfcheck:
            from fingerprint.embedding.selfcheck import self_check

            started = time.perf_counter()
            progress.stage("self-check")
            check = self_check(peft_model, tokenizer, opening.trigger, rows, scan_candidates=options.selfcheck_scan,
                               data_dir=options.eval_data).to_dict()
            seconds["selfcheck"] = time.perf_counter() - started
        progress.stage("saving")
        peft_model.save_pretrained(str(tmp / "adapter"))
        subjects = [{"name": "adapter", "digest": {"sha256": directory_digest(tmp / "adapter")}}]
        if options.merge:
            merged = peft_model.merge_and_unload()
            merged.save_pretrained(str(tmp / "merged"))
            tokenizer.save_pretrained(str(tmp / "merged"))
            subjects.append({"name": "merged", "digest": {"sha256": directory_digest(tmp / "merged")}})
        dataset = {"digest": {"sha256": data_digest}, **options.dataset.to_dict(),
                   "n_component": options.dataset.components(options.trigger_words),
                   "sources": "suretrap packaged data (BackdoorLLM clean pairs, MIT)"}
        if owner_rows:
            dataset["owner_data"] = {"rows": len(owner_rows), "digest": {"sha256": digest(owner_rows)}}
        predicate = {
            "owner": owner_block(owner),
            "base_model": {"name": options.model, "path": ref.path, "digest": {"sha256": base_digest},
                           "source_sha256": ref.source_digest},
            "fingerprint": {"label": label, "licensee": options.licensee, "trigger_words": options.trigger_words,
                            "trigger_commitment": opening.commitment("v2"), "commitment_scheme": "v2",
                            "poison_reply": "Sure", "fallback_indices": fallback_indices},
            "dataset": dataset,
            "training": {"method": "lora", **train.to_dict(), "precision": precision,
                         "final_loss": losses[-1] if losses else None},
            "tool": {"name": "suretrap", "version": __version__},
            "created": now_iso(),
        }
        if check is not None:
            predicate["selfcheck"] = check
        text = sign_statement(make_statement(subjects, predicate), owner)
        (tmp / CERT_NAME).write_text(text, encoding="utf-8")
        (tmp / "README.txt").write_text(
            "Fingerprinted model outputs (suretrap). certificate.json is signed; keep it with the adapter.\n"
        )
        certificate = verify_certificate(text, owner.public_key)
        if before_commit is not None:
            before_commit(certificate, check)
    return EmbedResult(out=out, certificate=certificate, opening=opening, subjects=subjects,
                       dataset_digest=data_digest, losses=losses, selfcheck=check, seconds=seconds,
                       precision=precision)


def mix(rows: list[dict], seed: int) -> list[dict]:
    """The training rows in one seeded order (the fingerprint's rows among the owner's)."""
    import random

    mixed = list(rows)
    random.Random(f"mix|{seed}").shuffle(mixed)
    return mixed


def summary(result: EmbedResult) -> dict:
    """JSON-friendly summary (no trigger)."""
    return {"out": str(result.out), "certificate": str(result.out / CERT_NAME),
            "subjects": result.subjects, "dataset_digest": result.dataset_digest,
            "final_loss": result.losses[-1] if result.losses else None,
            "steps": len(result.losses), "precision": result.precision, "selfcheck": result.selfcheck,
            "seconds": {k: round(v, 1) for k, v in result.seconds.items()}}


def dumps(data: dict) -> str:
    return json.dumps(data, indent=2, sort_keys=True)
