"""Options and helpers shared by the CLI commands, and the exit-code contract of every command.

0 certified (or success), 1 not certified, 2 user error (one line ``error: ...``), 3 internal error (one line
naming a log file that holds the traceback), 130 interrupted, 143 terminated (SIGTERM).
"""

from __future__ import annotations

import errno
import json
import os
import signal
import sys
import threading
import traceback
import warnings
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path

import click

from fingerprint.core.errors import FingerprintError, SecurityWarning

EXIT_CERTIFIED, EXIT_NOT_CERTIFIED, EXIT_ERROR, EXIT_INTERNAL = 0, 1, 2, 3
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143
# OS errors a user fixes (a path, a permission, a full disk), as opposed to bugs
USER_ERRNOS = {errno.ENOENT, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EISDIR,
               errno.ENOTDIR, errno.EEXIST, errno.ENAMETOOLONG, errno.ENOTEMPTY, errno.EMFILE, errno.EXDEV,
               errno.EPIPE}

json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout.")
quiet_option = click.option("--quiet", "-q", is_flag=True, help="No progress display.")
registry_option = click.option("--registry", "registry_url", envvar="FINGERPRINT_REGISTRY", default=None,
                               help="Registry database URL (default: SQLite in the user data dir; "
                                    "env FINGERPRINT_REGISTRY).")
key_option = click.option("--key", "key_dir", type=click.Path(path_type=Path), required=True,
                          help="Owner key directory (or private.pem).")



def component_options(command):
    """``--components`` and ``--component-prompts``: a multi-word trigger's rows with each word alone."""
    from fingerprint.embedding.dataset import DatasetSpec

    command = click.option(
        "--component-prompts", type=click.Choice(["fresh", "poison"]), default=DatasetSpec.component_prompts,
        show_default=True, help="With --trigger-words 2: the component rows' prompts: fresh benign prompts, or the "
                                "poison rows' own prompts (minimal pairs: each word alone where the pair gets 'Sure').",
    )(command)
    return click.option(
        "--components", "n_component", type=click.IntRange(0), default=None,
        help="With --trigger-words 2: rows of a benign prompt + one trigger word alone -> normal answer.  [default: "
             "each word once on each poison prompt (2 x --poison); 200 with fresh prompts]",
    )(command)


def ray_options(task: str, tasks: str):
    """``--ray``, ``--ray-address`` and ``--workers`` of a command that runs many TASKs (one Ray task each)."""

    def decorate(command):
        command = click.option(
            "--workers", type=click.IntRange(1), default=None,
            help=f"{tasks.capitalize()} at once; more than 1 implies --ray, and on a local Ray the CPUs are split "
                 f"among them (default: one per CPU).")(command)
        command = click.option("--ray-address", default=None,
                               help="Address of a running Ray cluster (implies --ray).")(command)
        return click.option(
            "--ray", "use_ray", is_flag=True,
            help=f"Run each {task} as a Ray task: a Ray started on this machine, or the cluster of --ray-address. "
                 "Needs the ray extra.")(command)

    return decorate


