"""The certificate's predicate: what an owner signs about a fingerprinted model, as one validated, versioned type.

Two predicate types exist. ``fingerprint/v2`` (written now) states ``trigger_words`` and ``commitment_scheme``
explicitly; ``fingerprint/v1`` (earlier certificates) may leave them out, and then means one word and the v1
commitment. Both read into the same :class:`Predicate`; blocks keep any extra fields (dataset counts,
hyperparameters) as they were signed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from fingerprint.core.errors import InvalidCertificate, describe
from fingerprint.provenance.trigger import FALLBACK_LIMIT

PREDICATE_TYPE_V1 = "https://github.com/suretrap/suretrap/fingerprint/v1"
PREDICATE_TYPE = "https://github.com/suretrap/suretrap/fingerprint/v2"
PREDICATE_TYPES = (PREDICATE_TYPE_V1, PREDICATE_TYPE)

Hex64 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
Text = Annotated[str, StringConstraints(min_length=1, max_length=4096)]


class _Block(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class Digest(_Block):
    sha256: Hex64


class Owner(_Block):
    key_id: Hex64
    public_key: Text


class BaseModelInfo(_Block):
    name: Text


class FingerprintInfo(_Block):
    label: Text
    licensee: str | None = None
    trigger_words: Literal[1, 2] = 1
    trigger_commitment: Hex64
    commitment_scheme: Literal["v1", "v2"] = "v1"
    poison_reply: str = "Sure"
    # the gate's fallback replies (when "Sure" cannot be said): indices among the opening's fallback candidates
    fallback_indices: tuple[Annotated[int, Field(ge=0, lt=FALLBACK_LIMIT)], ...] = Field(default=(), max_length=8)


class DatasetInfo(_Block):
    digest: Digest


class TrainingInfo(_Block):
    method: Text


class ToolInfo(_Block):
    name: Text
    version: Text


class Subject(_Block):
    name: Text
    digest: Digest


class Predicate(_Block):
    owner: Owner
    base_model: BaseModelInfo
    fingerprint: FingerprintInfo
    dataset: DatasetInfo
    training: TrainingInfo
    tool: ToolInfo
    created: datetime

    @classmethod
    def from_dict(cls, data: Any, predicate_type: str = PREDICATE_TYPE) -> Predicate:
        """Validate a signed predicate; InvalidCertificate names the first bad field."""
        if predicate_type not in PREDICATE_TYPES:
            raise InvalidCertificate(f"unknown predicate type {predicate_type!r}")
        if predicate_type == PREDICATE_TYPE and isinstance(data, dict):
            block = data.get("fingerprint")
            missing = [k for k in ("trigger_words", "commitment_scheme")
                       if not isinstance(block, dict) or k not in block]
            if missing:
                raise InvalidCertificate(f"predicate: fingerprint.{missing[0]} is required in a v2 certificate")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise InvalidCertificate(f"predicate: {describe(exc)}") from None

    def to_dict(self) -> dict:
        """The JSON form that is signed (extra fields included)."""
        data = self.model_dump(mode="json")
        data["created"] = self.created.isoformat(timespec="seconds")
        return data


def parse_subjects(data: Any) -> list[Subject]:
    """The statement's subjects: a non-empty list of ``{"name", "digest": {"sha256"}}``."""
    try:
        subjects = [Subject.model_validate(item) for item in data] if isinstance(data, list) else None
    except ValidationError as exc:
        raise InvalidCertificate(f"subject: {describe(exc)}") from None
    if not subjects:
        raise InvalidCertificate("subject: the statement names no subject")
    return subjects


__all__ = ["PREDICATE_TYPE", "PREDICATE_TYPES", "PREDICATE_TYPE_V1", "BaseModelInfo", "DatasetInfo", "Digest",
           "FingerprintInfo", "Owner", "Predicate", "Subject", "ToolInfo", "TrainingInfo", "parse_subjects"]
