"""The error family: user errors (exit 2, one line), internal errors (exit 3, traceback logged), warnings."""


class FingerprintError(Exception):
    """A problem the user can fix (bad input, missing file, wrong passphrase)."""


class InvalidCertificate(FingerprintError):
    """The certificate's signature or contents do not check out."""


class SecurityWarning(UserWarning):
    """Something that weakens a secret or a verdict (weak passphrase, readable key, unpinned signer)."""


def describe(exc) -> str:
    """The first error of a pydantic ``ValidationError`` as one short line: ``field.path: message``."""
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"]) or "value"
    extra = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {error['msg']}{extra}"
