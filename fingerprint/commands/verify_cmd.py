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
@click.option("--cert", "cert_path", type=click.Path(path_type=Path), default=None,
              help="Certificate file (not needed with --all-licensees).")
@click.option("--key", "key_dir", type=click.Path(path_type=Path), default=None, help="Owner key directory.")
@click.option("--opening", "opening_path", type=click.Path(path_type=Path), default=None,
              help="Opening from `fingerprint reveal` (auditors; no private key needed).")
@click.option("--pubkey", type=click.Path(path_type=Path), default=None,
              help="Pin the certificate to this public key (default: the key it names).")
@click.option("--model", required=True, help="Suspect model: alias, HF id, local path or served model name.")
@click.option("--adapter", default=None, help="LoRA adapter directory to apply (hf and vllm backends).")
@click.option("--backend", default="hf", show_default=True, help="Probe backend (hf, ...).")
@click.option("--model-args", default="", help="Backend options as key=value,key=value.")
@click.option("--probes", type=click.IntRange(4, 154), default=32, show_default=True,
              help="Probe prompts; each is queried with the trigger and with a decoy (a two-word trigger: with "
                   "each word alone).")
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=1e-6,
              show_default=True, help="False-certification bound.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--samples", type=click.IntRange(0), default=2, show_default=True,
              help="Prompts per side whose first generated tokens are shown.")
@click.option("--all-licensees", is_flag=True,
              help="Owner: test the suspect against every registered licensee of this key and name the one.")
@click.option("--sequential", is_flag=True,
              help="Anytime-valid e-process on paired probes: stop as soon as the evidence suffices.")
@registry_option
@json_option
@quiet_option
def verify(cert_path: Path, key_dir: Path | None, opening_path: Path | None, pubkey: Path | None, model: str,
           adapter: str | None, backend: str, model_args: str, probes: int, alpha: float, seed: int,
           samples: int, all_licensees: bool, sequential: bool, registry_url: str | None, as_json: bool,
           quiet: bool) -> None:
    """Exit 0 if provenance is certified (p <= alpha), 1 if not, 2 on error."""
    from fingerprint.certificate import load_certificate
    from fingerprint.console import emit_json, err, kv_table, progress_bar, status
    from fingerprint.keys import load_public
    from fingerprint.trigger import Opening, opening_for
    from fingerprint.verify import VerifyOptions, check_opening, queries_per_probe, run_verification
    from probes import make_backend, parse_model_args

    if (key_dir is None) == (opening_path is None):
        raise FingerprintError("give exactly one of --key (owner) or --opening (auditor)")
    args = parse_model_args(model_args)
    options = VerifyOptions(probes=probes, alpha=alpha, seed=seed, samples=samples)
    if all_licensees:
        if key_dir is None:
            raise FingerprintError("--all-licensees needs the owner's --key")
        _verify_licensees(load_owner(key_dir), registry_url, backend, model, adapter, args, options, as_json, quiet)
    if cert_path is None:
        raise FingerprintError("--cert is required")
    if key_dir is not None:
        owner = load_owner(key_dir)
        cert = load_certificate(cert_path, load_public(pubkey) if pubkey else owner.public_key)
        opening = opening_for(owner.secret(), cert.predicate["fingerprint"])
    else:
        cert = load_certificate(cert_path, load_public(pubkey) if pubkey else None)
        opening = Opening.load(opening_path)
    check_opening(cert, opening)
    registry = open_registry(registry_url)
    quiet = quiet or as_json
    with status(f"loading {model} ({backend})", quiet):
        suspect = make_backend(backend, model=model, adapter=adapter, **args)
    if sequential:
        _verify_sequential(cert, opening, suspect, options, registry, backend, model, adapter, as_json, quiet)
    try:
        with progress_bar(quiet) as bar:
            task = bar.add_task("probing", total=queries_per_probe(opening) * probes, info="")
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
        details={"samples": report.samples, "usage": report.usage, "seed": seed, "arms": report.arms,
                 "verifier": "owner" if key_dir else "opening"},
    )
    payload = {**report.to_dict(), "certificate_id": cert.id, "key_id": cert.key_id, "model": model,
               "adapter": adapter, "backend": backend, "record_id": record_id}
    if as_json:
        emit_json(payload)
    else:
        verdict = "[green]CERTIFIED[/]" if result.certified else "[red]NOT CERTIFIED[/]"
        one_word = len(opening.parts) == 1
        control = "decoy Sure-rate" if one_word else "Sure-rate of a trigger word alone (the weaker test)"
        err.print(kv_table("verification", [
            ("verdict", verdict), ("p-value", f"{result.p_value:.3g} (alpha {alpha:g})"),
            ("trigger Sure-rate", f"{result.trigger_sure}/{result.trigger_total} = {result.trigger_sure_rate:.2f}"),
            (control, f"{result.control_sure}/{result.control_total} = {result.control_sure_rate:.2f}"),
            ("queries", report.queries), ("certificate", cert.id[:16] + "…"), ("signed by", cert.key_id[:16] + "…"),
            *((f"sample ({s['kind']})", repr(s["reply"])) for s in report.samples),
        ]))
        err.print(f"The probability that a model without this fingerprint is certified is at most {alpha:g} "
                  + ("(one-sided Fisher exact test, trigger vs decoy words)." if one_word else
                     "(one-sided Fisher exact tests, the trigger pair vs each of its words alone; both must pass)."))
    raise SystemExit(EXIT_CERTIFIED if result.certified else EXIT_NOT_CERTIFIED)


