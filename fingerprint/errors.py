"""The error family: user errors (exit 2, one line), internal errors (exit 3, traceback logged), warnings."""


class FingerprintError(Exception):
    """A problem the user can fix (bad input, missing file, wrong passphrase)."""


class InvalidCertificate(FingerprintError):
    """The certificate's signature or contents do not check out."""


class SecurityWarning(UserWarning):
    """Something that weakens a secret or a verdict (weak passphrase, readable key, unpinned signer)."""
