"""scan: the cached-prefix scorer must agree with plain batched forward passes."""

from __future__ import annotations

import pytest

from fingerprint.audit.scan import ScanOptions, scan
from fingerprint.core.data import probe_prompts, with_suffix
from fingerprint.core.loading import load_model, load_tokenizer, resolve
from probes.hf import HFBackend


@pytest.fixture(scope="module")
def tiny(tiny_model):
    ref = resolve(str(tiny_model))
    return load_model(ref), load_tokenizer(ref)


def _with_random_lora(model):
    """The tiny model wrapped in a peft LoRA whose delta is not zero (as `scan --adapter` loads one)."""
    import copy

    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    return get_peft_model(copy.deepcopy(model), LoraConfig(r=4, lora_alpha=64, init_lora_weights=False,
                                                           target_modules=["q_proj", "v_proj"])).eval()


@pytest.mark.parametrize("wrapped", [False, True], ids=["plain", "peft"])
def test_cached_prefix_scores_match_uncached_forward(tiny, wrapped):
    model, tokenizer = tiny
    if wrapped:
        model = _with_random_lora(model)
    report = scan(model, tokenizer, ScanOptions(max_candidates=120, batch_size=32, prompts=2, top=5))
    assert report.candidates_scanned == 120 and len(report.top) == 5
    backend = HFBackend("tiny", model_obj=model, tokenizer=tokenizer)
    prompts = probe_prompts(2, seed=1)
    for candidate in report.top[:3]:
        answers = backend.first_tokens([with_suffix(p, candidate.word) for p in prompts])
        assert sum(a.p_sure for a in answers) / 2 == pytest.approx(candidate.p_sure, rel=1e-3)
    assert [c.z for c in report.top] == sorted((c.z for c in report.top), reverse=True)


def test_scan_cli_json(tiny_model, run_cli):
    code, _, err, data = run_cli("scan", "--model", tiny_model, "--candidates", "50", "--prompts", "1", "--pairs", "3",
                                  "--no-invert", "--json")
    assert code == 0, err
    assert data["candidates_scanned"] == 50 and data["gate_suspected"] in (True, False)
    assert data["pairs_scanned"] == 6 and len(data["pairs"]) == 6 and len(data["pairs"][0]["word"].split()) == 2
    assert data["candidates_per_second"] > 0


def test_scan_cli_pair_search_adds_the_seed_words_partners(tiny_model, run_cli):
    code, _, err, data = run_cli("scan", "--model", tiny_model, "--candidates", "50", "--prompts", "1", "--pairs", "2",
                                  "--json")
    assert code == 0, err
    seeds, hop = data["extra"]["pair_seed_words"], data["extra"]["pair_hop_words"]
    assert data["extra"]["pair_inversion"] and data["pairs_scanned"] > 2 and len(hop) >= 1 and not set(hop) & set(seeds)
    assert all(set(c["word"].split()) & set(seeds + hop) for c in data["pairs"])  # each holds a word searched from
    votes = dict(data["extra"]["pair_words"])
    assert sum(votes.values()) == 2 * len(data["pairs"])
    assert list(votes.values()) == sorted(votes.values(), reverse=True)


@pytest.mark.parametrize("wrapped", [False, True], ids=["plain", "peft"])
def test_slot_gradients_after_a_cached_prefix_match_a_full_forward_pass(tiny, wrapped):
    import torch

    from fingerprint.audit.inversion import SlotGradients
    from fingerprint.audit.scan import _split_prompt
    from fingerprint.core.chat import ChatFormatter
    from fingerprint.core.sure import sure_token_ids
    from fingerprint.embedding.training import _causal_lm, _project

    model, tokenizer = tiny
    lm = _causal_lm(_with_random_lora(model) if wrapped else model)
    head, tail = _split_prompt(ChatFormatter(tokenizer), probe_prompts(1, seed=1)[0])

    def encode(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    sure, before, after = sure_token_ids(tokenizer), encode(" river"), encode(" stone")
    slots = torch.tensor([encode(f" {w}")[:2] for w in ("apple tree", "table top", "cloud nine")])
    got = SlotGradients(lm, encode(head), encode(tail), sure)(before, slots, after)
    expected = torch.zeros_like(got)
    at = len(encode(head)) + len(before)
    for row in slots.tolist():
        ids = torch.tensor([encode(head) + before + row + after + encode(tail)])
        inputs = lm.get_input_embeddings()(ids).detach().requires_grad_(True)
        hidden = lm.base_model(inputs_embeds=inputs).last_hidden_state[0, -1]
        log_p = torch.logsumexp(torch.log_softmax(_project(lm, hidden), dim=-1)[sure], dim=-1)
        (grad,) = torch.autograd.grad(log_p, inputs)
        expected += grad[0, at:at + 2] / len(slots)
    assert got.shape == (2, expected.shape[1]) and expected.abs().max() > 0
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-3)
