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


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
