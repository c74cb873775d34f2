"""Ray for the monitor and the sweep: a local Ray started for the run, or a cluster joined by its address.

Ray is an optional dependency (``pip install 'suretrap[ray]'``), imported only here and only when asked for.
Each unit of work (a monitor pair, a sweep cell) is a Ray task with its resources; the driver submits them,
keeps at most ``workers`` in flight and hands each result over as it finishes. The tasks themselves write
to the registry, which is the one record of what is done; the driver only reads it to skip finished work.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from fingerprint.core.errors import FingerprintError

RAY_HINT = "pip install 'suretrap[ray]'"
# Settings a local Ray worker must see as the driver does (never secrets: no passphrase, no API key).
FORWARDED_ENV = ("FINGERPRINT_HOME", "FINGERPRINT_CACHE", "FINGERPRINT_VLLM_PYTHON", "HF_HOME", "HF_HUB_OFFLINE")


def require_ray():
    """The ray module, or a one-line user error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise FingerprintError(f"Ray is not installed: {RAY_HINT}") from None
    return ray


@dataclass(frozen=True)
class RayOptions:
    """Where tasks run. ``address`` None: a Ray started on this machine for the run (``ray.init()``)."""

    address: str | None = None
    workers: int | None = None  # tasks at once (None: as many as the resources allow)

    @property
    def local(self) -> bool:
        return self.address is None

    def local_cpus(self) -> int:
        return max(os.cpu_count() or 1, self.workers or 1)

    def cpus_per_task(self) -> float:
        """The CPUs (and torch threads) of a task that runs a model, unless its spec says otherwise.

        Locally the machine's CPUs are split among the workers (one worker gets them all); on a cluster a task
        takes one CPU unless told more.
        """
        if self.local and self.workers:
            return float(max(1, self.local_cpus() // self.workers))
        return 1.0

    def task_env(self) -> dict[str, str]:
        """Environment a task applies first: the driver's paths when the workers share its machine."""
        if not self.local:
            return {}
        return {name: os.environ[name] for name in FORWARDED_ENV if name in os.environ}


@contextmanager
def ray_session(options: RayOptions) -> Iterator[Any]:
    """Start (local) or join (address) Ray for the run; shut down at the end what was started here.

    A session the caller already holds (``ray.init`` in a notebook or a test) is used as it is and left running.
    """
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    import logging

    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
    if options.local:
        kwargs["num_cpus"] = options.local_cpus()
    else:
        kwargs["address"] = options.address
    try:
        ray.init(**kwargs)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        where = f"the Ray cluster at {options.address}" if options.address else "a local Ray"
        first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise FingerprintError(f"cannot start or reach {where}: {first}") from exc
    try:
        yield ray
    finally:
        ray.shutdown()


def apply_env(env: dict[str, str]) -> None:
    os.environ.update(env)


def set_torch_threads(cpus: float) -> None:
    """One torch thread per CPU the task holds: tasks sharing a machine do not oversubscribe it."""
    import torch

    torch.set_num_threads(max(1, int(cpus)))


@dataclass
class TaskFailure:
    """A task that raised (or whose worker died); ``kind`` is "error" for a user error, else "internal"."""

    message: str
    kind: str = "internal"


def describe_failure(exc: BaseException) -> TaskFailure:
    """One line for a failed task (Ray wraps a task's exception: its ``cause`` is the original)."""
    cause = getattr(exc, "cause", None) or exc
    first = next((line.strip() for line in str(cause).splitlines() if line.strip()), type(cause).__name__)
    if isinstance(cause, FingerprintError):
        return TaskFailure(first, "error")
    return TaskFailure(f"{type(cause).__name__}: {first}", "internal")


def as_finished(ray, submit: list[Callable[[], Any]], max_in_flight: int | None) -> Iterator[tuple[int, Any]]:
    """Call each ``submit[i]()`` (it returns an ObjectRef), at most ``max_in_flight`` outstanding; yield
    ``(i, result)`` in the order tasks finish, a ``TaskFailure`` as the result of a task that failed."""
    cap = max_in_flight or len(submit) or 1
    waiting: dict[Any, int] = {}
    queue = list(enumerate(submit))
    queue.reverse()
    while queue or waiting:
        while queue and len(waiting) < cap:
            index, start = queue.pop()
            waiting[start()] = index
        (ref,), _ = ray.wait(list(waiting), num_returns=1)
        index = waiting.pop(ref)
        try:
            yield index, ray.get(ref)
        except ray.exceptions.RayError as exc:
            yield index, describe_failure(exc)


# a per-endpoint gate shared by every task of a run ------------------------------------------------------------

class _GateActor:
    """Holds one ``Limiter``; a threaded actor, so waiting callers block their own thread, not the actor."""

    def __init__(self, rate: float | None, max_concurrency: int | None) -> None:
        from fingerprint.core.limits import Limiter

        self.limiter = Limiter(rate, max_concurrency)

    def acquire(self) -> None:
        self.limiter.acquire()

    def release(self) -> None:
        self.limiter.release()

    def stats(self) -> dict:
        return self.limiter.stats()


class RayGate:
    """A context manager around a gate actor's handle (picklable: it travels to the tasks)."""

    def __init__(self, handle) -> None:
        self.handle = handle

    def __enter__(self) -> RayGate:
        import ray

        ray.get(self.handle.acquire.remote())
        return self

    def __exit__(self, *exc) -> None:
        import ray

        ray.get(self.handle.release.remote())

    def stats(self) -> dict:
        import ray

        return ray.get(self.handle.stats.remote())


def make_gate(ray, name: str, rate: float | None, max_concurrency: int | None) -> RayGate:
    """A named gate actor (0 CPUs) for one endpoint of one run; it ends with the driver."""
    actor = ray.remote(num_cpus=0, max_concurrency=1024)(_GateActor)
    handle = actor.options(name=name, get_if_exists=True).remote(rate, max_concurrency)
    return RayGate(handle)