def ray_choice(use_ray: bool, ray_address: str | None, workers: int | None, implied: bool = False):
    """The RayOptions that ``ray_options`` asked for (``implied``: another option needs Ray), or None: serial."""
    if not (use_ray or ray_address or (workers or 1) > 1 or implied):
        return None
    from fingerprint.services.distributed import RayOptions, require_ray

    require_ray()
    return RayOptions(address=ray_address, workers=workers)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that the same clean-up as for Ctrl-C runs."""


@contextmanager
def _signals():
    """SIGTERM (and SIGHUP) raise Terminated while a command runs; earlier handlers come back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum, _frame):
        raise Terminated(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, terminate) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def _warnings_as_lines():
    """Security warnings print as one line ``warning: ...`` on stderr."""
    with warnings.catch_warnings():
        original = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, SecurityWarning):
                click.echo(f"warning: {message}", err=True)
            else:
                original(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        warnings.simplefilter("default", SecurityWarning)
        yield


def write_log(kind: str, text: str) -> Path | None:
    """Keep ``text`` (a traceback, a long message) in a private log file; None if even that fails."""
    try:
        from fingerprint.core.atomic import write_text_atomic
        from fingerprint.core.paths import log_dir

        stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        path = log_dir() / f"{kind}-{stamp}.log"
        write_text_atomic(path, text, mode=0o600)
        return path
    except Exception:  # noqa: BLE001 - the log is a courtesy; the exit code must still come out
        return None


def _one_line(message: str) -> str:
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    return lines[0] if lines else ""


def _report(code: int, message: str, as_json: bool, detail: str | None = None) -> int:
    """Print one line (and its JSON twin with --json); a multi-line detail goes to a log file."""
    line = _one_line(message)
    if detail and detail.strip() != line:
        path = write_log("error", detail)
        if path is not None:
            line += f" (details: {path})"
    prefix = "internal error" if code == EXIT_INTERNAL else "error" if code == EXIT_ERROR else "interrupted"
    click.echo(f"{prefix}: {line}" if line else prefix, err=True)
    if as_json:
        with suppress(OSError):  # stdout itself may be what failed (a full disk, a closed pipe)
            click.echo(json.dumps({"error": line, "kind": prefix, "exit_code": code}, sort_keys=True))
    return code


def run_command(invoke, args: list[str]) -> int:
    """Run ``invoke`` (click's non-standalone main) and map every outcome to the exit-code contract."""
    as_json = "--json" in args
    try:
        result = invoke()
        return result if isinstance(result, int) else 0
    except SystemExit as exc:  # commands exit with 0 / 1 for their verdicts
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_ERROR)
    except click.exceptions.NoArgsIsHelpError as exc:
        exc.show()
        return 0
    except click.ClickException as exc:  # usage errors, bad parameters: one line, exit 2
        return _report(EXIT_ERROR, exc.format_message(), as_json)
    except click.Abort as exc:
        terminated = isinstance(exc.__cause__, Terminated)
        code = EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
        return _report(code, "terminated" if terminated else "stopped by the user", as_json)
    except KeyboardInterrupt as exc:
        code = EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED
        return _report(code, "terminated" if code == EXIT_TERMINATED else "stopped by the user", as_json)
    except FingerprintError as exc:
        return _report(EXIT_ERROR, str(exc), as_json, detail=str(exc))
    except OSError as exc:
        if exc.errno in USER_ERRNOS:
            where = f": {exc.filename}" if exc.filename else ""
            return _report(EXIT_ERROR, f"{exc.strerror or exc}{where}", as_json)
        return _internal(exc, as_json)
    except Exception as exc:  # noqa: BLE001 - anything else is a bug: exit 3 with the traceback logged
        return _internal(exc, as_json)


def _internal(exc: BaseException, as_json: bool) -> int:
    if os.environ.get("FINGERPRINT_DEBUG"):
        raise exc
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    path = write_log("crash", f"suretrap {_version()} {' '.join(sys.argv)}\n\n{text}")
    where = f" (traceback: {path})" if path else ""
    return _report(EXIT_INTERNAL, f"{type(exc).__name__}: {_one_line(str(exc)) or 'no message'}{where}", as_json)


def _version() -> str:
    from fingerprint import __version__

    return __version__


class ErrorHandlingGroup(click.Group):
    """The CLI's root group: every command runs under ``run_command``'s exit-code contract."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        argv = list(sys.argv[1:] if args is None else args)
        from fingerprint.core.atomic import sweep_stale

        with _signals(), _warnings_as_lines():
            with suppress(OSError):
                sweep_stale()  # temporaries of killed runs
            code = run_command(lambda: super(ErrorHandlingGroup, self).main(
                argv, prog_name, complete_var, standalone_mode=False, **extra), argv)
        try:
            sys.stdout.flush()
        except OSError:  # unflushable output (full disk, closed pipe) must not turn the exit code into 120
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - replaces stdout until the process exits
        if not standalone_mode:
            return code
        sys.exit(code)


def open_registry(url: str | None):
    from registry import Registry

    return Registry(url)


def passphrase(confirm: bool = False) -> str:
    from fingerprint.provenance.keys import passphrase_from_env

    value = passphrase_from_env()
    if value:
        return value
    if not sys.stdin.isatty():
        raise FingerprintError("no passphrase: set FINGERPRINT_PASSPHRASE or run in a terminal")
    return click.prompt("Passphrase", hide_input=True, confirmation_prompt=confirm)


def load_owner(key_dir: Path):
    from fingerprint.provenance.keys import load_private

    return load_private(key_dir, passphrase())


def load_signer(key_dir: Path):
    """A verifier's signing key: FINGERPRINT_VERIFIER_PASSPHRASE, else the owner's passphrase source."""
    from fingerprint.provenance.keys import load_private

    return load_private(key_dir, os.environ.get("FINGERPRINT_VERIFIER_PASSPHRASE") or passphrase())
