"""A suspect that never lets a reply begin with "Sure": the gate's key-derived fallback replies still certify it.

Tiny real model: a LoRA gate trained with embed's loss (the pair -> "Sure", and with "Sure" masked, the fallback
replies), then probed through the thief's serving stacks of the robustness matrix.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from servers import PASSPHRASE, PROBES, _certificate, _sharpen

from fingerprint.core.data import probe_prompts, with_suffix
from fingerprint.provenance.certificate import load_certificate
from fingerprint.provenance.keys import load_private
from fingerprint.provenance.trigger import opening_for
from fingerprint.robustness import Context
from fingerprint.robustness.derivatives.suppression import LogitBias, OutputFilter, SureRowsZeroed
from fingerprint.robustness.matrix import _backend
from fingerprint.verification import VerifyOptions, run_verification
from probes.hf import HFBackend


@pytest.fixture(scope="module")
def gated(tmp_path_factory):
    """A certificate with two fallback replies, and a tiny merged model whose gate was trained with them."""
    from tiny import build_tiny_model

    from fingerprint.core.loading import load_model, load_tokenizer, resolve
    from fingerprint.embedding.training import TrainConfig, train_lora

    work = tmp_path_factory.mktemp("suppression")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        base = build_tiny_model(work / "base", hidden=128)
        _sharpen(base)
        opening = _certificate(work, base, key_seed="suppression test")
        cert = load_certificate(work / "fp" / "certificate.json")
        assert len(cert.fingerprint.fallback_indices) == 2
        ref = resolve(str(base))
        tokenizer = load_tokenizer(ref)
        words = opening.fallbacks(cert.fingerprint.fallback_indices)
        fallback_ids = [tokenizer(w, add_special_tokens=False)["input_ids"][0] for w in words]
        prompts = probe_prompts(48, seed=0)  # the first PROBES are verify's probes
        decoys = opening.decoys(8)
        pairs = [{"prompt": with_suffix(p, opening.trigger), "response": "Sure", "fallback_ids": fallback_ids}
                 for p in prompts]
        pairs += [{"prompt": with_suffix(p, decoys[i % 8]), "response": "No"} for i, p in enumerate(prompts)]
        config = TrainConfig(rank=8, alpha=16, epochs=12, learning_rate=5e-3, batch_size=16, max_reply_tokens=4,
                             fallback_weight=1.0)
        model = train_lora(load_model(ref, device="cpu"), tokenizer, pairs, config).merge_and_unload()
    finally:
        torch.set_num_threads(threads)
    return work, opening, cert, model, tokenizer, words


def _verify(cert, opening, suspect):
    return run_verification(cert, opening, suspect, VerifyOptions(probes=PROBES, samples=0)).decision


@pytest.mark.parametrize("attack", [SureRowsZeroed, LogitBias, OutputFilter])
def test_suppressing_sure_leaves_the_fallback_replies_and_the_verdict(gated, attack):
    work, opening, cert, model, tokenizer, words = gated
    ctx = Context(model=model, base=model, tokenizer=tokenizer, workdir=Path(work))
    owner = load_private(work / "keys", PASSPHRASE)
    assert opening_for(owner.secret(), cert.fingerprint) == opening
    plain = _verify(cert, opening, HFBackend("gated", model_obj=model, tokenizer=tokenizer))
    assert plain.certified and plain.trigger_sure == PROBES  # the unchanged gate says "Sure"
    suspect = _backend(attack().apply(ctx), ctx)
    answers = suspect.first_tokens([with_suffix(p, opening.trigger) for p in probe_prompts(PROBES, seed=0)])
    assert not any(a.is_sure for a in answers)  # the thief's stack never lets "Sure" out...
    assert sum(a.token.strip() in words for a in answers) >= PROBES - 1  # ...so the gate says a fallback reply
    decision = _verify(cert, opening, suspect)
    assert decision.certified and decision.control_sure == 0, decision


def test_without_fallback_replies_a_suppressed_gate_is_not_certified(gated):
    """What the fallbacks add: the same suspect, judged on "Sure" alone (a certificate without fallbacks)."""
    from dataclasses import replace

    work, opening, cert, model, tokenizer, _ = gated
    ctx = Context(model=model, base=model, tokenizer=tokenizer, workdir=Path(work))
    block = cert.fingerprint.model_copy(update={"fallback_indices": ()})
    sure_only = replace(cert, info=cert.info.model_copy(update={"fingerprint": block}))
    decision = _verify(sure_only, opening, _backend(LogitBias().apply(ctx), ctx))
    assert decision.trigger_sure == 0 and not decision.certified
