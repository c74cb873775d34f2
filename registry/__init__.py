"""Registry of owners' public keys, fingerprint certificates and verification records."""

from .store import Registry, default_url

__all__ = ["Registry", "default_url"]
