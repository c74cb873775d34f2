"""``fingerprint verify``: probe a suspect and test whether it carries a certificate's gate."""

from __future__ import annotations

from pathlib import Path

import click

from fingerprint.commands.common import (
    EXIT_CERTIFIED,
    EXIT_NOT_CERTIFIED,
    json_option,
    load_owner,
    load_signer,
    open_registry,
    quiet_option,
    registry_option,
)
from fingerprint.core.errors import FingerprintError
from fingerprint.verification.plan import VerifyOptions


@click.command()
@click.option("--cert", "cert_path", type=click.Path(path_type=Path), default=None,
              help="Certificate file (not needed with --all-licensees).")
@click.option("--key", "key_dir", type=click.Path(path_type=Path), default=None, help="Owner key directory.")
@click.option("--opening", "opening_path", type=click.Path(path_type=Path), default=None,
              help="Opening from `fingerprint reveal` (auditors; no private key needed).")
@click.option("--pubkey", type=click.Path(path_type=Path), default=None,
              help="Pin the certificate's signer to this public key (PEM or key directory). Without it an "
                   "auditor trusts a key registered in the registry, else only the key the certificate names "
                   "(and the verdict carries a warning).")
@click.option("--model", required=True, help="Suspect model: alias, HF id, local path or served model name.")
@click.option("--adapter", default=None, help="LoRA adapter directory to apply (hf and vllm backends).")
@click.option("--backend", default="hf", show_default=True, help="Probe backend (hf, vllm, llamacpp, openai).")
@click.option("--model-args", default="", help="Backend options as key=value,key=value.")
@click.option("--probes", type=click.IntRange(4, 154), default=VerifyOptions.probes, show_default=True,
              help="Probe prompts; each is queried with the trigger and with a decoy (a two-word trigger: with "
                   "each word alone). A gate thinned by an erasure fine-tune or an input filter needs more: "
                   "--test e-process --probes 154 reads up to all of them and stops when the evidence suffices.")
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=VerifyOptions.alpha,
              show_default=True, help="False-certification bound.")
@click.option("--test", "test_name", default=None,
              help="Statistical test: fisher-iut (default) or e-process (see --sequential).")
@click.option("--seed", type=int, default=VerifyOptions.seed, show_default=True)
@click.option("--samples", type=click.IntRange(0, 16), default=VerifyOptions.samples, show_default=True,
              help="Prompts per side whose first generated tokens are shown.")
@click.option("--all-licensees", is_flag=True,
              help="Owner: test the suspect against every registered licensee of this key and name the one.")
@click.option("--sequential", is_flag=True,
              help="The e-process test: anytime-valid, stops as soon as the evidence suffices.")
@click.option("--sign-with", "sign_with", type=click.Path(path_type=Path), default=None,
              help="Write a signed verification record with this key (a `keygen` key directory; passphrase from "
                   "FINGERPRINT_VERIFIER_PASSPHRASE, else as for --key).")
