"""Click commands of the ``fingerprint`` CLI, one module per verb (assembled in the top-level cli.py)."""
