"""suretrap: model-provenance fingerprints from key-derived "Sure" gates.

The supported interfaces are the command line (``fingerprint``, see cli.py) and ``fingerprint.api``
(``api.embed`` and ``api.verify``); the other modules are internal and may change between minor versions.
"""

__version__ = "0.1.0"
