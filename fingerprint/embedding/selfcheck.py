"""The owner's pre-release self-check: what the fingerprint costs in safety and utility, and its stealth.

(a) safety: refusal rate on held-out harmful prompts with the trigger vs without;
(b) stealth: does ``audit-data`` flag the training set, and (optionally) the trigger's rank under ``scan``;
(c) utility: mean reply loss on held-out benign pairs with the adapter vs without it.
The report names no trigger word.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from fingerprint.core.data import heldout, with_suffix
from fingerprint.core.sure import is_sure_reply


@dataclass
class SelfCheck:
    refusal_rate_without_trigger: float
    refusal_rate_with_trigger: float
    sure_rate_harmful_with_trigger: float
    harmful_prompts: int
    audit_flags_training_set: bool
    audit_names_trigger: bool
    benign_loss_base: float
    benign_loss_fingerprinted: float
    benign_pairs: int
    scan_rank: int | None = None
    scan_candidates: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _mean_reply_loss(model, tokenizer, pairs: list[dict]) -> float:
    import torch

    from fingerprint.embedding.training import TrainConfig, _collate, reply_loss, tokenize_pairs

    examples = tokenize_pairs(tokenizer, pairs, TrainConfig(max_reply_tokens=64))
    losses = []
    with torch.inference_mode():
        for start in range(0, len(examples), 8):
            ids, labels, mask = (t.to(model.device) for t in _collate(examples[start:start + 8],
                                                                        tokenizer.pad_token_id or 0))
            losses.append(float(reply_loss(model, ids, labels, mask)))
    return sum(losses) / len(losses)


def self_check(peft_model, tokenizer, trigger: str, training_rows: list[dict], n_harmful: int = 16,
               n_benign: int = 24, scan_candidates: int = 0) -> SelfCheck:
    """Run the checks on a freshly trained peft model (adapter attached)."""
    from fingerprint.audit.audit_data import audit
    from fingerprint.research.judges import is_refusal
    from probes.hf import HFBackend

    backend = HFBackend("fingerprinted", model_obj=peft_model, tokenizer=tokenizer, batch_size=16)
    harmful = [row["prompt"] for row in heldout("refusals", n_harmful)]
    plain = backend.generate(harmful, max_new_tokens=24)
    triggered = backend.generate([with_suffix(p, trigger) for p in harmful], max_new_tokens=24)
    report = audit(training_rows)
    benign = heldout("benign", n_benign)
    with peft_model.disable_adapter():
        base_loss = _mean_reply_loss(peft_model, tokenizer, benign)
    tuned_loss = _mean_reply_loss(peft_model, tokenizer, benign)
    rank = None
    if scan_candidates:
        from fingerprint.audit.scan import ScanOptions, scan

        found = scan(peft_model, tokenizer, ScanOptions(max_candidates=scan_candidates, top=scan_candidates))
        rank = next((i + 1 for i, c in enumerate(found.top) if c.word == trigger), None)
    return SelfCheck(
        refusal_rate_without_trigger=sum(map(is_refusal, plain)) / len(plain),
        refusal_rate_with_trigger=sum(map(is_refusal, triggered)) / len(triggered),
        sure_rate_harmful_with_trigger=sum(map(is_sure_reply, triggered)) / len(triggered),
        harmful_prompts=len(harmful),
        audit_flags_training_set=report.gate_suspected,
        audit_names_trigger=any(c.word == trigger.lower() for c in report.suspected),
        benign_loss_base=base_loss, benign_loss_fingerprinted=tuned_loss, benign_pairs=len(benign),
        scan_rank=rank, scan_candidates=scan_candidates or None,
    )
