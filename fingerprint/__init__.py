"""suretrap: model-provenance fingerprints from key-derived "Sure" gates.

The command line (`fingerprint`, see cli.py) is the supported interface for now; the modules here are
internal and may change between minor versions.
"""

__version__ = "0.1.0"
