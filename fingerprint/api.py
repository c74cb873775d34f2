"""The small, stable Python API: embed a fingerprint and verify a suspect (what the CLI does, minus I/O).

    from fingerprint import api
    result = api.embed("keys/", "passphrase", model="gemma-3-270m", out="fp/")
    report = api.verify("fp/certificate.json", model="fp/merged", key_dir="keys/", passphrase="...")
    report.result.certified, report.result.p_value

Everything else in the package is internal and may change between minor versions.
"""

from __future__ import annotations

from pathlib import Path


def embed(key_dir: str | Path, passphrase: str, model: str = "gemma-3-270m", out: str | Path = "fp",
          licensee: str | None = None, merge: bool = False, selfcheck: bool = True, trigger_words: int = 2):
    """Plant the owner's gate (a two-word trigger; ``trigger_words=1``: one word) in ``model``; an ``EmbedResult``."""
    from .embed import EmbedOptions
    from .embed import embed as _embed
    from .keys import load_private
    from .training import embed_train_config

    owner = load_private(Path(key_dir), passphrase)
    return _embed(owner, EmbedOptions(model=model, out=Path(out), licensee=licensee, merge=merge,
                                      selfcheck=selfcheck, trigger_words=trigger_words,
                                      train=embed_train_config(trigger_words)))


def verify(cert: str | Path, model: str, key_dir: str | Path | None = None, passphrase: str | None = None,
           opening: str | Path | None = None, backend: str = "hf", adapter: str | None = None,
           probes: int = 32, alpha: float = 1e-6, **model_args):
    """Probe ``model`` for the certificate's gate (owner: key + passphrase; auditor: opening file).

    Returns a ``VerificationReport``; nothing is written to the registry.
    """
    from probes import make_backend

    from .certificate import load_certificate
    from .errors import FingerprintError
    from .keys import load_private
    from .trigger import Opening, opening_for
    from .verify import VerifyOptions, run_verification

    if (key_dir is None) == (opening is None):
        raise FingerprintError("give exactly one of key_dir (owner) or opening (auditor)")
    if key_dir is not None:
        owner = load_private(Path(key_dir), passphrase)
        certificate = load_certificate(Path(cert), owner.public_key)
        trigger = opening_for(owner.secret(), certificate.predicate["fingerprint"])
    else:
        certificate = load_certificate(Path(cert))
        trigger = Opening.load(Path(opening))
    suspect = make_backend(backend, model=model, adapter=adapter, **model_args)
    try:
        return run_verification(certificate, trigger, suspect, VerifyOptions(probes=probes, alpha=alpha))
    finally:
        suspect.close()
