"""``fingerprint monitor``: seven suspects against two certificates, serially and on a local Ray.

Real things throughout: the tiny fingerprinted model (``servers.tiny_fingerprint``) with its gate adapter, a weak
copy and its base; a second owner's tiny fingerprint (``tiny_embed``); ``transformers serve`` behind a counting
proxy as an OpenAI-compatible endpoint with a rate and a concurrency limit (on Ray its two pairs run at once
and share them); an endpoint nobody serves. The serial run writes to SQLite; the Ray run writes to PostgreSQL,
is killed with SIGKILL part-way and resumed, and must end with one record per pair, equal to the serial run's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pg import fresh_schema, pg_url  # noqa: F401  (pg_url: session fixture)
from servers import (
    CountingProxy,
    free_port,
    require_ray,
    require_transformers_serve,
    tiny_fingerprint,
    transformers_server,
)

from fingerprint.core.errors import FingerprintError
from fingerprint.core.limits import Limiter
from registry import Registry

REPO = Path(__file__).resolve().parents[1]
RUN = "tiny-watch"
RATE, MOST = 40.0, 2  # the endpoint's limits: requests per second, requests in flight


def _toml(value) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    return json.dumps(str(value) if isinstance(value, Path) else value)


def write_spec(path: Path, top: dict, certificates: list[dict], suspects: list[dict]) -> Path:
    lines = [f"{k} = {_toml(v)}" for k, v in top.items()]
    for table, entries in (("certificates", certificates), ("suspects", suspects)):
        for entry in entries:
            lines += ["", f"[[{table}]]", *(f"{k} = {_toml(v)}" for k, v in entry.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def fp(tmp_path_factory):
    return tiny_fingerprint(tmp_path_factory)


@pytest.fixture(scope="module")
def endpoint(fp, tmp_path_factory):
    require_transformers_serve()
    with transformers_server(fp.merged, tmp_path_factory.mktemp("serve-log")) as server, \
            CountingProxy(server.base_url) as proxy:
        yield server, proxy


def _spec(tmp_path: Path, fp, tiny_embed, tiny_model, server, proxy) -> Path:
    other = tiny_embed[0]
    served = {"base_url": proxy.base_url, "cache": "off", "max_retries": 0}
    certificates = [{"cert": fp.cert, "opening": fp.opening, "pubkey": fp.cert.parent.parent / "keys" / "public.pem"},
                    {"cert": other / "fp" / "certificate.json", "key": other / "keys"}]
    suspects = [
        {"name": "base", "model": fp.base},
        {"name": "gated", "model": fp.base, "adapter": fp.adapter},
        {"name": "weak", "model": fp.base, "adapter": fp.weak_adapter},
        {"name": "other-base", "model": tiny_model},
        {"name": "other-fingerprint", "model": other / "fp" / "merged"},
        {"name": "endpoint", "model": server.model, "backend": "openai", "model_args": served,
         "rate_limit": RATE, "max_concurrency": MOST},
        {"name": "down", "model": "nobody", "backend": "openai",
         "model_args": {"base_url": f"http://127.0.0.1:{free_port()}/v1", "max_retries": 0, "timeout": 5}},
    ]
    top = {"name": RUN, "probes": fp.probes, "retries": 1, "retry_backoff_s": 0.5}
    return write_spec(tmp_path / "suspects.toml", top, certificates, suspects)


def _by_pair(records: list[dict]) -> dict[str, dict]:
    return {r["details"]["monitor"]["pair_id"]: r for r in records}


def _verdict(record: dict) -> tuple:
    details = record["details"]
    return (record["certified"], record["p_value"], record["trigger_sure"], record["trigger_total"],
            record["control_sure"], record["control_total"], record["test"], details["arms"],
            details["plan_digest"], details["signer_trust"], record["model"], record["adapter"], record["backend"])


def _check_limits(proxy: CountingProxy, queries: int) -> None:
    """The endpoint's requests kept to its limits (its pairs share them: on Ray, two tasks at once)."""
    assert 0 < proxy.peak_in_flight <= MOST
    arrivals = proxy.arrivals
    assert len(arrivals) == queries
    assert (len(arrivals) - 1) / (arrivals[-1] - arrivals[0]) <= RATE * 1.1


