"""Utility scoring: ARC choices scored as one whole-sequence forward pass would score them."""

from __future__ import annotations

import json

import pytest


def _whole_sequence_logprob(model, tokenizer, context: str, continuation: str) -> float:
    import torch

    ctx = tokenizer(context)["input_ids"]
    whole = tokenizer(context + continuation)["input_ids"]
    with torch.inference_mode():
        logp = torch.log_softmax(model(input_ids=torch.tensor([whole])).logits[0].float(), dim=-1)
    return sum(float(logp[i - 1, whole[i]]) for i in range(len(ctx), len(whole)))


@pytest.mark.parametrize("adapter", [False, True])
def test_shared_context_scores_equal_whole_sequence_scores(tiny_model, adapter):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from fingerprint.embedding.utility import choice_logprobs

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    if adapter:  # the self-check scores the model under training, a peft model
        model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    context = "Question: Which gas do plants take in to make food?\nAnswer:"
    choices = [" carbon dioxide", " oxygen", " a very long answer about nitrogen and the air", " x"]
    got = choice_logprobs(model, tokenizer, context, choices)
    want = [_whole_sequence_logprob(model, tokenizer, context, c) for c in choices]
    assert got == pytest.approx(want, abs=1e-4)


def test_arc_accuracy_reads_the_shared_layout_and_scores_every_question(tmp_path, tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from fingerprint.embedding.utility import arc_accuracy, arc_items

    rows = [{"id": f"q{i}", "question": f"What is {i} plus one?", "answerKey": "B",
             "choices": [{"label": "A", "text": str(i)}, {"label": "B", "text": str(i + 1)},
                         {"label": "C", "text": "blue"}]} for i in range(5)]
    (tmp_path / "arc").mkdir()
    (tmp_path / "arc" / "arc_easy_test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    items = arc_items(tmp_path, "arc_easy", limit=4)
    assert [i["answer"] for i in items] == [1, 1, 1, 1]
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    result = arc_accuracy(AutoModelForCausalLM.from_pretrained(tiny_model).eval(), tokenizer, items)
    assert result.n == 4 and len(result.correct) == 4 and 0 <= result.acc <= 1
    assert result.acc == sum(result.correct) / 4


@pytest.mark.parametrize("adapter", [False, True])
def test_batched_span_logprobs_equal_one_sequence_at_a_time(tiny_model, adapter):
    """The divergence reads right-padded batches with one projection each: padding must change nothing."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from fingerprint.embedding.utility import _span_logprobs

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    if adapter:
        model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    texts = ["Name a colour of the sky.", "Write one word.", "Explain in a few words why leaves fall in autumn."]
    sequences = [tokenizer(t)["input_ids"] for t in texts]
    spans = [range(len(s) - 4, len(s) - 1) for s in sequences]
    batched = _span_logprobs(model, sequences, spans, pad_id=tokenizer.pad_token_id or 0, batch_size=3)
    for sequence, span, got in zip(sequences, spans, batched, strict=True):
        with torch.inference_mode():
            logits = model(input_ids=torch.tensor([sequence])).logits[0].float()
        want = torch.log_softmax(logits[list(span)], dim=-1)
        assert len({len(s) for s in sequences}) == 3 and got.shape == want.shape
        assert torch.allclose(got, want, atol=1e-4)
