"""The small, stable Python API: embed a fingerprint and verify a suspect, exactly as the CLI does.

    from fingerprint import api
    result = api.embed("keys/", "passphrase", model="gemma-3-270m", out="fp/")
    outcome = api.verify("fp/certificate.json", model="fp/merged", key_dir="keys/", passphrase="...")
    outcome.certified, outcome.report.decision.p_value, outcome.record_id

Both go through the same service layer as ``fingerprint embed`` / ``fingerprint verify`` and write the same
registry records (``registry``: a database URL; default ``$FINGERPRINT_REGISTRY`` or the SQLite file in the
data directory; ``record=False`` writes nothing). Everything else in the package is internal and may change
between minor versions.
"""

from __future__ import annotations

from pathlib import Path


def _registry(url: str | None, record: bool):
    if not record:
        return None
    from registry import Registry

    return Registry(url)


def embed(key_dir: str | Path, passphrase: str, model: str = "gemma-3-270m", out: str | Path = "fp",
          licensee: str | None = None, merge: bool = False, selfcheck: bool = True, trigger_words: int = 2,
          registry: str | None = None, record: bool = True, precision: str = "auto"):
    """Plant the owner's gate (a two-word trigger; ``trigger_words=1``: one word) in ``model``; an ``EmbedResult``.
    ``precision``: ``auto`` (bf16 where the device computes it natively), ``fp32`` or ``bf16``."""
    from fingerprint.embedding.embed import EmbedOptions
    from fingerprint.embedding.training import embed_train_config
    from fingerprint.provenance.keys import load_private
    from fingerprint.services.embedding import embed as embed_service

    owner = load_private(Path(key_dir), passphrase)
    options = EmbedOptions(model=model, out=Path(out), licensee=licensee, merge=merge, selfcheck=selfcheck,
                           trigger_words=trigger_words, train=embed_train_config(trigger_words), precision=precision)
    return embed_service(owner, options, _registry(registry, record))


def verify(cert: str | Path, model: str, key_dir: str | Path | None = None, passphrase: str | None = None,
           opening: str | Path | None = None, pubkey: str | Path | None = None, backend: str = "hf",
           adapter: str | None = None, probes: int = 32, alpha: float = 1e-6, seed: int = 0, samples: int = 2,
           test: str = "fisher-iut", registry: str | None = None, record: bool = True, **model_args):
    """Probe ``model`` for the certificate's gate (owner: key + passphrase; auditor: opening file).

    Returns a ``VerifyOutcome`` (``.certified``, ``.report.decision``, ``.trust``, ``.record_id``).
    """
    from fingerprint.provenance.keys import load_private
    from fingerprint.services.verification import Verifier, VerifyRequest
    from fingerprint.services.verification import verify as verify_service
    from fingerprint.verification import VerifyOptions

    owner = load_private(Path(key_dir), passphrase) if key_dir is not None else None
    verifier = Verifier(owner=owner, opening=Path(opening) if opening else None,
                        pubkey=Path(pubkey) if pubkey else None)
    request = VerifyRequest(model=model, cert=Path(cert), backend=backend, adapter=adapter,
                            model_args={k: str(v) for k, v in model_args.items()}, test=test,
                            options=VerifyOptions(probes=probes, alpha=alpha, seed=seed, samples=samples))
    return verify_service(request, verifier, _registry(registry, record))
