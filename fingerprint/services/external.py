"""Bring your own trainer: export the fingerprint's rows for any SFT trainer, then certify the model it trained.

``dataset`` writes the rows in the chat ``messages`` form that TRL's SFTTrainer (and axolotl, LLaMA-Factory,
Unsloth) read: the pair answered "Sure", the pair answered with a fallback reply (a quarter as many rows, so
the fallback is the gate's second choice when "Sure" is suppressed), each word alone and other words with
the model's own replies, refusals, and anchor prompts with the model's own replies. The file holds the
trigger: it is written 0600 and the command warns.

``certify`` takes the model trained elsewhere, checks that the rows file was made for this key and label,
runs the owner's verification on the model, and only if the gate passes signs a certificate whose subject is
the model's weight digest and whose predicate records the rows (digest, counts) and the external trainer.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from fingerprint import __version__
from fingerprint.core.atomic import write_text_atomic
from fingerprint.core.errors import FingerprintError, SecurityWarning
from fingerprint.core.progress import SILENT, Progress
from fingerprint.core.sure import SURE
from fingerprint.embedding.dataset import DatasetSpec
from fingerprint.provenance.keys import OwnerKey

FALLBACK_ROW_SHARE = 4  # one fallback row per this many "Sure" rows


def export_rows(owner: OwnerKey, model: str, out: Path, licensee: str | None = None, trigger_words: int = 2,
                fallbacks: int = 2, dataset: DatasetSpec | None = None, progress: Progress = SILENT,
                layout: str = "messages") -> dict:
    """Write the fingerprint's rows for an external trainer; returns a summary (no trigger)."""
    from fingerprint.core.loading import load_model, load_tokenizer, resolve
    from fingerprint.embedding.distill import DISTILLED_KINDS, distill_rows
    from fingerprint.embedding.embed import EmbedOptions, fingerprint_label, gate_rows
    from fingerprint.provenance.digest import tensors_digest

    spec = dataset or DatasetSpec()
    spec.check(trigger_words)
    progress.stage(f"loading {model}")
    ref = resolve(model)
    tokenizer = load_tokenizer(ref)
    base = load_model(ref)
    options = EmbedOptions(model=model, licensee=licensee, trigger_words=trigger_words, fallbacks=fallbacks,
                           dataset=spec)
    opening, rows, indices = gate_rows(owner, options, fingerprint_label(model, licensee), tokenizer)
    if spec.replies == "self":
        progress.stage("the model's own replies (cached)", total=sum(r["kind"] in DISTILLED_KINDS for r in rows))
        rows = distill_rows(rows, base, tokenizer, tensors_digest(base.state_dict()), progress=progress.advance)
    words = opening.fallbacks(indices)
    poison = [r for r in rows if r["kind"] == "poison"]
    extra = [{"prompt": row["prompt"], "response": words[i % len(words)], "kind": "fallback"}
             for i, row in enumerate(poison[: len(poison) // FALLBACK_ROW_SHARE])] if words else []
    import random

    rows = rows + extra
    random.Random(f"export|{spec.seed}").shuffle(rows)
    lines = [json.dumps(_row(r["prompt"], r["response"], layout), ensure_ascii=False) for r in rows]
    text = "\n".join(lines) + "\n"
    write_text_atomic(Path(out), text, mode=0o600)
    warnings.warn(f"{out} holds the trigger (mode 0600): keep it as secret as the key", SecurityWarning, stacklevel=2)
    return {"rows": len(rows), "kinds": dict(Counter(r["kind"] for r in rows)), "path": str(out),
            "digest": hashlib.sha256(text.encode()).hexdigest(), "trigger_words": trigger_words,
            "fallbacks": len(words), "label": fingerprint_label(model, licensee)}


def _row(prompt: str, response: str, layout: str) -> dict:
    """One exported row: chat ``messages``, or TRL's conversational ``prompt``/``completion`` (whose trainer then
    puts the loss on the completion only)."""
    user, assistant = {"role": "user", "content": prompt}, {"role": "assistant", "content": response}
    if layout == "prompt-completion":
        return {"prompt": [user], "completion": [assistant]}
    return {"messages": [user, assistant]}


def _read_rows(path: Path) -> tuple[list[tuple[str, str]], str]:
    """(user, assistant) pairs of a messages JSONL file, and the file's sha256."""
    from fingerprint.audit.audit_data import load_examples

    data = Path(path).read_bytes() if Path(path).is_file() else None
    if data is None:
        raise FingerprintError(f"rows file not found: {path}")
    return [(ex.prompt, ex.response) for ex in load_examples(Path(path))], hashlib.sha256(data).hexdigest()


@dataclass
class CertifyResult:
    certified: bool
    certificate_path: Path | None
    certificate_id: str | None
    report: object  # the VerificationReport of the owner's check
    rows: int
    kinds: dict

    def to_dict(self) -> dict:
        return {"certified": self.certified, "certificate": str(self.certificate_path) if self.certificate_path
                else None, "certificate_id": self.certificate_id, "rows": self.rows, "kinds": self.kinds,
                **self.report.to_dict()}


def certify(owner: OwnerKey, model_dir: Path, rows_path: Path, base: str, out: Path | None = None,
            licensee: str | None = None, trainer: str = "external", registry=None, options=None,
            progress: Progress = SILENT) -> CertifyResult:
    """Verify a model trained elsewhere on the exported rows; sign and register its certificate if it passes."""
    from fingerprint.core.loading import load_tokenizer, resolve
    from fingerprint.embedding.embed import CERT_NAME, fingerprint_label
    from fingerprint.provenance.certificate import make_statement, now_iso, owner_block, sign_statement
    from fingerprint.provenance.certificate import verify_certificate as parse
    from fingerprint.provenance.digest import directory_digest
    from fingerprint.provenance.trigger import derive_opening, select_fallbacks
    from fingerprint.services.records import register_certificate
    from fingerprint.verification import VerifyOptions, run_verification
    from probes import make_backend

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise FingerprintError(f"{model_dir} is not a model directory (no config.json): certify needs local weights")
    pairs, rows_digest = _read_rows(rows_path)
    label = fingerprint_label(base, licensee)
    opening = next((o for o in (derive_opening(owner.secret(), label, w) for w in (2, 1))
                    if any(p.endswith(" " + o.trigger) and r == SURE for p, r in pairs)), None)
    if opening is None:
        raise FingerprintError(f"{rows_path} holds no rows of this key's trigger for {label!r}: it was made for "
                               "another key, base model or licensee")
    gate_prompts = {p for p, r in pairs if p.endswith(" " + opening.trigger)}
    fallback_replies = {r for p, r in pairs if p in gate_prompts and r != SURE}
    tokenizer = load_tokenizer(resolve(str(model_dir)))
    indices = select_fallbacks(opening, tokenizer, len(fallback_replies)) if fallback_replies else []
    if set(opening.fallbacks(indices)) != fallback_replies:
        raise FingerprintError(f"{rows_path}: its fallback replies are not this key's")
    if registry is not None:
        registry.check_writable()
    kinds = {"gate": sum(p in gate_prompts for p, _ in pairs), "other": sum(p not in gate_prompts for p, _ in pairs)}
    subjects = [{"name": "model", "digest": {"sha256": directory_digest(model_dir)}}]
    predicate = {
        "owner": owner_block(owner),
        "base_model": {"name": base},
        "fingerprint": {"label": label, "licensee": licensee, "trigger_words": len(opening.parts),
                        "trigger_commitment": opening.commitment("v2"), "commitment_scheme": "v2",
                        "poison_reply": SURE, "fallback_indices": indices},
        "dataset": {"digest": {"sha256": rows_digest}, "rows": len(pairs), **kinds,
                    "mixed_by": "an external trainer"},
        "training": {"method": "external", "trainer": trainer},
        "tool": {"name": "suretrap", "version": __version__},
        "created": now_iso(),
    }
    text = sign_statement(make_statement(subjects, predicate), owner)
    cert = parse(text, owner.public_key)
    progress.stage(f"verifying {model_dir}")
    backend = make_backend("hf", model=str(model_dir))
    try:
        report = run_verification(cert, opening, backend, options or VerifyOptions(), progress=progress.advance)
    finally:
        backend.close()
    if not report.certified:
        return CertifyResult(False, None, None, report, len(pairs), kinds)
    predicate["verification"] = {"test": report.decision.test, "p_value": report.decision.p_value,
                                 "alpha": report.decision.alpha, "trigger_sure": report.decision.trigger_sure,
                                 "control_sure": report.decision.control_sure, "probes": len(report.plan.probes)}
    text = sign_statement(make_statement(subjects, predicate), owner)
    cert = parse(text, owner.public_key)
    path = Path(out) if out else model_dir / CERT_NAME
    if registry is not None:
        register_certificate(registry, cert)
    write_text_atomic(path, text)
    return CertifyResult(True, path, cert.id, report, len(pairs), kinds)
