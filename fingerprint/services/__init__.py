"""The service layer: embedding, verification and records, shared by the CLI, ``fingerprint.api`` and bench/."""
