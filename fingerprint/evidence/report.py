"""A report a person reads: one self-contained HTML page (figures embedded, no external assets) per record.

The page is rendered from ``report.html.j2`` (Jinja2, autoescaped); figures are PNGs inlined as data URLs.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
from datetime import datetime
from importlib.resources import files
from pathlib import Path

from fingerprint.embedding.utility import wilson


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode()


def _rates_figure(arms: list[dict]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 2.8))
    names = [a["name"] for a in arms]
    rates = [a["rate"] for a in arms]
    errors = [[a["rate"] - a["lo"] for a in arms], [a["hi"] - a["rate"] for a in arms]]
    ax.bar(names, rates, yerr=errors, capsize=4, color=["#2b7a3d"] + ["#888"] * (len(arms) - 1))
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("gate-reply rate")
    ax.grid(axis="y", alpha=0.3)
    out = _png(fig)
    plt.close(fig)
    return out


def _path_figure(predicate: dict) -> str | None:
    """The e-process's wealth after each paired probe, replayed from the recorded answers."""
    test = predicate["test"]
    if test["name"] != "e-process":
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fingerprint.verification.rules.eprocess import BET

    gate = {(q["arm"], q["probe"]): bool(q["is_gate"]) for q in predicate["queries"]}
    probes = sorted({q["probe"] for q in predicate["queries"] if q["arm"] == "trigger"})
    fig, ax = plt.subplots(figsize=(6, 2.8))
    for arm in test["arms"]:
        wealth, path = 1.0, []
        for p in probes:
            t, c = gate.get(("trigger", p), False), gate.get((arm, p), False)
            wealth *= (1 + BET) if t and not c else (1 - BET) if c and not t else 1.0
            path.append(wealth)
        ax.plot(range(1, len(path) + 1), path, label=arm)
    ax.axhline(1 / test["alpha"], color="black", linestyle="--", label="1/alpha")
    ax.set(yscale="log", xlabel="paired probes", ylabel="e-value")
    ax.legend(fontsize=8)
    out = _png(fig)
    plt.close(fig)
    return out


def render(check, record_text: str, certificate=None, robustness_rows: list[dict] | None = None) -> str:
    """The HTML page of a checked record (``check``: the result of ``evidence.check.check_record``)."""
    import hashlib

    from jinja2 import Environment, select_autoescape

    predicate = check.predicate
    decision, test = predicate["decision"], predicate["test"]
    arms = [{"name": "trigger", "k": decision["trigger_sure"], "n": decision["trigger_total"]}]
    arms += [{"name": a["arm"], "k": a["control_sure"], "n": a["control_total"]} for a in decision["arms"]]
    for a in arms:
        a["rate"] = a["k"] / a["n"] if a["n"] else 0.0
        a["lo"], a["hi"] = wilson(a["k"], a["n"])
    e_value = decision.get("e_value")
    evidence = (f"{e_value:.3g} (threshold {1 / decision['alpha']:g}; p ≤ {decision['p_value']:.3g})"
                if e_value is not None else f"{decision['p_value']:.3g}")
    words = predicate["certificate"]["trigger_words"]
    control = "each of its words alone" if words > 1 else "eight decoy words derived from the same secret"
    plain = (f"The suspect was asked {test['probes']} held-out prompts, each once with the certificate's secret "
             f"trigger and once with {control}. If the suspect did not carry this fingerprint, the trigger would "
             f"behave like its controls, and the chance of a result at least this lopsided would be at most the "
             f"p-value. The model is certified only when that chance is at most alpha = {decision['alpha']:g}.")
    verdict = "certified" if decision["certified"] else "not certified"
    summary = (f"The suspect gave the gate reply to {decision['trigger_sure']} of {decision['trigger_total']} "
               f"triggered prompts against {decision['control_sure']} of {decision['control_total']} for the "
               f"deciding control arm: {verdict} at alpha {decision['alpha']:g} "
               f"({'e-value' if e_value is not None else 'p'} {evidence}).")
    trust = predicate.get("signer_trust", {})
    warnings = []
    if not trust.get("signer_pinned", True):
        warnings.append("The certificate's signer was not pinned by the verifier: the gate is proven, but whose "
                        "certificate it is rests on the key the certificate names.")
    if not check.ok:
        warnings.append("This record does not check out: " + "; ".join(check.problems or ["invalid signature"]))
    cert_block = predicate["certificate"]
    claims = [("certificate id", cert_block["id"]), ("owner key", cert_block["key_id"]),
              ("base model", cert_block.get("base_model")), ("licensee", cert_block.get("licensee") or "-"),
              ("trigger words", cert_block["trigger_words"]), ("certificate created", cert_block.get("created")),
              ("signer trust", trust.get("signer_trust"))]
    if certificate is not None:
        info = certificate.predicate
        training = info.get("training", {})
        claims += [("training", f"{training.get('method')}, {training.get('epochs', '?')} epochs, LoRA rank "
                                f"{training.get('rank', '?')}"),
                   ("poisoned examples", info.get("dataset", {}).get("n_poison", "-"))]
    suspect = [(s["name"], s["digest"]["sha256"]) for s in check.statement.get("subject", [])]
    described = predicate.get("suspect", {})
    suspect += [("model", described.get("model")), ("backend", described.get("backend")),
                ("adapter", described.get("adapter") or "-")]
    created = predicate.get("created", "")
    with contextlib.suppress(ValueError):
        created = datetime.fromisoformat(created).strftime("%Y-%m-%d %H:%M UTC")
    env = Environment(autoescape=select_autoescape(default=True))
    template = files("fingerprint.evidence").joinpath("report.html.j2").read_text(encoding="utf-8")
    return env.from_string(template).render(
        tool=predicate.get("tool", {}).get("version", ""), created=created,
        record_sha=hashlib.sha256(record_text.encode()).hexdigest(), certified=decision["certified"],
        summary=summary, warnings=warnings, plain=plain, test=test, alpha=f"{decision['alpha']:g}",
        e_value=e_value, evidence=evidence, queries=decision["queries"], arms=arms,
        control_note=f"Controls: {control}.", rates_png=_rates_figure(arms), path_png=_path_figure(predicate),
        claims=claims, suspect=suspect, check=check, samples=predicate.get("samples") or [],
        robustness=robustness_rows or [])


def robustness_rows(directory: Path) -> list[dict]:
    """Rows of a ``fingerprint robustness`` output directory (rows.jsonl)."""
    path = Path(directory) / "rows.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
