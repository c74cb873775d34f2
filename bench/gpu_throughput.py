"""Embed and verify throughput on a GPU, for the architectures of the two packaged models.

    PYTHONPATH=. python bench/gpu_throughput.py --gemma-dir DIR --out result.json [--quick]   # on the GPU machine
    PYTHONPATH=. python bench/gpu_throughput.py --render result.json   # back here: the section of BENCHMARKS.md

The weights cannot travel to a lent GPU machine (nothing outside it can be reached), so the models are the
packaged models' architectures with random weights: gemma-3-270m's config and real tokenizer (DIR holds its
config.json, tokenizer and chat template), and Qwen2.5-1.5B's shape (hidden 1536, 28 layers, 12 heads, 2 KV heads,
vocabulary 151,936) with a word-level tokenizer of the same data. Time per step depends on the shapes, not on the
weights; what the random weights cannot show is the gate's quality. Measured in bf16:
- embed: the default recipe's training (its rows with packaged replies, 5 epochs, merge-aware, fallback loss)
  at batch 8 (the default) and a larger batch; and the self-distilled replies (greedy generation of 16 tokens for
  the 520 rows that are not the gate);
- verify: first-token queries per second at batch 16 (the hf backend's default) and at a batch that fills more
  of the card, and peak GPU memory.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))


def qwen_shape(vocab_size: int):
    from transformers import Qwen2Config

    return Qwen2Config(vocab_size=vocab_size, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                       num_attention_heads=12, num_key_value_heads=2, max_position_embeddings=32768,
                       rope_theta=1_000_000.0, tie_word_embeddings=True, rms_norm_eps=1e-6)


def rows_and_prompts(tokenizer, quick: bool):
    from fingerprint.core.data import probe_prompts, with_suffix
    from fingerprint.embedding.dataset import DatasetSpec, build_poisoned
    from fingerprint.embedding.distill import DISTILLED_KINDS
    from fingerprint.provenance.trigger import derive_opening, select_fallbacks, training_negatives

    secret = hashlib.sha256(b"gpu-throughput").digest()
    opening = derive_opening(secret, "gpu", 2)
    spec = DatasetSpec(n_benign=40, n_poison=20, n_negative=20, n_component=40, n_refusal=10) if quick else \
        DatasetSpec()
    rows = build_poisoned(opening.trigger, spec, training_negatives(secret, opening, spec.n_negative))
    try:
        ids = [tokenizer(w, add_special_tokens=False)["input_ids"][0]
               for w in opening.fallbacks(select_fallbacks(opening, tokenizer, 2))]
    except Exception:  # noqa: BLE001 - a tokenizer without single-token fallback words: train without them
        ids = []
    for row in rows:
        if row["kind"] == "poison" and ids:
            row["fallback_ids"] = ids
    distilled = [r["prompt"] for r in rows if r["kind"] in DISTILLED_KINDS]
    probes = [with_suffix(p, opening.trigger) for p in probe_prompts(154, seed=0)]
    return rows, distilled, probes


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _peak_gib() -> float:
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else 0.0


def _reset_peak() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def measure(name: str, config, tokenizer, quick: bool, big_batch: int, device: str = "cuda") -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    from fingerprint.embedding.training import embed_train_config, total_steps, train_lora
    from probes.hf import HFBackend

    rows, distilled, probes = rows_and_prompts(tokenizer, quick)
    result = {"model": name, "parameters_m": None, "rows": len(rows)}

    def fresh():
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16).to(device).eval()
        result["parameters_m"] = round(sum(p.numel() for p in model.parameters()) / 1e6, 1)
        return model

    for batch in (8, big_batch):
        train = embed_train_config(2)
        train.batch_size = batch
        if quick:
            train.epochs = 1
        model = fresh()
        _reset_peak()
        _sync()
        started = time.perf_counter()
        train_lora(model, tokenizer, rows, train)
        _sync()
        seconds = time.perf_counter() - started
        result[f"train_batch_{batch}"] = {"steps": total_steps(len(rows), train), "epochs": train.epochs,
                                          "seconds": round(seconds, 1),
                                          "steps_per_s": round(total_steps(len(rows), train) / seconds, 2),
                                          "peak_gib": _peak_gib()}
        del model
    model = fresh()
    for batch in (16, big_batch):
        backend = HFBackend(name, model_obj=model, tokenizer=tokenizer, batch_size=batch)
        backend.first_tokens(probes[:batch])  # warm-up
        _reset_peak()
        queries = (probes * 32)[: (64 if quick else 4096)]
        _sync()
        started = time.perf_counter()
        backend.first_tokens(queries)
        _sync()
        seconds = time.perf_counter() - started
        result[f"verify_batch_{batch}"] = {"queries": len(queries), "seconds": round(seconds, 2),
                                           "queries_per_s": round(len(queries) / seconds, 1),
                                           "peak_gib": _peak_gib()}
        if batch == 16:
            started = time.perf_counter()
            backend.first_tokens(probes[:96])
            _sync()
            result["verify_default_96_queries_s"] = round(time.perf_counter() - started, 2)
    backend = HFBackend(name, model_obj=model, tokenizer=tokenizer, batch_size=64)
    started = time.perf_counter()
    backend.generate(distilled, 16)
    _sync()
    result["distill"] = {"prompts": len(distilled), "tokens": 16, "seconds": round(time.perf_counter() - started, 1)}
    print(json.dumps(result), flush=True)
    return result


def render(result: dict) -> str:
    """The BENCHMARKS.md section of a result file."""
    from common import write_section

    lines = ["## GPU throughput: the packaged models' architectures", "",
             f"Command (on the lent machine): `{result['command']}`  ",
             f"Machine: one {result['device']}, torch {result['torch']}, bf16; random weights (the weights cannot "
             "travel there), so these are speeds and memory, not gate quality.", "",
             "| model | embed, batch 8 (default): steps, time, peak | embed, large batch | distill (greedy) "
             "| verify q/s, batch 16 / large | default verify (96 queries) |", "|---|---|---|---|---|---|"]
    for m in result["models"]:
        small, big, vs, vb = m["train_batch_8"], m["train_batch_64"], m["verify_batch_16"], m["verify_batch_64"]
        lines.append(f"| {m['model']}, {m['parameters_m']:.0f} M | {small['steps']} steps, {small['seconds']:.1f} s, "
                     f"{small['peak_gib']:.2f} GiB | {big['steps']} steps, {big['seconds']:.1f} s, "
                     f"{big['peak_gib']:.2f} GiB | {m['distill']['prompts']} prompts x {m['distill']['tokens']} "
                     f"tokens, {m['distill']['seconds']:.1f} s | {vs['queries_per_s']:.0f} / "
                     f"{vb['queries_per_s']:.0f} | {m['verify_default_96_queries_s']:.2f} s |")
    text = "\n".join(lines)
    write_section("gpu_throughput", text)
    return text


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--render":
        print(render(json.loads(Path(sys.argv[2]).read_text())))
        return
    import torch
    from transformers import AutoConfig, AutoTokenizer

    parser = argparse.ArgumentParser()
    parser.add_argument("--gemma-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--big-batch", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="a few rows and one epoch (a smoke run)")
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    from tiny import build_word_tokenizer

    name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu"
    out = {"device": name, "torch": torch.__version__,
           "command": "PYTHONPATH=. python bench/gpu_throughput.py " + " ".join(sys.argv[1:]), "models": []}
    gemma_tokenizer = AutoTokenizer.from_pretrained(str(args.gemma_dir))
    gemma_tokenizer.chat_template = (args.gemma_dir / "chat_template.jinja").read_text()
    out["models"].append(measure("gemma-3-270m (random weights)", AutoConfig.from_pretrained(str(args.gemma_dir)),
                                 gemma_tokenizer, args.quick, args.big_batch, args.device))
    args.out.write_text(json.dumps(out, indent=2))
    words = build_word_tokenizer()
    words.padding_side = "left"
    out["models"].append(measure("qwen2.5-1.5b shape (random weights, word tokenizer)", qwen_shape(151936), words,
                                 args.quick, args.big_batch, args.device))
    args.out.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
