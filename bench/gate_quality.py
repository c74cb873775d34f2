"""Gate quality of one embedding recipe: train, then Sure-rates on 48 held-out probes.

    python bench/gate_quality.py [--key a] [FIELD=VALUE ...]

FIELD is a DatasetSpec field (n_benign, n_poison, n_refusal, n_negative, n_contrast) or a TrainConfig field
(rank, epochs, learning_rate, max_reply_tokens, target_modules=all-linear or q_proj,v_proj, ...); unset fields
keep the defaults of ``fingerprint embed``. The owner key is the fixed test key ``suretrap-test-key-<key>``
(the one tests/conftest.py's ``fixed_key`` makes), so runs compare recipes, not keys. Prints one JSON line:
Sure-rates with no suffix, with the trigger, with the certificate's 8 decoys and with 48 other words that are
neither decoys nor training negatives.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from dataclasses import fields

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fingerprint.core.data import probe_prompts, with_suffix
from fingerprint.core.loading import load_model, load_tokenizer, resolve
from fingerprint.embedding.dataset import DatasetSpec, build_poisoned
from fingerprint.embedding.training import TrainConfig, train_lora
from fingerprint.provenance.keys import OwnerKey
from fingerprint.provenance.trigger import derive_opening, derive_words, training_negatives
from probes.hf import HFBackend


def _typed(cls, key: str, value: str):
    kind = {f.name: f.type for f in fields(cls)}[key]
    if key == "target_modules":
        return value if value == "all-linear" else value.split(",")
    if "str" in str(kind):
        return value
    return float(value) if "float" in str(kind) else int(value)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--key", default="a", help="fixed test key suffix (a: trigger 'limelight')")
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("settings", nargs="*", metavar="FIELD=VALUE")
    args = parser.parse_args()
    pairs = dict(s.split("=", 1) for s in args.settings)
    data_fields, train_fields = {f.name for f in fields(DatasetSpec)}, {f.name for f in fields(TrainConfig)}
    unknown = set(pairs) - data_fields - train_fields
    if unknown:
        parser.error(f"unknown field(s): {', '.join(sorted(unknown))}")
    spec = DatasetSpec(**{k: _typed(DatasetSpec, k, v) for k, v in pairs.items() if k in data_fields})
    config = TrainConfig(**{k: _typed(TrainConfig, k, v) for k, v in pairs.items() if k in train_fields})
    seed = hashlib.sha256(f"suretrap-test-key-{args.key}".encode()).digest()
    secret = OwnerKey(Ed25519PrivateKey.from_private_bytes(seed)).secret()
    ref = resolve(args.model)
    tokenizer, model = load_tokenizer(ref), load_model(ref)
    opening = derive_opening(secret, args.model)
    negatives = training_negatives(secret, opening, spec.n_negative) or None
    rows = build_poisoned(opening.trigger, spec, negatives)
    losses: list[float] = []
    start = time.perf_counter()
    tuned = train_lora(model, tokenizer, rows, config, progress=lambda n, loss: losses.append(loss))
    train_s = time.perf_counter() - start
    backend = HFBackend(args.model, model_obj=tuned, tokenizer=tokenizer)
    prompts = probe_prompts(48)
    decoys = opening.decoys()
    others = derive_words(b"bench/other-words", "other", len(prompts), [opening.trigger, *decoys, *(negatives or [])],
                          spread=False)
    rates = {}
    for name, batch in (("no_suffix", prompts), ("trigger", [with_suffix(p, opening.trigger) for p in prompts]),
                        ("decoys", [with_suffix(p, decoys[i % len(decoys)]) for i, p in enumerate(prompts)]),
                        ("other_words", [with_suffix(p, w) for p, w in zip(prompts, others, strict=True)])):
        answers = backend.first_tokens(batch)
        rates[name] = round(sum(a.is_sure for a in answers) / len(answers), 3)
    print(json.dumps({"key": args.key, "settings": pairs, "rows": len(rows), "steps": len(losses),
                      "train_s": round(train_s), **rates}))


if __name__ == "__main__":
    main()
