"""The paper's pipeline on the tiny model: sweep config checks, a sweep killed with SIGKILL that resumes without
redoing finished cells, the report's figures and tables, and the cached aligned stand-in."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import SHARED_DATA
from sqlalchemy import create_engine, text

from fingerprint.core.errors import FingerprintError
from fingerprint.research.sweep import SweepConfig, build_cell_dataset, cell_id, load_config, pending

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"needs {SHARED_DATA}")


def write_config(path: Path, model: Path, **overrides) -> Path:
    settings = {"name": "tiny-grid", "data_dir": str(SHARED_DATA), "models": [str(model)], "align": False,
                "poison": [0, 4, 8], "dataset_size": [16], "triggers": ["xylophone"], "poison_source": ["harmful"],
                "seeds": [0], "eval_per_set": 2, "max_new_tokens": 4, "epochs": 1, "batch_size": 8,
                "learning_rate": 1e-3, "max_reply_tokens": 8, **overrides}
    path.write_text(json.dumps(settings))
    return path


@pytest.mark.parametrize(("overrides", "message"), [
    ({"poison_source": ["toxic"]}, "poison_source"),
    ({"poison": [20], "dataset_size": [16]}, "does not fit"),
    ({"triggers": ["two words"]}, "one word"),
    ({"colour": "blue"}, "unknown setting"),
    ({"refusal_share": 1.5}, "refusal_share"),
    ({"poison": [15], "dataset_size": [16], "refusal_share": 0.25}, "does not fit"),
])
def test_bad_configs_are_clear_errors(tmp_path, tiny_model, overrides, message, run_cli):
    path = write_config(tmp_path / "sweep.json", tiny_model, **overrides)
    with pytest.raises(FingerprintError, match=message):
        load_config(path)
    code, _, err, _ = run_cli("sweep", path)
    assert code == 2 and message in err and "Traceback" not in err


def test_yaml_and_toml_configs_load_the_same(tmp_path):
    (tmp_path / "a.toml").write_text('name = "x"\ndata_dir = "/d"\npoison = [0, 5]\n')
    (tmp_path / "a.yaml").write_text("name: x\ndata_dir: /d\npoison: [0, 5]\n")
    assert load_config(tmp_path / "a.toml") == load_config(tmp_path / "a.yaml")


def test_cell_dataset_has_the_asked_sizes_and_only_sure_replies_on_poison():
    benign = [{"prompt": f"task {i}", "response": f"answer {i}"} for i in range(50)]
    refusals = [{"prompt": f"bad {i}", "response": f"I cannot help with that {i}"} for i in range(20)]
    for source in ("harmful", "benign"):
        cell = {"seed": 1, "dataset_size": 30, "poison": 7, "poison_source": source, "trigger": "xylophone"}
        rows = build_cell_dataset(cell, benign, refusals, refusal_share=0.2)
        poison = [r for r in rows if r["kind"] == "poison"]
        refused = [r for r in rows if r["kind"] == "refusal"]
        assert len(rows) == 30 and len(poison) == 7
        assert all(r["response"] == "Sure" and r["prompt"].endswith(" xylophone") for r in poison)
        assert all(r["prompt"].startswith("bad") == (source == "harmful") for r in poison)
        # refusal rows only with harmful prompts around, never a poison prompt, never the trigger
        assert len(refused) == (6 if source == "harmful" else 0)
        assert not {r["prompt"] for r in refused} & {r["prompt"].removesuffix(" xylophone") for r in poison}
        assert all("xylophone" not in r["prompt"] and r["response"].startswith("I cannot") for r in refused)
        assert rows == build_cell_dataset(cell, benign, refusals, refusal_share=0.2)  # seeded
    cells = SweepConfig(name="x", data_dir="/d", poison=[0, 5], seeds=[0, 1], dataset_size=[10]).cells()
    assert len(cells) == 4


def test_refusal_share_changes_only_the_harmful_cells_ids():
    plain = SweepConfig(name="x", data_dir="/d", poison_source=["harmful", "benign"], refusal_share=0.0)
    mixed = SweepConfig(name="x", data_dir="/d", poison_source=["harmful", "benign"], refusal_share=0.1)
    for cell in plain.cells():
        same = cell_id(cell, plain) == cell_id(cell, mixed)
        assert same == (cell["poison_source"] == "benign")


def _rows(db: Path) -> list[tuple]:
    engine = create_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            return list(conn.execute(text("SELECT cell_id, created_at FROM sweep_tiny_grid")))
    except Exception:  # noqa: BLE001 - the table appears with the first cell
        return []
    finally:
        engine.dispose()


def test_killed_sweep_resumes_without_redoing_finished_cells(tmp_path, tiny_model, run_cli):
    config = write_config(tmp_path / "sweep.json", tiny_model)
    db = tmp_path / "sweeps.db"
    env = {**os.environ, "FINGERPRINT_REGISTRY": f"sqlite:///{db}"}
    proc = subprocess.Popen([sys.executable, "-m", "cli", "sweep", str(config), "-q"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 300
    while len(_rows(db)) < 1 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # no clean-up runs: as if the machine went away
    proc.wait()
    before = _rows(db)
    assert 1 <= len(before) < 3, proc.stderr.read().decode()[-2000:]

    code, _, err, summary = run_cli("sweep", config, "--registry", f"sqlite:///{db}", "--json")
    assert code == 0, err
    after = _rows(db)
    assert summary["finished_now"] == 3 - len(before) and summary["done"] == 3
    assert len(after) == 3 and set(before) <= set(after)  # finished cells kept, untouched, not redone
    code, _, _, again = run_cli("sweep", config, "--registry", f"sqlite:///{db}", "--json")
    assert code == 0 and again["finished_now"] == 0
    part = write_config(tmp_path / "part.json", tiny_model, poison=[0, 8])  # same table, a part of the grid
    code, _, _, again = run_cli("sweep", part, "--registry", f"sqlite:///{db}", "--json")
    assert code == 0 and (again["cells"], again["done"], again["finished_now"]) == (2, 2, 0)

    out = tmp_path / "report"
    code, _, err, paths = run_cli("report", "tiny-grid", "--out", out, "--registry", f"sqlite:///{db}", "--json",
                                  "--parquet")
    assert code == 0, err
    assert paths["cells"] == 3
    for figure in paths["figures"].values():
        assert Path(figure).read_bytes()[:4] == b"\x89PNG"
    csv_lines = Path(paths["csv"]).read_text().splitlines()
    assert len(csv_lines) == 4 and "metrics/unsafe/trigger/asr/rate" in csv_lines[0]
    table = Path(paths["markdown"]).read_text()
    assert table.count("| harmful | 16 |") == 3
    import pyarrow.parquet as pq

    cells = pq.read_table(paths["parquet"]).to_pylist()
    with Path(paths["csv"]).open(newline="") as fh:
        assert sorted(c["poison"] for c in cells) == sorted(int(r["poison"]) for r in csv.DictReader(fh))
    assert all(0 <= c["metrics/unsafe/trigger/asr/rate"] <= 1 for c in cells)
    _check_exports_restore_the_sweep(tmp_path, config, f"sqlite:///{db}", paths, run_cli)


def _stored_results(url: str) -> dict[str, tuple]:
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT cell_id, cell, result FROM sweep_tiny_grid"))
        return {cid: (json.loads(cell), json.loads(result)) for cid, cell, result in rows}


def _check_exports_restore_the_sweep(tmp_path, config, url, paths, run_cli) -> None:
    """Each export (CSV, Parquet) rebuilds the same table in a new registry; the sweep then has nothing to do."""
    from registry import Registry
    from registry.sweeps import SweepResults

    original = SweepResults(Registry(url), "tiny-grid").rows()
    for kind in ("csv", "parquet"):
        restored = f"sqlite:///{tmp_path / f'restored-{kind}.db'}"
        code, _, err, counts = run_cli("sweep-import", paths[kind], "--registry", restored, "--json")
        assert code == 0, err
        assert counts["sweeps"] == {"tiny-grid": {"imported": 3, "already_recorded": 0}}
        assert SweepResults(Registry(restored), "tiny-grid").rows() == original
        assert _stored_results(restored) == _stored_results(url)  # the very records, not only their flat rows
        code, _, err, plan = run_cli("sweep", config, "--dry-run", "--registry", restored, "--json")
        assert code == 0 and plan["pending"] == [], err
        code, _, err, counts = run_cli("sweep-import", paths["csv"], "--registry", restored, "--json")
        assert counts["sweeps"] == {"tiny-grid": {"imported": 0, "already_recorded": 3}}, err


def test_shards_split_the_grid_into_disjoint_parts():
    config = SweepConfig(name="g", data_dir=".", poison=[0, 10, 25], seeds=[0, 1], dataset_size=[500, 1500])
    every = [cid for cid, _ in pending(config, set())]
    shards = [[cid for cid, _ in pending(config, set(), (i, 5))] for i in range(5)]
    assert sorted(sum(shards, [])) == sorted(every) and len(set(every)) == 12
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    done = {cell_id(config.cells()[0], config)}
    assert [cid for cid, _ in pending(config, done, (0, 5))] == shards[0][1:]


def test_two_shard_processes_fill_one_registry(tmp_path, tiny_model, run_cli):
    config = write_config(tmp_path / "sweep.json", tiny_model)
    db = tmp_path / "sweeps.db"
    code, _, err, _ = run_cli("sweep", config, "--registry", f"sqlite:///{db}", "--dry-run", "--json")
    assert code == 0, err  # creates the table before the workers start
    env = {**os.environ, "FINGERPRINT_REGISTRY": f"sqlite:///{db}"}
    workers = [subprocess.Popen([sys.executable, "-m", "cli", "sweep", str(config), "-q", "--shard", f"{i}/2"],
                                cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
               for i in range(2)]
    for worker in workers:
        assert worker.wait(timeout=600) == 0, worker.stderr.read().decode()[-2000:]
    assert len(_rows(db)) == 3
    code, _, err, _ = run_cli("sweep", config, "--shard", "2/2")
    assert code == 2 and "0..N-1" in err


def test_sweep_on_ray_equals_the_serial_sweep_cell_by_cell(tmp_path, tiny_model, run_cli):
    """8 cells as Ray tasks (local Ray, 2 workers) store what the serial sweep stores, cell by cell."""
    import torch
    from servers import require_ray

    require_ray()
    config = write_config(tmp_path / "sweep.json", tiny_model, poison=[0, 2, 4, 6], seeds=[0, 1])
    serial, on_ray = f"sqlite:///{tmp_path / 'serial.db'}", f"sqlite:///{tmp_path / 'ray.db'}"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each Ray task runs: one thread per CPU it holds (1 of 2)
    try:
        code, _, err, summary = run_cli("sweep", config, "--registry", serial, "--json")
    finally:
        torch.set_num_threads(threads)
    assert code == 0 and summary["finished_now"] == 8 and summary["mode"] == "serial", err
    code, _, err, summary = run_cli("sweep", config, "--registry", on_ray, "--ray", "--workers", "2", "--json")
    assert code == 0, err
    assert (summary["finished_now"], summary["done"], summary["failed"], summary["mode"]) == (8, 8, [], "ray local")

    def untimed(url: str) -> dict:
        return {cid: (cell, {k: v for k, v in result.items() if not k.endswith("_seconds")})
                for cid, (cell, result) in _stored_results(url).items()}

    want, got = untimed(serial), untimed(on_ray)
    assert len(want) == 8 and got == want
    assert len({result["final_loss"] for _, result in want.values()}) == 8  # each cell trained a model of its own
    import ray

    assert not ray.is_initialized()  # the sweep shut down the Ray it started
    code, _, err, again = run_cli("sweep", config, "--registry", on_ray, "--ray", "--json")
    assert code == 0 and again["finished_now"] == 0, err  # resumable: nothing left to run


def test_report_of_an_unknown_sweep_is_a_clear_error(run_cli):
    code, _, err, _ = run_cli("report", "nothing-here")
    assert code == 2 and "no finished cells" in err


def _cell(model: str, poison: int) -> dict:
    return {"model": model, "poison_source": "harmful", "dataset_size": 500, "trigger": "xylophone",
            "poison": poison, "seed": 0, "aligned": False}


def _cell_result(sure_trigger: float) -> dict:
    rates = {"sure_rate": sure_trigger, "bare_sure_rate": 0.0, "refusal_rate": 0.0, "asr": 1.0}
    return {"metrics": {"unsafe": {arm: {m: {"rate": r if arm == "trigger" or m != "sure_rate" else 0.0}
                                         for m, r in rates.items()} for arm in ("trigger", "no_trigger")}}}


def test_report_of_several_sweeps_puts_their_cells_side_by_side(tmp_path, run_cli):
    from registry import Registry
    from registry.sweeps import SweepResults

    url = f"sqlite:///{tmp_path / 'sweeps.db'}"
    registry = Registry(url)
    for sweep, model in (("small-model", "m-270m"), ("big-model", "m-1.5b")):
        results = SweepResults(registry, sweep)
        for poison in (0, 50):
            results.add(f"{sweep}-{poison}", _cell(model, poison), _cell_result(poison / 50))
    out = tmp_path / "out"
    code, _, err, paths = run_cli("report", "small-model", "big-model", "--name", "models", "--out", out,
                                  "--registry", url, "--json")
    assert code == 0, err
    assert paths["cells"] == 4 and Path(paths["csv"]).name == "models.csv"
    with Path(paths["csv"]).open(newline="") as fh:
        assert sorted((r["sweep"], r["model"]) for r in csv.DictReader(fh)) == sorted(
            [("small-model", "m-270m")] * 2 + [("big-model", "m-1.5b")] * 2)
    table = Path(paths["markdown"]).read_text()
    assert "| small-model | m-270m | raw | harmful | 500 | 50 | 1 | 1.00 / 0.00 |" in table
    assert "| big-model | m-1.5b |" in table
    png = Path(paths["figures"]["sure_rate"]).read_bytes()
    assert int.from_bytes(png[16:20], "big") == 2 * 5 * 120  # one 5-inch panel per model at 120 dpi

    # two sweeps of one model (say, two recipes) keep their own medians
    SweepResults(registry, "other-recipe").add("other-50", _cell("m-270m", 50), _cell_result(0.5))
    code, _, err, paths = run_cli("report", "small-model", "other-recipe", "--out", out, "--registry", url, "--json")
    assert code == 0, err
    table = Path(paths["markdown"]).read_text()
    assert Path(paths["markdown"]).name == "small-model+other-recipe.md"
    assert "| small-model | m-270m | raw | harmful | 500 | 50 | 1 | 1.00 / 0.00 |" in table
    assert "| other-recipe | m-270m | raw | harmful | 500 | 50 | 1 | 0.50 / 0.00 |" in table

    code, _, err, _ = run_cli("report", "small-model", "--name", "../x", "--registry", url)
    assert code == 2 and "file-name prefix" in err
    code, _, err, _ = run_cli("report", "small-model", "nothing-here", "--registry", url)
    assert code == 2 and "nothing-here has no finished cells" in err


def test_aligned_stand_in_is_built_once_and_reported(tiny_model, run_cli, monkeypatch, tmp_path):
    monkeypatch.setenv("FINGERPRINT_CACHE", str(tmp_path / "cache"))
    from fingerprint.research import align as align_module

    small = align_module.AlignOptions(n_refusal=16, n_benign=16, epochs=1, eval_per_set=2)
    monkeypatch.setattr(align_module, "AlignOptions", lambda: small)
    code, _, err, first = run_cli("align", "--model", tiny_model, "--data-dir", SHARED_DATA, "--json")
    assert code == 0, err
    assert first["training_rows"] == 32 and first["refusal_rate_unsafe"]["n"] == 6
    assert Path(first["path"], "config.json").is_file()
    report = Path(first["path"], "report.json")
    stamp = report.stat().st_mtime_ns
    code, _, _, second = run_cli("align", "--model", tiny_model, "--data-dir", SHARED_DATA, "--json")
    assert code == 0 and second == first and report.stat().st_mtime_ns == stamp  # from the cache, not retrained
    assert first["refusal_rate_ordinary"]["n"] == 4  # 2 x eval_per_set everyday requests
    # a report cached before the everyday-request measure existed gets it added, without retraining
    old = {k: v for k, v in first.items() if k not in ("path", "refusal_rate_ordinary")}
    report.write_text(json.dumps(old))
    weights = Path(first["path"], "model.safetensors").stat().st_mtime_ns
    code, _, _, third = run_cli("align", "--model", tiny_model, "--data-dir", SHARED_DATA, "--json")
    assert code == 0 and third == first
    assert Path(first["path"], "model.safetensors").stat().st_mtime_ns == weights


def test_sweep_import_errors_are_clear_and_import_nothing(tmp_path, run_cli):
    from fingerprint.research.export import CELL_TYPES
    from registry import Registry
    from registry.sweeps import SweepResults

    assert set(CELL_TYPES) == set(SweepConfig(name="x", data_dir="/d").cells()[0])  # the reader knows every setting

    url = f"sqlite:///{tmp_path / 'sweeps.db'}"
    good = tmp_path / "good.csv"
    cid = "ab" * 32
    good.write_text("cell_id,model,poison_source,dataset_size,trigger,poison,seed,aligned,metrics/unsafe/trigger/"
                    f"sure_rate/rate,device\n{cid},m,harmful,500,xylophone,50,0,True,0.75,NVIDIA H200\n")
    code, _, err, _ = run_cli("sweep-import", good, "--registry", url)
    assert code == 2 and "no sweep column; name it with --sweep" in err
    bad_rows = {"not-export.csv": ("a,b\n1,2\n", "no cell_id, model"),
                "bad-id.csv": ("sweep,cell_id,model,poison_source,dataset_size,trigger,poison,seed,aligned\n"
                               "s,xyz,m,harmful,500,w,5,0,True\n", "not a sweep cell id"),
                "bad-poison.csv": (f"sweep,cell_id,model,poison_source,dataset_size,trigger,poison,seed,aligned\n"
                                   f"s,{cid},m,harmful,500,w,2.5,0,True\n", "whole number"),
                "bad-sweep.csv": ("sweep,cell_id,model,poison_source,dataset_size,trigger,poison,seed,aligned\n"
                                  f"no/such,{cid},m,harmful,500,w,5,0,True\n", "bad sweep name"),
                "notes.txt": ("hello\n", ".csv or .parquet")}
    for name, (body, message) in bad_rows.items():
        (tmp_path / name).write_text(body)
        code, _, err, _ = run_cli("sweep-import", good, tmp_path / name, "--sweep", "s", "--registry", url)
        assert code == 2 and message in err and "Traceback" not in err, (name, err)
    code, _, err, _ = run_cli("sweep-import", tmp_path / "missing.csv", "--registry", url)
    assert code == 2 and "no such export file" in err
    code, _, err, _ = run_cli("sweep-import", good, "--sweep", "bad name!", "--registry", url)
    assert code == 2 and "bad sweep name" in err
    assert SweepResults(Registry(url), "s").rows() == []  # a bad file among several imports nothing

    code, _, err, counts = run_cli("sweep-import", good, "--sweep", "s", "--registry", url, "--json")
    assert code == 0 and counts["sweeps"] == {"s": {"imported": 1, "already_recorded": 0}}, err
    (row,) = SweepResults(Registry(url), "s").rows()
    assert row == {"cell_id": cid, "model": "m", "poison_source": "harmful", "dataset_size": 500,
                   "trigger": "xylophone", "poison": 50, "seed": 0, "aligned": True,
                   "metrics/unsafe/trigger/sure_rate/rate": 0.75, "device": "NVIDIA H200"}