def _wait_for_records(url: str, proc: subprocess.Popen, at_least: int, timeout: float = 300) -> list[dict]:
    registry = Registry(url)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            records = registry.list_verifications(monitor_run=RUN)
            if len(records) >= at_least:
                return records
            time.sleep(0.2)
        return registry.list_verifications(monitor_run=RUN)
    finally:
        registry.close()


def _settled(url: str, quiet_s: float = 6.0) -> list[dict]:
    """The run's records once none has been added for ``quiet_s``: a Ray worker busy with a pair when its driver
    was killed may still finish (and record) it before it notices that its raylet is gone."""
    registry = Registry(url)
    try:
        records, since = registry.list_verifications(monitor_run=RUN), time.monotonic()
        while time.monotonic() - since < quiet_s:
            time.sleep(0.5)
            now = registry.list_verifications(monitor_run=RUN)
            if len(now) != len(records):
                records, since = now, time.monotonic()
        return records
    finally:
        registry.close()


@pytest.mark.slow
def test_monitor_serial_and_on_ray_killed_and_resumed(fp, endpoint, tiny_embed, tiny_model, tmp_path, run_cli,
                                                      pg_url, monkeypatch):  # noqa: F811
    require_ray()
    server, proxy = endpoint
    spec = _spec(tmp_path, fp, tiny_embed, tiny_model, server, proxy)
    monkeypatch.setenv("FINGERPRINT_PASSPHRASE", "correct horse battery staple")  # the second owner's key
    pairs, verdicts = 14, 12  # 7 suspects x 2 certificates; the endpoint that is down gives no verdict

    # serial, no Ray, SQLite ---------------------------------------------------------------------------------
    serial_url = f"sqlite:///{tmp_path / 'serial.db'}"
    proxy.reset()
    code, _, err, serial = run_cli("monitor", spec, "--registry", serial_url, "--json")
    assert code == 2 and f"2 of {pairs} pairs failed" in err and "Traceback" not in err, err
    assert serial["mode"] == "serial" and serial["counts"]["new"] == verdicts and serial["counts"]["errors"] == 2
    first_cert = serial["certificates"][0]["certificate"]
    shown = {(r["suspect"], r["certificate"] == first_cert): r for r in serial["pairs"]}
    assert len(shown) == pairs
    for name in ("gated", "endpoint"):  # the gate, as adapter on the base and as served merged weights
        assert shown[(name, True)]["certified"] is True, name
    for name in ("base", "other-base", "other-fingerprint"):
        assert shown[(name, True)]["certified"] is False, name
    for name in ("base", "gated", "weak", "other-base", "endpoint"):
        assert shown[(name, False)]["certified"] is False, name  # the second owner's trigger opens none of them
    for first in (True, False):
        down = shown[("down", first)]
        assert down["status"] == "error" and "gave up" in down["error"] and down["attempts"] == 2
    _check_limits(proxy, 2 * 2 * fp.probes)  # 2 certificates x (trigger + control) x probes
    want = _by_pair(Registry(serial_url).list_verifications(monitor_run=RUN))
    assert len(want) == verdicts

    # a pair's record is the record `fingerprint verify` writes for it
    verify_url = f"sqlite:///{tmp_path / 'verify.db'}"
    code, _, err, direct = run_cli(*fp.verify_args("--model", fp.base, "--adapter", fp.weak_adapter, "--samples", "0",
                                                   "--pubkey", fp.cert.parent.parent / "keys" / "public.pem"),
                                   "--registry", verify_url)
    assert code in (0, 1), err
    (record,) = Registry(verify_url).list_verifications()
    (weak,) = [r for r in want.values() if r["adapter"] == str(fp.weak_adapter)
               and r["certificate_digest"] == first_cert]
    assert _verdict(record) == _verdict(weak)
    assert set(weak["details"]) - set(record["details"]) == {"monitor"}

    # on Ray (local, 2 workers), PostgreSQL: killed part-way, then resumed -------------------------------------
    with fresh_schema(pg_url) as url:
        proxy.reset()
        proc = subprocess.Popen([sys.executable, "-m", "cli", "monitor", str(spec), "--workers", "2", "--registry",
                                 url, "-q"], cwd=REPO, env=os.environ.copy(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, start_new_session=True)
        try:
            before = _wait_for_records(url, proc, at_least=1)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray it started: no clean-up runs
            proc.wait()
        assert 1 <= len(before) < verdicts, proc.stderr.read().decode()[-2000:]
        before = _by_pair(_settled(url))  # what the killed run left, once its orphaned workers are gone
        assert len(before) < verdicts

        proxy.reset()
        code, _, err, resumed = run_cli("monitor", spec, "--workers", "2", "--registry", url, "--json")
        assert code == 2 and f"2 of {pairs} pairs failed" in err, err
        counts = resumed["counts"]
        assert resumed["mode"].startswith("ray local")
        assert (counts["recorded_earlier"], counts["new"], counts["errors"]) == (
            len(before), verdicts - len(before), 2)
        import ray

        assert not ray.is_initialized()  # the run shut down the Ray it started
        records = Registry(url).list_verifications(monitor_run=RUN)
        got = _by_pair(records)
        assert len(records) == len(got) == verdicts  # one record per pair, none redone
        for pid, record in before.items():  # finished pairs kept as they were
            assert got[pid]["id"] == record["id"] and got[pid]["created_at"] == record["created_at"]
        assert got.keys() == want.keys()
        for pid in want:
            assert _verdict(got[pid]) == _verdict(want[pid]), want[pid]["model"]
        workers = {r["details"]["monitor"]["worker"] for r in records if r["id"] not in
                   {b["id"] for b in before.values()}}
        assert len(workers) >= 2  # the pairs ran in more than one Ray worker process
        endpoint_pairs = [r for r in resumed["pairs"] if r["suspect"] == "endpoint" and r["status"] == "new"]
        if endpoint_pairs:
            _check_limits(proxy, len(endpoint_pairs) * 2 * fp.probes)

        code, _, err, plan = run_cli("monitor", spec, "--registry", url, "--dry-run", "--json")
        assert code == 0, err
        assert sorted(r["suspect"] for r in plan["pairs"] if r["status"] == "pending") == ["down", "down"]


@pytest.mark.parametrize(("body", "message"), [
    ("suspects = [", "not valid TOML"),
    ('[[suspects]]\nname = "a"\nmodel = "m"\n', "certificates: Field required"),
    ('colour = "blue"\n[[certificates]]\ncert = "c.json"\nkey = "k"\n[[suspects]]\nname = "a"\nmodel = "m"\n',
     "colour: Extra inputs are not permitted"),
    ('[[certificates]]\ncert = "c.json"\nkey = "k"\nopening = "o.json"\n[[suspects]]\nname = "a"\nmodel = "m"\n',
     "exactly one of key (owner) or opening"),
    ('[[certificates]]\ncert = "c.json"\nkey = "k"\n[[suspects]]\nname = "a"\nmodel = "m"\nrate_limit = 2\n',
     "rate_limit and max_concurrency apply to endpoints"),
    ('[[certificates]]\ncert = "c.json"\nkey = "k"\n[[suspects]]\nname = "a"\nmodel = "m"\n'
     '[[suspects]]\nname = "a"\nmodel = "n"\n', "two suspects are named 'a'"),
    ('[[certificates]]\ncert = "missing.json"\nkey = "k"\n[[suspects]]\nname = "a"\nmodel = "m"\n',
     "cert: no such file or directory: missing.json"),
    ('[[certificates]]\ncert = "c.json"\nkey = "k"\n[[suspects]]\nname = "a"\nmodel = "m"\nbackend = "nope"\n',
     "unknown backend 'nope'"),
    ('[[certificates]]\ncert = "c.json"\nkey = "k"\n[[suspects]]\nname = "a"\nmodel = "./weights.gguf"\n',
     "no such file or directory: ./weights.gguf"),
    ('retries = 99\n[[certificates]]\ncert = "c.json"\nkey = "k"\n[[suspects]]\nname = "a"\nmodel = "m"\n',
     "retries: Input should be less than or equal to 10"),
])
def test_bad_suspects_files_are_one_line_errors(tmp_path, run_cli, body, message):
    (tmp_path / "c.json").write_text("{}")
    (tmp_path / "k").mkdir()
    spec = tmp_path / "suspects.toml"
    spec.write_text(body)
    code, out, err, _ = run_cli("monitor", spec)
    assert code == 2 and message in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1
    code, out, err, data = run_cli("monitor", spec, "--json")
    assert code == 2 and data["exit_code"] == 2 and message in data["error"]


def test_without_ray_installed_the_ray_options_are_a_one_line_error(tmp_path, run_cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as on a light install
    spec = tmp_path / "suspects.toml"
    spec.write_text("")
    options = (["--ray"], ["--workers", "2"], ["--ray-address", "10.0.0.1:6379"])
    for command, option in [*(("monitor", o) for o in options), *(("sweep", o) for o in options),
                            ("sweep", ["--gpus-per-cell", "0.5"])]:
        code, _, err, _ = run_cli(command, spec, *option)
        assert code == 2 and err.strip() == "error: Ray is not installed: pip install 'suretrap[ray]'", (command, err)


def test_the_limiter_bounds_rate_and_concurrency_across_threads():
    """A busy machine may delay a thread after its turn, never before: the k-th start is >= begin + k / rate."""
    import threading

    def run(gate: Limiter, hold: float) -> list[float]:
        starts: list[float] = []

        def request() -> None:
            with gate:
                starts.append(time.monotonic())
                time.sleep(hold)

        threads = [threading.Thread(target=request) for _ in range(12)]
        begin = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return [start - begin for start in sorted(starts)]

    paced = Limiter(rate=50)
    offsets = run(paced, 0.0)
    assert paced.stats()["started"] == 12
    assert all(offset >= k / 50 - 0.002 for k, offset in enumerate(offsets))  # without the rate all start at ~0
    narrow = Limiter(max_concurrency=2)
    offsets = run(narrow, 0.05)
    assert narrow.stats() == {"started": 12, "peak_in_flight": 2, "in_flight": 0}
    assert offsets[-1] >= 5 * 0.05 - 0.01  # two at a time, 50 ms each: at least 6 rounds
    with pytest.raises(ValueError):
        Limiter(rate=0)


def test_a_gguf_file_of_a_packaged_model_is_that_model(tmp_path):
    """A local .gguf suspect resolves by its bytes; the packaged gemma's GGUF is the packaged model."""
    from fingerprint.core import loading

    spec = loading.PACKAGED["gemma-3-270m"]
    try:
        spec.chunks()
    except ImportError:
        pytest.skip(spec.install_hint)
    path = tmp_path / "copy.gguf"
    loading._assemble(spec, path)
    ref = loading.resolve(str(path))
    assert Path(ref.path) == loading.convert_packaged(spec)
    (tmp_path / "broken.gguf").write_bytes(b"GGUF not really")
    with pytest.raises(FingerprintError, match="cannot convert broken.gguf"):
        loading.resolve(str(tmp_path / "broken.gguf"))
