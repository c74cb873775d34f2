"""Evidence a third party can re-check, end to end on a real fingerprint.

    python bench/evidence_demo.py --workdir DIR [--model gemma-3-270m] [--docs docs/evidence]

DIR is an ``embed_verify.py`` workdir (keys-a/, fp/certificate.json, fp/adapter). An auditor key signs two
verification records: the fingerprinted model (certified) and the untouched base model (not certified). Each
record is re-checked by ``evidence verify`` (the decision recomputed from its answers), rendered by
``evidence report`` and photographed by headless Chromium into ``--docs``. The pages are checked to hold no
trigger word before they are written there. Figures go to BENCHMARKS.md (section evidence:<model>).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import run_step, write_measures  # noqa: E402


def screenshot(html: Path, png: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("headless Chromium is missing: apt-get install chromium")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1100,1500"]
    subprocess.run([chromium, *flags, f"--screenshot={png}", html.as_uri()], capture_output=True, timeout=180,
                   check=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--docs", type=Path, default=Path("docs/evidence"))
    parser.add_argument("--robustness", type=Path, help="a robustness output directory shown as context")
    args = parser.parse_args()
    os.environ.setdefault("FINGERPRINT_PASSPHRASE", "bench")
    work, out = args.workdir.resolve(), args.workdir.resolve() / "evidence"
    out.mkdir(exist_ok=True)
    cert, pubkey = work / "fp" / "certificate.json", work / "keys-a" / "public.pem"
    if not (out / "auditor" / "private.pem").exists():
        run_step(["keygen", "--out", out / "auditor", "--json"])
    run_step(["reveal", "--key", work / "keys-a", "--cert", cert, "--out", out / "opening.json", "--json"])
    words = json.loads((out / "opening.json").read_text())["trigger"].split()
    rows: list[tuple[str, str]] = []
    cases = {"certified": ["--adapter", work / "fp" / "adapter"], "not-certified": []}
    args.docs.mkdir(parents=True, exist_ok=True)
    for name, extra in cases.items():
        record = out / f"{name}.intoto.json"
        data, wall, _, code = run_step(["verify", "--opening", out / "opening.json", "--cert", cert, "--pubkey",
                                        pubkey, "--model", args.model, *extra, "--sign-with", out / "auditor",
                                        "--evidence", record, "--json"])
        expected = 0 if name == "certified" else 1
        if code != expected:
            raise SystemExit(f"{name}: verify exited {code}, expected {expected}")
        check, check_wall, _, check_code = run_step(["evidence", "verify", record, "--opening", out / "opening.json",
                                                     "--cert", cert, "--pubkey", out / "auditor" / "public.pem",
                                                     "--json"])
        html = out / f"{name}.html"
        report_args = ["--robustness", args.robustness] if args.robustness else []
        run_step(["evidence", "report", record, "--out", html, "--cert", cert, "--pubkey",
                  out / "auditor" / "public.pem", *report_args, "--json"])
        text = html.read_text()
        leaked = [w for w in words if w.lower() in text.lower()]
        if leaked:
            raise SystemExit(f"{name}: the report names a trigger word; not written to {args.docs}")
        shutil.copy(html, args.docs / f"{name}.html")
        screenshot(html, args.docs / f"{name}.png")
        verdict = "certified" if data["certified"] else "not certified"
        rows += [(f"{name}: verify verdict, p (exit code), wall time",
                  f"{verdict}, p = {data['p_value']:.2e} (exit {code}), {wall:.1f} s"),
                 (f"{name}: `evidence verify` (recomputed from the record)",
                  f"{'consistent' if check_code == 0 else 'REJECTED'} (exit {check_code}), {check_wall:.1f} s"),
                 (f"{name}: record size, trigger words in the report page",
                  f"{record.stat().st_size / 1024:.1f} KiB, none")]
    command = "python bench/evidence_demo.py " + shlex.join(sys.argv[1:])
    write_measures(f"evidence:{args.model}", f"evidence records: {args.model}", command, rows)


if __name__ == "__main__":
    main()
