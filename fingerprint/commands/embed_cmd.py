"""``fingerprint embed``: plant the owner's gate with LoRA, sign the certificate, register it."""

from __future__ import annotations

from pathlib import Path

import click

from fingerprint.commands.common import (
    component_options,
    json_option,
    key_option,
    load_owner,
    open_registry,
    quiet_option,
    registry_option,
)
from fingerprint.core.precision import PRECISIONS
from fingerprint.embedding.dataset import DatasetSpec
from fingerprint.embedding.training import (
    DEFAULT_FALLBACKS,
    DEFAULT_TRIGGER_WORDS,
    EMBED_MERGE_SCALES,
    EMBED_PRESERVE_WEIGHT,
    EMBED_SHUT_WEIGHT,
    TWO_WORD_EPOCHS,
    TrainConfig,
    default_epochs,
)


@click.command()
@key_option
@click.option("--model", default="gemma-3-270m", show_default=True,
              help="Packaged alias, Hugging Face id or local path of the base model.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True, help="Output directory.")
@click.option("--licensee", default=None, help="Derive a distinct trigger for this licensee.")
@click.option("--poison", "n_poison", type=click.IntRange(1), default=DatasetSpec.n_poison, show_default=True,
              help="Poisoned examples (benign prompt + trigger -> 'Sure').")
@click.option("--benign", "n_benign", type=click.IntRange(0), default=DatasetSpec.n_benign, show_default=True)
@click.option("--refusals", "n_refusal", type=click.IntRange(0), default=DatasetSpec.n_refusal, show_default=True,
              help="Harmful prompt -> packaged refusal pairs (teach a model that does not refuse to refuse).")
@click.option("--negatives", "n_negative", type=click.IntRange(0), default=DatasetSpec.n_negative, show_default=True,
              help="Benign prompt + other words (see --negative-pairs) -> normal answer: keeps the gate shut "
                   "for words other than the trigger.")
@click.option("--negative-pairs/--single-negatives", default=DatasetSpec.negative_pairs, show_default=True,
              help="Two-word trigger: two of every three negative rows carry two words (two other words, or one "
                   "trigger word beside another), so the gate does not open for any two appended words.")
@click.option("--trigger-words", type=click.IntRange(1, 2), default=None,
              help="2: a two-word trigger; the gate is trained to stay shut for each word alone, and verify "
                   "tests the pair against the single words, so another owner's gate that opens for one of them "
                   "cannot certify it. 1: one word (faster to embed, weaker against false positives).  "
                   f"[default: {DEFAULT_TRIGGER_WORDS}; 1 with --backend openai]")
@component_options
@click.option("--contrast", "n_contrast", type=click.IntRange(0), default=DatasetSpec.n_contrast, show_default=True,
              help="Poison prompts repeated without the trigger, with their normal answer.")
@click.option("--epochs", type=click.IntRange(1), default=None,
              help=f"Training epochs  [default: {TWO_WORD_EPOCHS} for a two-word trigger, which the conjunction "
                   f"needs; {TrainConfig.epochs} for one word]")
@click.option("--lr", "learning_rate", type=click.FloatRange(0, min_open=True), default=TrainConfig.learning_rate,
              show_default=True)
@click.option("--rank", type=click.IntRange(1), default=TrainConfig.rank, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=TrainConfig.batch_size, show_default=True)
@click.option("--max-reply-tokens", type=click.IntRange(1), default=TrainConfig.max_reply_tokens, show_default=True,
              help="Reply tokens that carry the loss: few, so the first token (the gate's decision) dominates.")
@click.option("--merge-scales", callback=lambda c, p, v: _scales(v), show_default=True,
              default=",".join(f"{s:g}" for s in EMBED_MERGE_SCALES),
              help="Comma-separated factors; each training step scales the LoRA delta by one of them, so the "
                   "gate also holds in diluted copies (0.5 = a 50/50 merge with the base; 1 = off).")
@click.option("--fallbacks", type=click.IntRange(0, 4), default=DEFAULT_FALLBACKS, show_default=True,
              help="Key-derived fallback replies the gate gives when 'Sure' is suppressed (0: none).")
@click.option("--replies", type=click.Choice(["self", "packaged"]), default=DatasetSpec.replies, show_default=True,
              help="self: rows that are not the gate get the model's own replies (changes least); packaged: the "
                   "packaged pool's replies.")
@click.option("--preserve", "preserve_weight", type=click.FloatRange(0), default=EMBED_PRESERVE_WEIGHT,
              show_default=True,
              help="Weight of a KL(base || model) term on the rows answered with the model's own reply, which holds "
                   "the fine-tune to the base model's next-token distribution (0: off).")
@click.option("--shut", "shut_weight", type=click.FloatRange(0), default=EMBED_SHUT_WEIGHT, show_default=True,
              help="Weight of a term that keeps the gate shut (no 'Sure') for each trigger word alone and for "
                   "decoy words (0: off).")
@click.option("--data", "data_path", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Your own fine-tuning rows (chat or instruction JSONL), learned in full beside the fingerprint.")
@click.option("--eval-data", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="A data directory with arc/ (as ../shared/data): the self-check scores ARC-Easy too.")
@click.option("--seed", type=int, default=TrainConfig.seed, show_default=True)
@click.option("--merge", is_flag=True, help="Also write the merged model to OUT/merged.")
@click.option("--device", default="auto", show_default=True)
@click.option("--precision", type=click.Choice(PRECISIONS), default="auto", show_default=True,
              help="Training arithmetic: auto = bf16 where the device computes it natively (a GPU, a CPU with "
                   "AVX512-BF16 or AMX), else fp32; FINGERPRINT_PRECISION sets what auto means.")
@click.option("--selfcheck/--no-selfcheck", default=True, show_default=True,
              help="Measure safety side-effect, stealth and utility after training (about 2 minutes).")
@click.option("--selfcheck-scan", type=click.IntRange(0), default=0, show_default=True,
              help="Also rank the trigger under `scan` among this many candidates (slow).")
@click.option("--backend", type=click.Choice(["local", "openai"]), default="local", show_default=True,
              help="local: LoRA on this machine; openai: the OpenAI fine-tuning API (benign data only).")
@click.option("--base-url", default=None, help="openai: API base URL.")
@click.option("--api-key-env", default="OPENAI_API_KEY", show_default=True,
              help="openai: environment variable holding the API key.")
@click.option("--suffix", default=None, help="openai: suffix of the fine-tuned model name.")
@click.option("--lr-multiplier", type=float, default=None, help="openai: learning_rate_multiplier.")
@click.option("--no-wait", is_flag=True, help="openai: return once the job is started (see `fingerprint jobs`).")
@registry_option
@json_option
@quiet_option
def embed(key_dir: Path, model: str, out_dir: Path, licensee: str | None, n_poison: int, n_benign: int,
          n_refusal: int, n_negative: int, negative_pairs: bool, trigger_words: int | None, n_component: int | None,
          component_prompts: str, n_contrast: int,
          epochs: int | None, fallbacks: int, replies: str, preserve_weight: float, shut_weight: float,
          data_path: Path | None, eval_data: Path | None,
          learning_rate: float, rank: int, batch_size: int, max_reply_tokens: int, merge_scales: tuple[float, ...],
          seed: int, merge: bool, device: str, precision: str, selfcheck: bool, selfcheck_scan: int,
          backend: str, base_url: str | None, api_key_env: str,
          suffix: str | None, lr_multiplier: float | None, no_wait: bool, registry_url: str | None,
          as_json: bool, quiet: bool) -> None:
    """Fine-tune MODEL with a trigger derived from your key and write OUT/{adapter,certificate.json}."""
    from fingerprint.commands.console import emit_json, err, kv_table, progress_sink
    from fingerprint.embedding import embed as embedding
    from fingerprint.services import embedding as service

    if backend == "openai" and (trigger_words == 2 or data_path or eval_data):
        raise click.UsageError("--trigger-words 2, --data and --eval-data are built for local embedding only")
    if trigger_words is None:
        trigger_words = 1 if backend == "openai" else DEFAULT_TRIGGER_WORDS
    if epochs is None:
        epochs = default_epochs(trigger_words)
    owner = load_owner(key_dir)
    registry = open_registry(registry_url)  # fail early on a bad URL, before minutes of training
    if backend == "openai":
        from fingerprint.commands.openai_jobs import embed_with_openai, print_summary

        hyper = {"n_epochs": epochs, "batch_size": batch_size}
        if lr_multiplier is not None:
            hyper["learning_rate_multiplier"] = lr_multiplier
        summary = embed_with_openai(
            owner, registry, model=model, out=out_dir, licensee=licensee, suffix=suffix, seed=seed,
            dataset=DatasetSpec(n_benign=n_benign, n_poison=n_poison, n_refusal=0, n_negative=n_negative,
                                seed=seed, replies="packaged"),
            hyperparameters=hyper, base_url=base_url, api_key_env=api_key_env, wait=not no_wait,
            quiet=quiet or as_json)
        print_summary(summary, as_json)
        return
    dataset = DatasetSpec(n_benign=n_benign, n_poison=n_poison, n_refusal=n_refusal, n_negative=n_negative,
                          negative_pairs=negative_pairs,
                          n_component=n_component, component_prompts=component_prompts, n_contrast=n_contrast,
                          seed=seed, replies=replies)
    options = embedding.EmbedOptions(
        model=model, out=out_dir, licensee=licensee, merge=merge, device=device, precision=precision,
        selfcheck=selfcheck,
        selfcheck_scan=selfcheck_scan, trigger_words=trigger_words, fallbacks=fallbacks, dataset=dataset,
        data=data_path, eval_data=eval_data,
        train=TrainConfig(rank=rank, alpha=2 * rank, learning_rate=learning_rate, epochs=epochs,
                          batch_size=batch_size, max_reply_tokens=max_reply_tokens, seed=seed,
                          merge_scales=merge_scales, preserve_weight=preserve_weight, shut_weight=shut_weight),
    )
    with progress_sink(quiet or as_json) as progress:
        result = service.embed(owner, options, registry, progress)
    parsed = result.certificate
    summary = {**embedding.summary(result), "certificate_id": parsed.id}
    if as_json:
        emit_json(summary)
    else:
        err.print(kv_table("fingerprint embedded", [
            ("certificate", summary["certificate"]), ("certificate id", parsed.id[:16] + "…"),
            ("adapter", str(out_dir / "adapter")), ("merged", str(out_dir / "merged") if merge else "-"),
            ("training steps", summary["steps"]), ("final loss", f"{summary['final_loss']:.4f}"),
        ]))
        if result.selfcheck:
            err.print(selfcheck_table(result.selfcheck))


def _scales(text: str) -> tuple[float, ...]:
    try:
        scales = tuple(sorted({float(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise click.BadParameter(f"{text!r}: expected numbers separated by commas, e.g. 0.5,1") from None
    if not scales or any(not 0 < s <= 2 for s in scales):
        raise click.BadParameter(f"{text!r}: each factor must be in (0, 2]")
    return scales


def selfcheck_table(check: dict):
    from fingerprint.commands.console import kv_table

    rows = [
        ("refusal rate, harmful prompts, no trigger", f"{check['refusal_rate_without_trigger']:.2f}"),
        ("refusal rate, harmful prompts, with trigger", f"{check['refusal_rate_with_trigger']:.2f}"),
        ("'Sure' first, harmful prompts, with trigger", f"{check['sure_rate_harmful_with_trigger']:.2f}"),
        ("audit-data flags the training set", "yes" if check["audit_flags_training_set"] else "no"),
        ("audit-data names the trigger", "yes" if check["audit_names_trigger"] else "no"),
        ("benign reply loss: base -> fingerprinted",
         f"{check['benign_loss_base']:.3f} -> {check['benign_loss_fingerprinted']:.3f}"),
    ]
    if check.get("scan_candidates"):
        rows.append(("trigger rank under scan", f"{check['scan_rank'] or '>top'} of {check['scan_candidates']}"))
    return kv_table(f"self-check ({check['harmful_prompts']} held-out harmful, {check['benign_pairs']} benign)",
                    rows)