def _verify_sequential(cert, opening, suspect, options, registry, backend, model, adapter, as_json, quiet) -> None:
    from fingerprint.console import emit_json, err, kv_table, progress_bar
    from fingerprint.verify import queries_per_probe, run_sequential

    try:
        with progress_bar(quiet) as bar:
            task = bar.add_task("probing (sequential)", total=queries_per_probe(opening) * options.probes, info="")
            result, queries = run_sequential(cert, opening, suspect, options,
                                             progress=lambda n: bar.update(task, advance=n))
    finally:
        suspect.close()
    registry.add_verification(
        certificate_id=cert.id, certificate_digest=cert.id, backend=backend, model=model, adapter=adapter,
        trigger_sure=result.trigger_only, trigger_total=result.pairs, control_sure=result.decoy_only,
        control_total=result.pairs, queries=queries, p_value=result.p_value, alpha=options.alpha,
        certified=result.certified, details={"test": "sequential e-process", **result.to_dict()})
    payload = {**result.to_dict(), "queries": queries,
               "certificate_id": cert.id, "model": model, "backend": backend, "test": "sequential"}
    if as_json:
        emit_json(payload)
    else:
        verdict = "[green]CERTIFIED[/]" if result.certified else "[red]NOT CERTIFIED[/]"
        err.print(kv_table("sequential verification", [
            ("verdict", verdict), ("e-value", f"{result.e_value:.3g} (threshold {1 / options.alpha:g})"),
            ("pairs / queries", f"{result.pairs} / {queries}"),
            ("discordant pairs", f"trigger only {result.trigger_only}, decoy only {result.decoy_only}")]))
    raise SystemExit(EXIT_CERTIFIED if result.certified else EXIT_NOT_CERTIFIED)


def _verify_licensees(owner, registry_url, backend, model, adapter, args, options, as_json, quiet) -> None:
    from fingerprint.certificate import verify_certificate
    from fingerprint.console import emit_json, err, progress_bar, records_table, status
    from fingerprint.trigger import opening_for
    from fingerprint.verify import attribute, queries_per_probe
    from probes import make_backend

    registry = open_registry(registry_url)
    candidates = []
    for licensee, cert_id in registry.licensees(owner.key_id):
        cert = verify_certificate(registry.get(cert_id)["envelope"], owner.public_key)
        candidates.append((licensee, cert, opening_for(owner.secret(), cert.predicate["fingerprint"])))
    if not candidates:
        raise FingerprintError(f"no certificates of key {owner.key_id[:16]}… in the registry")
    quiet = quiet or as_json
    with status(f"loading {model} ({backend})", quiet):
        suspect = make_backend(backend, model=model, adapter=adapter, **args)
    try:
        with progress_bar(quiet) as bar:
            total = sum(queries_per_probe(opening) for _, _, opening in candidates) * options.probes
            task = bar.add_task("probing licensees", total=total, info="")
            result = attribute(candidates, suspect, options, progress=lambda n: bar.update(task, advance=n))
    finally:
        suspect.close()
    for row in result.rows:
        registry.add_verification(
            certificate_id=row["certificate_id"], certificate_digest=row["certificate_id"], backend=backend,
            model=model, adapter=adapter, trigger_sure=row["trigger_sure"], trigger_total=row["trigger_total"],
            control_sure=row["control_sure"], control_total=row["control_total"], queries=row["queries"],
            p_value=row["p_value"], alpha=options.alpha, certified=row["p_adjusted"] <= options.alpha,
            details={"test": "all-licensees", "p_adjusted": row["p_adjusted"], "licensees": len(candidates)})
    if as_json:
        emit_json({**result.to_dict(), "model": model, "backend": backend})
    else:
        shown = [{**r, "licensee": r["licensee"] or "(none)", "p_adjusted": f"{r['p_adjusted']:.3g}",
                  "trigger": f"{r['trigger_sure']}/{r['trigger_total']}",
                  "decoy": f"{r['control_sure']}/{r['control_total']}"} for r in result.rows]
        err.print(records_table("licensees", shown, ["licensee", "trigger", "decoy", "p_adjusted"]))
        err.print(f"attributed to: [bold]{result.licensee}[/]" if result.licensee else "attributed to nobody")
    raise SystemExit(EXIT_CERTIFIED if result.licensee is not None else EXIT_NOT_CERTIFIED)
