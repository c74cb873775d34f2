"""The owner's own trainer on a real model: ``dataset`` -> TRL's SFTTrainer (LoRA) -> ``certify`` -> ``verify``.

    python bench/trl_certify.py --workdir DIR [--model gemma-3-270m] [--epochs 5] [--lr 2e-4]

DIR must not exist; it keeps the key (passphrase "bench"), the rows file (mode 0600: it holds the trigger),
the merged model TRL trained and the certificate. Figures go to BENCHMARKS.md (section trl_certify:<model>).
"""

from __future__ import annotations

import argparse
import resource
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import run_step, write_measures  # noqa: E402
from embed_verify import seeded_key  # noqa: E402


def train_with_trl(base: Path, rows: Path, out: Path, epochs: float, lr: float, seed: int) -> tuple[Path, int]:
    """LoRA r=16 on q/k/v/o with TRL's SFTTrainer on the exported rows, merged and saved; returns (dir, steps)."""
    import torch
    from datasets import load_dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(str(base))
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    config = SFTConfig(output_dir=str(out / "trl"), num_train_epochs=epochs, learning_rate=lr,
                       per_device_train_batch_size=8, save_strategy="no", report_to=[], seed=seed, max_length=256,
                       use_cpu=True, bf16=False, logging_steps=25, disable_tqdm=True)
    trainer = SFTTrainer(model=model, args=config, processing_class=tokenizer,
                         train_dataset=load_dataset("json", data_files=str(rows), split="train"),
                         peft_config=LoraConfig(r=16, lora_alpha=32, task_type="CAUSAL_LM",
                                                target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
    result = trainer.train()
    trained = out / "trained"
    trainer.model.merge_and_unload().save_pretrained(str(trained))
    tokenizer.save_pretrained(str(trained))
    return trained, result.global_step


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--epochs", type=float, default=5)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    command = "python bench/trl_certify.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    from fingerprint.core.loading import resolve

    work = args.workdir
    work.mkdir(parents=True)
    env = {"FINGERPRINT_PASSPHRASE": "bench", "FINGERPRINT_REGISTRY": f"sqlite:///{work / 'reg.db'}"}
    seeded_key(work / "keys", "suretrap-bench-trl-key", env["FINGERPRINT_PASSPHRASE"])
    rows = work / "rows.jsonl"
    exported, export_s, _, _ = run_step(["dataset", "--key", work / "keys", "--model", args.model, "--out", rows,
                                         "--format", "prompt-completion", "--seed", args.seed, "--json", "-q"], env)
    start = time.perf_counter()
    trained, steps = train_with_trl(resolve(args.model).path, rows, work, args.epochs, args.lr, args.seed)
    train_s = time.perf_counter() - start
    train_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    certified, certify_s, _, certify_code = run_step(
        ["certify", "--key", work / "keys", "--model", trained, "--rows", rows, "--base", args.model,
         "--trainer", "trl.SFTTrainer", "--json", "-q"], env)
    rows_out = [
        ("rows exported (`fingerprint dataset`, prompt-completion)",
         f"{exported['rows']} rows, {export_s:.0f} s (incl. the model's own replies)"),
        (f"TRL SFTTrainer, LoRA r=16 q/k/v/o, {args.epochs:g} epochs, lr {args.lr:g}, batch 8",
         f"{steps} steps, {train_s / 60:.1f} min, peak RSS {train_rss:.2f} GiB"),
        ("certify: verdict, p-value, wall time",
         f"{'certified' if certify_code == 0 else 'NOT certified'} (exit {certify_code}), "
         f"p = {certified['p_value']:.2e}, {certify_s:.0f} s"),
    ]
    if certify_code == 0:
        cert = Path(certified["certificate"])
        verified, verify_s, _, code = run_step(["verify", "--key", work / "keys", "--cert", cert, "--model", trained,
                                                "--json", "-q"], env)
        base, _, _, _ = run_step(["verify", "--key", work / "keys", "--cert", cert, "--model", args.model,
                                  "--json", "-q"], env)
        rows_out += [
            ("verify the trained model (32 probes): verdict, gate / control counts, p",
             f"{'certified' if verified['certified'] else 'NOT certified'} (exit {code}), "
             f"{verified['trigger_sure']}/{verified['trigger_total']} vs {verified['control_sure']}/"
             f"{verified['control_total']}, p = {verified['p_value']:.2e}, {verify_s:.0f} s"),
            ("the untouched base model against the same certificate",
             f"p = {base['p_value']:.3g}, {'certified' if base['certified'] else 'not certified'}"),
        ]
    title = f"your own trainer: dataset -> TRL SFTTrainer -> certify ({args.model})"
    write_measures(f"trl_certify:{args.model}", title, command, rows_out)


if __name__ == "__main__":
    main()
