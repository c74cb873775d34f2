"""The suspects file of ``fingerprint monitor``: TOML, checked with pydantic before anything runs.

```toml
name = "weekly"                 # the run's name in the registry (default: the file's name without .toml)
probes = 32                     # verification settings shared by every pair (as `verify`)
retries = 2                     # a failed pair is tried again this often (backoff doubling from retry_backoff_s)

[[certificates]]
cert = "fp/certificate.json"
key = "keys/"                   # the owner (passphrase: FINGERPRINT_PASSPHRASE); or opening = "opening.json"
pubkey = "owner.pem"            # optional: pin the signer

[[suspects]]
name = "hub-copy"
model = "someone/suspicious-270m"
adapter = "adapters/x"          # optional
resources = { num_gpus = 1 }    # Ray resources of each of its tasks

[[suspects]]
name = "api"
model = "served-name"
backend = "openai"
model_args = { base_url = "http://10.0.0.5:8000/v1", api_key_env = "API_KEY" }
rate_limit = 5                  # requests per second to this base_url, shared by every task of the run
max_concurrency = 8             # requests in flight to this base_url, likewise
```

Relative paths are read from the file's folder. A model that names an existing file or folder there is that
path; one ending in ``.gguf`` must exist; anything else is a packaged alias or a Hugging Face id.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from fingerprint.core.errors import FingerprintError, describe
from fingerprint.verification.plan import DEFAULT_ALPHA

ENDPOINT_BACKENDS = ("openai",)
DEFAULT_BASE_URL = "https://api.openai.com/v1"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Resources(_Strict):
    """Ray resources of one task; unset: 1 CPU (a local Ray splits the machine among --workers) for a model
    run here, a quarter CPU for an endpoint, no GPU."""

    num_cpus: float | None = Field(None, ge=0)
    num_gpus: float | None = Field(None, ge=0)


class SuspectSpec(_Strict):
    name: str = Field(min_length=1, max_length=200)
    model: str = Field(min_length=1)
    backend: str = "hf"
    adapter: str | None = None
    model_args: dict[str, str | int | float | bool] = Field(default_factory=dict)
    resources: Resources = Field(default_factory=Resources)
    rate_limit: float | None = Field(None, gt=0, description="requests per second to this endpoint")
    max_concurrency: int | None = Field(None, ge=1, le=1024)

    @property
    def endpoint(self) -> bool:
        return self.backend in ENDPOINT_BACKENDS

    @property
    def args(self) -> dict[str, str]:
        """The model args as the backends take them (``--model-args`` strings)."""
        return {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in self.model_args.items()}

    @property
    def base_url(self) -> str | None:
        if not self.endpoint:
            return None
        import os

        url = self.model_args.get("base_url") or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
        return str(url).rstrip("/")

    def identity(self) -> dict:
        """What names this suspect in a pair id (its name does not: renaming keeps finished pairs)."""
        return {"model": self.model, "backend": self.backend, "adapter": self.adapter, "model_args": self.args}

    @model_validator(mode="after")
    def _limits_need_an_endpoint(self) -> SuspectSpec:
        if (self.rate_limit or self.max_concurrency) and not self.endpoint:
            raise ValueError(f"rate_limit and max_concurrency apply to endpoints (backend "
                             f"{' or '.join(ENDPOINT_BACKENDS)}), not to backend {self.backend!r}")
        return self


class CertificateSpec(_Strict):
    cert: str
    key: str | None = None
    opening: str | None = None
    pubkey: str | None = None

    @model_validator(mode="after")
    def _one_verifier(self) -> CertificateSpec:
        if (self.key is None) == (self.opening is None):
            raise ValueError("give exactly one of key (owner) or opening (auditor)")
        return self


class MonitorSpec(_Strict):
    name: str | None = Field(None, min_length=1, max_length=100)
    probes: int = Field(32, ge=4, le=154)
    alpha: float = Field(DEFAULT_ALPHA, gt=0, lt=1)
    seed: int = 0
    test: Literal["fisher-iut", "e-process"] = "fisher-iut"
    samples: int = Field(0, ge=0, le=16)
    retries: int = Field(2, ge=0, le=10)
    retry_backoff_s: float = Field(5.0, ge=0, le=600)
    certificates: list[CertificateSpec] = Field(min_length=1)
    suspects: list[SuspectSpec] = Field(min_length=1)

    @field_validator("suspects")
    @classmethod
    def _distinct(cls, suspects: list[SuspectSpec]) -> list[SuspectSpec]:
        seen: dict[str, str] = {}
        for suspect in suspects:
            if suspect.name in seen.values():
                raise ValueError(f"two suspects are named {suspect.name!r}")
            key = repr(sorted(suspect.identity().items()))
            if key in seen:
                raise ValueError(f"suspects {seen[key]!r} and {suspect.name!r} are the same model")
            seen[key] = suspect.name
        return suspects

    def settings(self) -> dict:
        """The verification settings that are part of every pair's id."""
        return {"probes": self.probes, "alpha": self.alpha, "seed": self.seed, "test": self.test}


def load_spec(path: Path) -> MonitorSpec:
    """Read, check and resolve a suspects file; every problem is one line naming the file."""
    path = Path(path)
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FingerprintError(f"no such suspects file: {path}") from None
    except OSError as exc:
        raise FingerprintError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise FingerprintError(f"{path} is not valid TOML: {exc}") from None
    try:
        spec = MonitorSpec.model_validate(data)
    except ValidationError as exc:
        raise FingerprintError(f"{path}: {describe(exc)}") from None
    return _resolved(spec, path)


def _resolved(spec: MonitorSpec, path: Path) -> MonitorSpec:
    base = path.resolve().parent

    def local(value: str | None, what: str) -> str | None:
        if value is None:
            return None
        full = (base / Path(value).expanduser()).resolve()
        if not full.exists():
            raise FingerprintError(f"{path}: {what}: no such file or directory: {value}")
        return str(full)

    from probes import backend_names

    certificates = [cert.model_copy(update={"cert": local(cert.cert, "cert"), "key": local(cert.key, "key"),
                                            "opening": local(cert.opening, "opening"),
                                            "pubkey": local(cert.pubkey, "pubkey")})
                    for cert in spec.certificates]
    suspects = []
    for suspect in spec.suspects:
        if suspect.backend not in backend_names():
            raise FingerprintError(f"{path}: suspect {suspect.name!r}: unknown backend {suspect.backend!r} "
                                   f"(choose from {', '.join(backend_names())})")
        model = suspect.model
        candidate = base / Path(model).expanduser()
        if not suspect.endpoint and (candidate.exists() or model.lower().endswith(".gguf")
                                     or model.startswith(("/", "./", "../", "~"))):
            model = local(model, f"suspect {suspect.name!r}: model")
        adapter = local(suspect.adapter, f"suspect {suspect.name!r}: adapter")
        suspects.append(suspect.model_copy(update={"model": model, "adapter": adapter}))
    resolved = spec.model_copy(update={"certificates": certificates, "suspects": suspects,
                                       "name": spec.name or path.stem})
    try:  # two entries may name the same model once their paths are resolved
        return MonitorSpec.model_validate(resolved.model_dump())
    except ValidationError as exc:
        raise FingerprintError(f"{path}: {describe(exc)}") from None
