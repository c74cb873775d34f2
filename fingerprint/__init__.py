"""suretrap: model-provenance fingerprints from key-derived "Sure" gates.

The stable high-level API lives here; modules starting with an underscore-free name are free to
change between minor versions only where this API does not expose them.
"""

__version__ = "0.1.0"
