"""The converted-model cache: processes that ask for the same model at once convert it once, and share it."""

from __future__ import annotations

import os
import subprocess
import sys

CONVERT = """
import sys, time
from pathlib import Path
from fingerprint.core import loading

target = Path(sys.argv[1])

def build(tmp):
    with open(target.parent / "builds.log", "a") as log:
        log.write(f"{sys.argv[2]}\\n")
    time.sleep(2)  # a conversion takes seconds: long enough for the other process to arrive
    (tmp / "config.json").write_text("{}")
    (tmp / "SOURCE").write_text(f"test\\n{loading.CONVERSION_STAMP}\\n")

print(loading._convert_once(target, build))
"""


def test_two_processes_converting_one_model_convert_it_once(tmp_path):
    target = tmp_path / "models" / "some-model"
    target.parent.mkdir()
    procs = [subprocess.Popen([sys.executable, "-c", CONVERT, str(target), name], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=os.environ.copy()) for name in ("a", "b")]
    results = [proc.communicate(timeout=120) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], [err for _, err in results]
    assert {out.strip() for out, _ in results} == {str(target)}
    assert len((target.parent / "builds.log").read_text().split()) == 1  # the second waited and used the first's
    assert (target / "config.json").is_file()
