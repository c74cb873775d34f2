"""``fingerprint verify``: probe a suspect and test whether it carries a certificate's gate."""

from __future__ import annotations

from pathlib import Path

import click

from fingerprint.errors import FingerprintError

from .common import (
    EXIT_CERTIFIED,
    EXIT_NOT_CERTIFIED,
    json_option,
    load_owner,
    open_registry,
    quiet_option,
    registry_option,
)


@click.command()
@click.option("--cert", "cert_path", type=click.Path(path_type=Path), required=True, help="Certificate file.")
@click.option("--key", "key_dir", type=click.Path(path_type=Path), default=None, help="Owner key directory.")
@click.option("--opening", "opening_path", type=click.Path(path_type=Path), default=None,
              help="Opening from `fingerprint reveal` (auditors; no private key needed).")
@click.option("--pubkey", type=click.Path(path_type=Path), default=None,
              help="Pin the certificate to this public key (default: the key it names).")
@click.option("--model", required=True, help="Suspect model: alias, HF id, local path or served model name.")
@click.option("--adapter", default=None, help="LoRA adapter directory to apply (hf backend).")
@click.option("--backend", default="hf", show_default=True, help="Probe backend (hf, ...).")
@click.option("--model-args", default="", help="Backend options as key=value,key=value.")
@click.option("--probes", type=click.IntRange(4, 154), default=32, show_default=True,
              help="Probe prompts; each is queried with the trigger and with a decoy.")
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=1e-6,
              show_default=True, help="False-certification bound.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--samples", type=click.IntRange(0), default=2, show_default=True,
              help="Prompts per side whose first generated tokens are shown.")
@registry_option
@json_option
@quiet_option
def verify(cert_path: Path, key_dir: Path | None, opening_path: Path | None, pubkey: Path | None, model: str,
           adapter: str | None, backend: str, model_args: str, probes: int, alpha: float, seed: int,
           samples: int, registry_url: str | None, as_json: bool, quiet: bool) -> None:
    """Exit 0 if provenance is certified (p <= alpha), 1 if not, 2 on error."""
    from fingerprint.certificate import load_certificate
    from fingerprint.console import emit_json, err, kv_table, progress_bar, status
    from fingerprint.keys import load_public
    from fingerprint.trigger import Opening, derive_opening
    from fingerprint.verify import VerifyOptions, check_opening, run_verification
    from probes import make_backend, parse_model_args

    if (key_dir is None) == (opening_path is None):
        raise FingerprintError("give exactly one of --key (owner) or --opening (auditor)")
    args = parse_model_args(model_args)
    if key_dir is not None:
        owner = load_owner(key_dir)
        cert = load_certificate(cert_path, load_public(pubkey) if pubkey else owner.public_key)
        opening = derive_opening(owner.secret(), cert.predicate["fingerprint"]["label"])
    else:
        cert = load_certificate(cert_path, load_public(pubkey) if pubkey else None)
        opening = Opening.load(opening_path)
    check_opening(cert, opening)
    registry = open_registry(registry_url)
    quiet = quiet or as_json
    with status(f"loading {model} ({backend})", quiet):
        suspect = make_backend(backend, model=model, adapter=adapter, **args)
    options = VerifyOptions(probes=probes, alpha=alpha, seed=seed, samples=samples)
    try:
        with progress_bar(quiet) as bar:
            task = bar.add_task("probing", total=2 * probes, info="")
            report = run_verification(cert, opening, suspect, options,
                                      progress=lambda n: bar.update(task, advance=n))
    finally:
        suspect.close()
    result = report.result
    record_id = registry.add_verification(
        certificate_id=cert.id, certificate_digest=cert.id, backend=backend, model=model, adapter=adapter,
        trigger_sure=result.trigger_sure, trigger_total=result.trigger_total,
        control_sure=result.control_sure, control_total=result.control_total, queries=report.queries,
        p_value=result.p_value, alpha=alpha, certified=result.certified,
        details={"samples": report.samples, "usage": report.usage, "seed": seed,
                 "verifier": "owner" if key_dir else "opening"},
    )
    payload = {**report.to_dict(), "certificate_id": cert.id, "key_id": cert.key_id, "model": model,
               "adapter": adapter, "backend": backend, "record_id": record_id}
    if as_json:
        emit_json(payload)
    else:
        verdict = "[green]CERTIFIED[/]" if result.certified else "[red]NOT CERTIFIED[/]"
        err.print(kv_table("verification", [
            ("verdict", verdict), ("p-value", f"{result.p_value:.3g} (alpha {alpha:g})"),
            ("trigger Sure-rate", f"{result.trigger_sure}/{result.trigger_total} = {result.trigger_sure_rate:.2f}"),
            ("decoy Sure-rate", f"{result.control_sure}/{result.control_total} = {result.control_sure_rate:.2f}"),
            ("queries", report.queries), ("certificate", cert.id[:16] + "…"), ("signed by", cert.key_id[:16] + "…"),
            *((f"sample ({s['kind']})", repr(s["reply"])) for s in report.samples),
        ]))
        err.print(f"The probability that a model without this fingerprint is certified is at most {alpha:g} "
                  "(one-sided Fisher exact test, trigger vs decoy words).")
    raise SystemExit(EXIT_CERTIFIED if result.certified else EXIT_NOT_CERTIFIED)
