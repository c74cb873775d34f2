"""User-facing errors: the CLI prints their message on one line and exits with code 2."""


class FingerprintError(Exception):
    """A problem the user can fix (bad input, missing file, wrong passphrase)."""


class InvalidCertificate(FingerprintError):
    """The certificate's signature or contents do not check out."""
