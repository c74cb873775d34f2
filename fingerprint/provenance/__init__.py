"""Provenance: who signed a certificate and how far that signer is trusted."""
