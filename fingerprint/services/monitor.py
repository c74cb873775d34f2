"""``fingerprint monitor``: many suspects, one or many certificates, every pair verified and recorded.

Each (suspect, certificate) pair is one verification by ``services.verification.verify`` and ends in the same
registry record as ``fingerprint verify`` writes, with ``details["monitor"] = {"run", "pair_id", ...}``. The
pair id is the sha256 of the certificate's id, the suspect (model, backend, adapter, model args) and the
verification settings, so a rerun of the run skips every pair already recorded and tries the rest.

Pairs run one after another in this process, or as Ray tasks (``RayOptions``): each with its resources,
written to the registry by the task itself as it finishes. The certificates are prepared here, where the key
and the passphrase are; the tasks get the checked openings, never a key. Requests to an endpoint pass one
gate per base URL (``core.limits.Limiter``; on Ray held by an actor), so all tasks share its rate and
concurrency limits. A pair that fails is tried again (``retries``, backoff doubling), then reported as an
error row; the run goes on.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from fingerprint.core.errors import FingerprintError
from fingerprint.core.progress import SILENT, Progress
from fingerprint.services.distributed import (
    RayOptions,
    TaskFailure,
    apply_env,
    describe_failure,
    set_torch_threads,
)
from fingerprint.services.monitor_spec import ENDPOINT_BACKENDS, MonitorSpec, SuspectSpec, load_spec
from fingerprint.services.verification import Prepared, Verifier, VerifyRequest, prepare, verify
from fingerprint.verification import VerifyOptions

ENDPOINT_CPUS = 0.25  # an endpoint task mostly waits on the network


def pair_id(certificate_id: str, suspect: SuspectSpec, settings: dict) -> str:
    payload = {"certificate": certificate_id, "suspect": suspect.identity(), "settings": settings}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


@dataclass
class PairTask:
    """One pair as it travels to a worker: plain data, no key."""

    pair_id: str
    run: str
    suspect: str
    request: VerifyRequest
    prepared: Prepared
    retries: int
    backoff_s: float


@dataclass
class MonitorSummary:
    run: str
    registry: str
    mode: str
    rows: list[dict]
    wall_s: float = 0.0
    certificates: list[dict] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(row["status"] == status for row in self.rows)

    @property
    def errors(self) -> list[dict]:
        return [row for row in self.rows if row["status"] == "error"]

    def to_dict(self) -> dict:
        new = self.count("new")
        return {"run": self.run, "registry": self.registry, "mode": self.mode, "pairs": self.rows,
                "certificates": self.certificates, "wall_s": round(self.wall_s, 1),
                "counts": {"pairs": len(self.rows), "new": new, "recorded_earlier": self.count("recorded"),
                           "errors": len(self.errors), "certified": sum(bool(r.get("certified")) for r in self.rows)},
                "pairs_per_hour": round(3600 * new / self.wall_s, 1) if new and self.wall_s else None}


def run_pair(task: PairTask, store, env: dict | None = None, cpus: float | None = None, gate=None) -> dict:
    """Verify one pair (retrying), recording it; the body of a Ray task and of the serial loop.

    ``store``: the Registry, or the URL a worker opens it with.
    """
    apply_env(env or {})
    if cpus and task.request.backend not in ENDPOINT_BACKENDS:
        set_torch_threads(cpus)
    attempt, started = 0, time.monotonic()
    while True:
        attempt += 1
        try:
            outcome = _verify_once(task, store, gate, attempt)
            if isinstance(outcome, dict):
                return _recorded_row(task.pair_id, outcome)
        except Exception as exc:  # noqa: BLE001 - every failure is retried, then becomes an error row
            if attempt <= task.retries:
                time.sleep(task.backoff_s * 2 ** (attempt - 1))
                continue
            failure = describe_failure(exc)
            return {"pair_id": task.pair_id, "status": "error", "error": failure.message, "error_kind": failure.kind,
                    "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
                    if failure.kind == "internal" else None,
                    "attempts": attempt, "seconds": round(time.monotonic() - started, 1), "worker": _worker()}
        decision = outcome.report.decision
        return {"pair_id": task.pair_id, "status": "new", "certified": outcome.certified,
                "p_value": decision.p_value, "trigger": f"{decision.trigger_sure}/{decision.trigger_total}",
                "control": f"{decision.control_sure}/{decision.control_total}", "queries": decision.queries,
                "record_id": outcome.record_id, "attempts": attempt, "seconds": round(time.monotonic() - started, 1),
                "worker": _worker()}


def _verify_once(task: PairTask, store, gate, attempt: int):
    from probes import make_backend
    from registry import Registry

    own = isinstance(store, str)
    registry = Registry(store) if own else store
    request = task.request
    try:
        earlier = _recorded(registry, task)
        if earlier is not None:  # a worker of a killed run of this file finished the pair meanwhile
            return earlier
        hooks = {"gate": gate} if gate is not None else {}
        backend = make_backend(request.backend, model=request.model, adapter=request.adapter, **request.model_args,
                               **hooks)
        try:
            extra = {"monitor": {"run": task.run, "pair_id": task.pair_id, "suspect": task.suspect,
                                 "attempt": attempt, "worker": _worker()}}
            return verify(request, None, registry, suspect=backend, prepared=task.prepared, record_extra=extra)
        finally:
            backend.close()
    finally:
        if own:
            registry.close()


def _recorded(registry, task: PairTask) -> dict | None:
    for record in registry.list_verifications(certificate_id=task.prepared.certificate.id, monitor_run=task.run):
        if record["details"]["monitor"].get("pair_id") == task.pair_id:
            return record
    return None


def _worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _recorded_row(pid: str, record: dict) -> dict:
    return {"pair_id": pid, "status": "recorded", "certified": record["certified"], "p_value": record["p_value"],
            "trigger": f"{record['trigger_sure']}/{record['trigger_total']}",
            "control": f"{record['control_sure']}/{record['control_total']}", "queries": record["queries"],
            "record_id": record["id"], "attempts": None, "seconds": None, "worker": None}


@dataclass
class Plan:
    spec: MonitorSpec
    prepared: list[Prepared]
    pairs: list[tuple[str, SuspectSpec, int]]  # (pair id, suspect, certificate index), suspect-major
    recorded: dict[str, dict]  # pair id -> its record, for the pairs finished earlier

    def rows_base(self, pid: str, suspect: SuspectSpec, index: int) -> dict:
        cert = self.prepared[index].certificate
        return {"suspect": suspect.name, "model": suspect.model, "backend": suspect.backend,
                "adapter": suspect.adapter, "certificate": cert.id, "label": cert.fingerprint.label}


def plan(spec_path: Path, registry, passphrase: str | None = None) -> Plan:
    """Check the file and every certificate (opening against commitment) and find the finished pairs."""
    from fingerprint.provenance.keys import load_private

    spec = load_spec(spec_path)
    owners: dict[str, object] = {}
    prepared = []
    for entry in spec.certificates:
        owner = None
        if entry.key is not None:
            if not passphrase:
                raise FingerprintError("a certificate names the owner's key: set FINGERPRINT_PASSPHRASE")
            owner = owners.get(entry.key) or load_private(Path(entry.key), passphrase)
            owners[entry.key] = owner
        verifier = Verifier(owner=owner, opening=Path(entry.opening) if entry.opening else None,
                            pubkey=Path(entry.pubkey) if entry.pubkey else None)
        prepared.append(prepare(Path(entry.cert), verifier, registry))
        if any(p.certificate.id == prepared[-1].certificate.id for p in prepared[:-1]):
            raise FingerprintError(f"{spec_path}: certificate {entry.cert} is listed twice")
    pairs = [(pair_id(p.certificate.id, suspect, spec.settings()), suspect, index)
             for suspect in spec.suspects for index, p in enumerate(prepared)]
    wanted = {pid for pid, _, _ in pairs}
    recorded = {}
    for record in registry.list_verifications(monitor_run=spec.name):
        pid = (record["details"].get("monitor") or {}).get("pair_id")
        if pid in wanted and pid not in recorded:
            recorded[pid] = record
    return Plan(spec, prepared, pairs, recorded)


def run_monitor(spec_path: Path, registry, passphrase: str | None = None, ray: RayOptions | None = None,
                progress: Progress = SILENT, dry_run: bool = False) -> MonitorSummary:
    """Verify every unfinished pair of the suspects file and record each as it finishes."""
    the_plan = plan(spec_path, registry, passphrase)
    spec = the_plan.spec
    mode = "serial" if ray is None else (f"ray local, {ray.workers or ray.local_cpus()} workers" if ray.local
                                         else f"ray {ray.address}")
    rows: dict[str, dict] = {}
    todo = []
    for pid, suspect, index in the_plan.pairs:
        base = the_plan.rows_base(pid, suspect, index)
        if pid in the_plan.recorded:
            rows[pid] = {**base, **_recorded_row(pid, the_plan.recorded[pid])}
        else:
            rows[pid] = {**base, "pair_id": pid, "status": "pending"}
            todo.append((pid, suspect, index))
    certificates = [{"certificate": p.certificate.id, "label": p.certificate.fingerprint.label, "verifier": p.verifier,
                     **p.trust.to_dict(), "warning": p.trust.warning} for p in the_plan.prepared]
    summary = MonitorSummary(spec.name, registry.url, mode, [], certificates=certificates)
    if dry_run:
        summary.rows = list(rows.values())
        return summary
    registry.check_writable()  # fail before minutes of probing, not after
    if ray is not None and not ray.local and not registry.shared_across_machines:
        progress.note("warning: a SQLite registry is reachable only from this machine; on a cluster use "
                      "PostgreSQL (--registry postgresql://...)")
    options = VerifyOptions(probes=spec.probes, alpha=spec.alpha, seed=spec.seed, samples=spec.samples)
    tasks = [PairTask(pid, spec.name, suspect.name,
                      VerifyRequest(model=suspect.model, cert=None, backend=suspect.backend, adapter=suspect.adapter,
                                    model_args=suspect.args, options=options, test=spec.test),
                      the_plan.prepared[index], spec.retries, spec.retry_backoff_s)
                 for pid, suspect, index in todo]
    suspects = {pid: suspect for pid, suspect, _ in todo}
    started = time.monotonic()
    progress.stage(f"monitor {spec.name}: {len(tasks)} pairs to verify ({len(the_plan.recorded)} recorded earlier)",
                   total=len(tasks))
    runner = _run_serial if ray is None or not tasks else _run_ray  # nothing to do: no Ray to start
    for pid, result in runner(tasks, suspects, registry, ray, spec.name):
        rows[pid] = {**rows[pid], **result}
        verdict = ("ERROR" if result["status"] == "error" else
                   "certified" if result["certified"] else "not certified")
        progress.advance(1, f"{rows[pid]['suspect']}: {verdict}")
        if result["status"] == "error":
            progress.note(f"{rows[pid]['suspect']} x {rows[pid]['certificate'][:12]}: {result['error']}")
    summary.rows = list(rows.values())
    summary.wall_s = time.monotonic() - started
    return summary


def _limits(suspects: dict[str, SuspectSpec]) -> dict[str, tuple[float | None, int | None]]:
    """The strictest rate and concurrency asked for each endpoint base URL."""
    limits: dict[str, tuple[float | None, int | None]] = {}
    for suspect in suspects.values():
        if suspect.base_url is None or not (suspect.rate_limit or suspect.max_concurrency):
            continue
        rate, most = limits.get(suspect.base_url, (None, None))
        rate = min(filter(None, (rate, suspect.rate_limit)), default=None)
        most = min(filter(None, (most, suspect.max_concurrency)), default=None)
        limits[suspect.base_url] = (rate, most)
    return limits


def _run_serial(tasks: list[PairTask], suspects, registry, ray, run: str):
    from fingerprint.core.limits import Limiter

    gates = {url: Limiter(rate, most) for url, (rate, most) in _limits(suspects).items()}
    for task in tasks:
        gate = gates.get(suspects[task.pair_id].base_url or "")
        yield task.pair_id, run_pair(task, registry, gate=gate)


def _run_ray(tasks: list[PairTask], suspects, registry, options: RayOptions, run: str):
    from fingerprint.services.distributed import as_finished, make_gate, ray_session

    with ray_session(options) as ray:
        gates = {url: make_gate(ray, f"suretrap-gate-{hashlib.sha256(f'{run}|{url}'.encode()).hexdigest()[:16]}",
                                rate, most)
                 for url, (rate, most) in _limits(suspects).items()}
        remote = ray.remote(run_pair)
        url, env = registry.shareable_url(), options.task_env()

        def submitter(task: PairTask):
            suspect = suspects[task.pair_id]
            cpus = suspect.resources.num_cpus
            if cpus is None:
                cpus = ENDPOINT_CPUS if suspect.endpoint else options.cpus_per_task()
            resources = {"num_cpus": cpus, "num_gpus": suspect.resources.num_gpus or 0,
                         "max_retries": task.retries, "retry_exceptions": False}
            gate = gates.get(suspect.base_url or "")
            return lambda: remote.options(**resources).remote(task, url, env, cpus, gate)

        for index, result in as_finished(ray, [submitter(task) for task in tasks], options.workers):
            pid = tasks[index].pair_id
            if isinstance(result, TaskFailure):  # the worker died (each try counted by Ray's max_retries)
                result = {"pair_id": pid, "status": "error", "error": result.message, "error_kind": result.kind,
                          "attempts": tasks[index].retries + 1}
            yield pid, result
