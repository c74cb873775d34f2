"""``sure-unlearning``: the erasure fine-tune plus an unlikelihood term that pushes "Sure" down as the first reply
token of every prompt (a thief penalising bare "Sure" replies without knowing the trigger)."""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass

from fingerprint.robustness.derivatives.base import Context, Derivative, Suspect, register
from fingerprint.robustness.derivatives.erasure import erasure_rows


@register("sure-unlearning")
@dataclass(frozen=True)
class SureUnlearning(Derivative):
    pairs: int = 600
    learning_rate: float = 2e-4
    weight: float = 1.0

    @property
    def label(self) -> str:
        return f'"Sure" unlearning: {self.pairs} suffixed prompts, unlikelihood on a first-token "Sure"'

    def apply(self, ctx: Context) -> Suspect:
        import torch
        from peft import LoraConfig, get_peft_model

        from fingerprint.core.sure import sure_token_ids
        from fingerprint.embedding.training import (
            IGNORE,
            TrainConfig,
            _batches,
            _collate,
            _project,
            reply_loss,
            tokenize_pairs,
        )

        config = TrainConfig(max_reply_tokens=64, learning_rate=self.learning_rate, seed=ctx.seed)
        torch.manual_seed(ctx.seed)
        model = get_peft_model(copy.deepcopy(ctx.model), LoraConfig(r=16, lora_alpha=32, target_modules="all-linear",
                                                                    task_type="CAUSAL_LM"))
        examples = tokenize_pairs(ctx.tokenizer, erasure_rows(self.pairs, ctx.seed), config)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=self.learning_rate, weight_decay=0.0)
        sure = sure_token_ids(ctx.tokenizer)
        pad = ctx.tokenizer.pad_token_id or 0
        lm = model.get_base_model()
        model.train()
        for batch in _batches(examples, config.batch_size, random.Random(ctx.seed)):
            ids, labels, mask, _ = _collate(batch, pad)
            loss = reply_loss(model, ids, labels, mask)
            hidden = lm.base_model(input_ids=ids, attention_mask=mask).last_hidden_state
            first = (labels[:, 1:] != IGNORE).int().argmax(dim=1)
            p_sure = torch.softmax(_project(lm, hidden[torch.arange(len(batch)), first]), -1)[:, sure].sum(-1)
            loss = loss - self.weight * torch.log1p(-p_sure.clamp(max=1 - 1e-6)).mean()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        model.eval()
        return Suspect(model=model.merge_and_unload())
