"""One writer process of the registry stress test: open the registry at a shared start time, then write.

Usage: python registry_writer.py URL START_EPOCH WRITER WRITES. Every writer registers the same key (a race
on one row), its own certificate, then WRITES verifications. Prints "ok" on success; any exception exits 1.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time


def main(url: str, start: float, writer: int, writes: int) -> None:
    from registry import Registry

    time.sleep(max(0.0, start - time.time()))  # all processes open a fresh registry at once
    registry = Registry(url)
    key = hashlib.sha256(b"stress key").hexdigest()
    registry.add_key(key, "-----BEGIN PUBLIC KEY-----\nstress\n-----END PUBLIC KEY-----\n")
    envelope = json.dumps({"writer": writer})
    cert = hashlib.sha256(envelope.encode()).hexdigest()
    registry.add_certificate(cert_id=cert, key_id=key, base_model="m", label=f"writer {writer}", licensee=None,
                             subject=[], envelope=envelope)
    for n in range(writes):
        registry.add_verification(certificate_digest=cert, backend="stress", model=f"w{writer}", trigger_sure=n,
                                  trigger_total=writes, control_sure=0, control_total=writes, queries=2,
                                  p_value=0.5, alpha=1e-6, certified=False, details={"writer": writer, "n": n})
    registry.close()
    print("ok")


class Barrier:
    """A Ray actor (async): ``wait`` returns once ``parties`` callers are waiting."""

    def __init__(self, parties: int) -> None:
        import asyncio

        self.parties, self.arrived, self.open = parties, 0, asyncio.Event()

    async def wait(self) -> None:
        self.arrived += 1
        if self.arrived >= self.parties:
            self.open.set()
        await self.open.wait()


def ray_writer(url: str, barrier, writer: int, writes: int, cells: int) -> str:
    """A Ray task: once every writer is up (``barrier``), ``main``'s writes, then ``cells`` rows of one sweep
    table that every writer shares."""
    import contextlib
    import io

    import ray

    from registry import Registry
    from registry.sweeps import SweepResults

    ray.get(barrier.wait.remote())
    with contextlib.redirect_stdout(io.StringIO()):
        main(url, 0.0, writer, writes)
    registry = Registry(url)
    results = SweepResults(registry, "load")  # every writer creates the same table at about the same time
    for n in range(cells):
        results.add(hashlib.sha256(f"{writer}/{n}".encode()).hexdigest(), {"writer": writer, "n": n},
                    {"metrics": {"n": n}})
    registry.close()
    return f"ok {writer}"


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
