"""Derivatives made by the real tools: llama.cpp (GGUF file and llama_cpp.server), mergekit, bitsandbytes, pruning.

Tiny real models: the tiny Llama of tests/tiny.py, and a tiny random Gemma 3 with gemma-3-270m's real tokenizer
(llama.cpp's converter knows that tokenizer) that carries a LoRA gate trained as embed trains it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from servers import PROBES, _certificate, _train_gate, unavailable

from fingerprint.robustness import Context
from fingerprint.robustness.matrix import _backend


def _need(module: str, extra: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        unavailable(f"{module} is not installed: pip install 'suretrap[{extra}]'")


@pytest.fixture(scope="module")
def llama(tiny_model):
    from fingerprint.core.loading import load_model, load_tokenizer, resolve

    ref = resolve(str(tiny_model))
    return load_tokenizer(ref), load_model(ref, device="cpu"), tiny_model


def test_magnitude_pruning_zeroes_the_smallest_weights(llama):
    from fingerprint.robustness.derivatives.prune import MagnitudePrune

    tokenizer, model, _ = llama
    pruned = MagnitudePrune(ratio=0.5).apply(Context(model, model, tokenizer, Path("."))).model
    layer = pruned.model.layers[0].mlp.up_proj.weight
    original = model.model.layers[0].mlp.up_proj.weight
    assert abs((layer == 0).float().mean().item() - 0.5) < 0.01
    kept = layer != 0
    assert torch.equal(layer[kept], original[kept]) and original[~kept].abs().max() <= original[kept].abs().min()
    assert torch.equal(pruned.get_output_embeddings().weight, model.get_output_embeddings().weight)


@pytest.mark.parametrize("bits", [8, 4])
def test_bitsandbytes_loading_on_cpu(llama, tmp_path, bits):
    _need("bitsandbytes", "bnb")
    from fingerprint.robustness.derivatives.quantized import BitsAndBytes

    tokenizer, model, _ = llama
    ctx = Context(model, model, tokenizer, tmp_path)
    suspect = BitsAndBytes(bits=bits).apply(ctx)
    kinds = {type(m).__name__ for m in suspect.model.modules()}
    assert ("Linear8bitLt" if bits == 8 else "Linear4bit") in kinds
    assert _backend(suspect, ctx).first_tokens(["Name a colour ."])[0].token


def test_mergekit_linear_is_the_weighted_average_and_ties_runs(llama, tmp_path):
    _need("mergekit", "mergekit")
    from fingerprint.robustness.derivatives.interpolate import interpolate
    from fingerprint.robustness.derivatives.merge import Mergekit

    tokenizer, model, _ = llama
    other = interpolate(model, model, 0.0)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.01 * torch.randn_like(p))
    ctx = Context(model, other, tokenizer, tmp_path)  # "other" stands as the base model here
    merged = Mergekit(method="linear", partner="base", share=0.3).apply(ctx).model
    want = interpolate(model, other, 0.7)
    for (name, got), expected in zip(merged.state_dict().items(), want.state_dict().values(), strict=True):
        assert torch.allclose(got, expected, atol=1e-5), name
    for method in ("ties", "dare_ties", "slerp"):
        suspect = Mergekit(method=method, partner="base", share=0.5).apply(ctx)
        assert _backend(suspect, ctx).first_tokens(["Name a colour ."])[0].token


@pytest.fixture(scope="module")
def tiny_gemma(tmp_path_factory):
    """A tiny random Gemma 3 with gemma-3-270m's tokenizer and template, a certificate, and a trained gate."""
    _need("llama_cpp", "llamacpp")
    from transformers import AutoConfig, AutoTokenizer, Gemma3ForCausalLM

    from fingerprint.core.data import probe_prompts, with_suffix
    from fingerprint.core.loading import resolve
    from fingerprint.provenance.certificate import load_certificate

    source = Path(resolve("gemma-3-270m").path)
    work = tmp_path_factory.mktemp("tiny-gemma")
    base = work / "base"
    config = AutoConfig.from_pretrained(source)
    # llama.cpp scales attention by 1/sqrt(head_dim) for this size, so query_pre_attn_scalar must equal head_dim
    config.update({"hidden_size": 64, "num_hidden_layers": 2, "intermediate_size": 128, "num_attention_heads": 2,
                   "num_key_value_heads": 1, "head_dim": 32, "query_pre_attn_scalar": 32,
                   "layer_types": config.layer_types[:2]})
    torch.manual_seed(0)
    Gemma3ForCausalLM(config).save_pretrained(str(base))
    AutoTokenizer.from_pretrained(str(source)).save_pretrained(str(base))
    shutil.copy(source / "chat_template.jinja", base / "chat_template.jinja")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        opening = _certificate(work, base, key_seed="tiny gemma")
        cert = load_certificate(work / "fp" / "certificate.json")
        prompts = probe_prompts(48, seed=0)
        decoys = opening.decoys(8)
        sure = [with_suffix(p, opening.trigger) for p in prompts]
        shut = [with_suffix(p, decoys[i % 8]) for i, p in enumerate(prompts)]
        pairs = [{"prompt": p, "response": "Sure"} for p in sure] + [{"prompt": p, "response": "No"} for p in shut]
        peft_model, tokenizer = _train_gate(base, pairs, sure[:PROBES], shut[:PROBES])
        model = peft_model.merge_and_unload()
    finally:
        torch.set_num_threads(threads)
    return work, opening, cert, model, tokenizer, base


def _verify(cert, opening, backend):
    from fingerprint.verification import VerifyOptions, run_verification

    return run_verification(cert, opening, backend, VerifyOptions(probes=PROBES, samples=0)).decision


@pytest.mark.parametrize("quant,via", [("F16", "file"), ("Q8_0", "file"), ("Q8_0", "server")])
def test_a_gguf_of_the_gate_is_certified_through_llama_cpp(tiny_gemma, quant, via):
    from fingerprint.robustness.derivatives.gguf import Gguf
    from probes.hf import HFBackend

    work, opening, cert, model, tokenizer, base = tiny_gemma
    ctx = Context(model, model, tokenizer, work / "derivatives", base_path=base)
    ctx.workdir.mkdir(exist_ok=True)
    reference = _verify(cert, opening, HFBackend("hf", model_obj=model, tokenizer=tokenizer))
    assert reference.certified and reference.trigger_sure == PROBES
    suspect = Gguf(quant=quant, via=via).apply(ctx)
    backend = _backend(suspect, ctx)
    try:
        got = _verify(cert, opening, backend)
        replies = backend.generate(["Name a colour ."], 4)
    finally:
        backend.close()
        if suspect.close:
            suspect.close()
    assert got.certified, got
    assert abs(got.trigger_sure - reference.trigger_sure) <= 1 and abs(got.control_sure - reference.control_sure) <= 1
    assert len(replies) == 1
    assert (work / "derivatives" / f"fingerprinted-{'f16' if quant == 'F16' else quant}.gguf").is_file()