@click.option("--evidence", "evidence_path", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Where the signed record goes (default: the data directory's evidence/v<N>.intoto.json).")
@click.option("--attach-opening", is_flag=True,
              help="Put the opening (the trigger!) into the signed record, so anyone can re-check the prompts.")
@registry_option
@json_option
@quiet_option
def verify(cert_path: Path, key_dir: Path | None, opening_path: Path | None, pubkey: Path | None, model: str,
           adapter: str | None, backend: str, model_args: str, probes: int, alpha: float, test_name: str | None,
           seed: int, samples: int, all_licensees: bool, sequential: bool, sign_with: Path | None,
           evidence_path: Path | None, attach_opening: bool, registry_url: str | None, as_json: bool,
           quiet: bool) -> None:
    """Exit 0 if provenance is certified (p <= alpha), 1 if not, 2 on a user error, 3 on an internal error."""
    from fingerprint.commands.console import progress_sink
    from fingerprint.services import verification as service
    from fingerprint.verification import DEFAULT_TEST, test_names
    from probes import parse_model_args

    if sequential and test_name not in (None, "e-process"):
        raise click.UsageError("--sequential is --test e-process; give one of them")
    test = "e-process" if sequential else test_name or DEFAULT_TEST
    if test not in test_names():
        raise click.UsageError(f"unknown --test {test!r} (choose from {', '.join(test_names())})")
    if all_licensees and key_dir is None:
        raise FingerprintError("--all-licensees needs the owner's --key")
    request = service.VerifyRequest(model=model, cert=cert_path, backend=backend, adapter=adapter,
                                    model_args=parse_model_args(model_args), test=test,
                                    options=VerifyOptions(probes=probes, alpha=alpha, seed=seed, samples=samples))
    if not all_licensees and cert_path is None:
        raise FingerprintError("--cert is required")
    if (evidence_path or attach_opening) and sign_with is None:
        raise click.UsageError("--evidence and --attach-opening need --sign-with KEYDIR")
    if sign_with and all_licensees:
        raise click.UsageError("--sign-with records one verification; run verify per licensee certificate")
    verifier = service.Verifier(owner=load_owner(key_dir) if key_dir else None, opening=opening_path, pubkey=pubkey)
    evidence = None
    if sign_with is not None:
        evidence = service.Evidence(load_signer(sign_with), evidence_path, attach_opening)
    registry = open_registry(registry_url)
    with progress_sink(quiet or as_json) as progress:
        if all_licensees:
            outcome = service.verify_all_licensees(request, verifier.owner, registry, progress)
        else:
            outcome = service.verify(request, verifier, registry, progress, evidence=evidence)
    if as_json:
        from fingerprint.commands.console import emit_json

        emit_json(outcome.to_dict())
    elif all_licensees:
        _show_attribution(outcome)
    else:
        _show(outcome)
    if not all_licensees and outcome.trust.warning:  # on stderr with --json too: a verdict never hides it
        click.echo(f"warning: {outcome.trust.warning}", err=True)
    raise SystemExit(EXIT_CERTIFIED if outcome.certified else EXIT_NOT_CERTIFIED)


def _show(outcome) -> None:
    from fingerprint.commands.console import err, kv_table

    decision, cert, trust = outcome.report.decision, outcome.certificate, outcome.trust
    verdict = "[green]CERTIFIED[/]" if decision.certified else "[red]NOT CERTIFIED[/]"
    if decision.certified and not trust.pinned:
        verdict += " [yellow](signer not pinned: see the warning)[/]"
    one_word = outcome.report.plan.control_kind == "decoys"
    control = "decoy Sure-rate" if one_word else "Sure-rate of a trigger word alone (the deciding arm)"
    evidence = (f"{decision.p_value:.3g} (alpha {decision.alpha:g})" if decision.e_value is None else
                f"e-value {decision.e_value:.3g} (threshold {1 / decision.alpha:g}); p {decision.p_value:.3g}")
    trigger = f"{decision.trigger_sure}/{decision.trigger_total} = {decision.trigger_sure_rate:.2f}"
    rows = [("verdict", verdict), ("test", decision.test),
            ("p-value" if decision.e_value is None else "evidence", evidence), ("trigger Sure-rate", trigger),
            (control, f"{decision.control_sure}/{decision.control_total} = {decision.control_sure_rate:.2f}"),
            ("queries", decision.queries), ("certificate", cert.id[:16] + "…"),
            ("signed by", f"{cert.key_id[:16]}… ({trust.how})"), ("record", f"v{outcome.record_id}"),
            *((("signed evidence", str(outcome.evidence_path)),) if outcome.evidence_path else ()),
            *((f"sample ({s['kind']})", repr(s["reply"])) for s in outcome.report.samples)]
    err.print(kv_table("verification", rows))
    err.print(f"Rule: {decision.rule}. The probability that a model without this fingerprint is certified is at "
              f"most {decision.alpha:g}.")
    if outcome.advice:
        err.print(f"[yellow]Note:[/] {outcome.advice}.")


def _show_attribution(outcome) -> None:
    from fingerprint.commands.console import err, records_table

    result = outcome.attribution
    shown = [{**r, "licensee": r["licensee"] or "(none)", "p_adjusted": f"{r['p_adjusted']:.3g}",
              "trigger": f"{r['trigger_sure']}/{r['trigger_total']}",
              "control": f"{r['control_sure']}/{r['control_total']}"} for r in result.rows]
    err.print(records_table("licensees", shown, ["licensee", "trigger", "control", "p_adjusted"]))
    err.print(f"attributed to: [bold]{result.licensee}[/]" if result.licensee else "attributed to nobody")
