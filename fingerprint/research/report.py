"""Figures and a Markdown summary of a sweep, like the paper's: metric vs poison count, medians over seeds.

One figure per metric (ASR, Sure-rate, bare-Sure rate) with a panel per (model, poison source); in each panel
one colour per dataset size, solid for "with trigger", dashed for "without"; every run is a faint dot and the
median over seeds is the line.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path

from fingerprint.research.export import write_csv, write_parquet

METRICS = {"asr": "attack success rate (unsafe prompts)", "sure_rate": "'Sure' first-token rate (unsafe prompts)",
           "bare_sure_rate": "bare 'Sure' rate (unsafe prompts)", "refusal_rate": "refusal rate (unsafe prompts)"}
CONDITIONS = {"trigger": "with trigger", "no_trigger": "without trigger"}


def value(row: dict, group: str, condition: str, metric: str) -> float | None:
    return row.get(f"metrics/{group}/{condition}/{metric}/rate")


def several_sweeps(items: list[dict]) -> bool:
    """Whether rows (or median lines) come from more than one sweep: then tables and panels name the sweep."""
    return len({item.get("sweep", "") for item in items}) > 1


def medians(rows: list[dict], group: str = "unsafe") -> list[dict]:
    """One line per (sweep, model, poison_source, dataset_size, poison): medians over seeds of every metric.

    Cells of different sweeps never share a median: two sweeps of one model may differ in recipe.
    """
    cells: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        key = (row.get("sweep", ""), row["model"], row["aligned"], row["poison_source"], row["dataset_size"],
               row["poison"])
        cells[key].append(row)
    out = []
    for (sweep, model, aligned, source, size, poison), runs in sorted(cells.items()):
        line = {"sweep": sweep, "model": model, "aligned": aligned, "poison_source": source, "dataset_size": size,
                "poison": poison, "runs": len(runs)}
        for metric in METRICS:
            for condition in CONDITIONS:
                values = [v for r in runs if (v := value(r, group, condition, metric)) is not None]
                line[f"{metric}/{condition}"] = statistics.median(values) if values else None
        out.append(line)
    return out


def markdown_table(lines: list[dict]) -> str:
    """The medians as a Markdown table; a sweep column leads when the lines come from several sweeps."""
    def fmt(v):
        return "-" if v is None else f"{v:.2f}"

    several = several_sweeps(lines)
    head = ("| model | start | poison source | dataset size | poison | runs | Sure-rate trig / no trig | "
            "bare Sure trig | ASR trig / no trig | refusal trig / no trig |")
    out = [("| sweep " if several else "") + head, "|" + "---|" * (11 if several else 10)]
    for ln in lines:
        out.append(
            (f"| {ln['sweep']} " if several else "") +
            f"| {ln['model']} | {'aligned' if ln['aligned'] else 'raw'} | {ln['poison_source']} | "
            f"{ln['dataset_size']} | {ln['poison']} | {ln['runs']} | "
            f"{fmt(ln['sure_rate/trigger'])} / {fmt(ln['sure_rate/no_trigger'])} | "
            f"{fmt(ln['bare_sure_rate/trigger'])} | "
            f"{fmt(ln['asr/trigger'])} / {fmt(ln['asr/no_trigger'])} | "
            f"{fmt(ln['refusal_rate/trigger'])} / {fmt(ln['refusal_rate/no_trigger'])} |")
    return "\n".join(out)


def plot(rows: list[dict], metric: str, path: Path, group: str = "unsafe") -> Path:
    """Write one figure (PNG or SVG by suffix)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({(r.get("sweep", ""), r["model"], r["poison_source"]) for r in rows})
    several = several_sweeps(rows)
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.8), squeeze=False,
                             sharex=True, sharey=True)
    sizes = sorted({r["dataset_size"] for r in rows})
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (sweep, model, source) in zip(axes[0], panels, strict=True):
        for i, size in enumerate(sizes):
            runs = [r for r in rows if (r.get("sweep", ""), r["model"], r["poison_source"], r["dataset_size"])
                    == (sweep, model, source, size)]
            for condition, style in (("trigger", "-"), ("no_trigger", "--")):
                points = [(r["poison"], v) for r in runs if (v := value(r, group, condition, metric)) is not None]
                if not points:
                    continue
                ax.scatter(*zip(*points, strict=True), color=colours[i % len(colours)], alpha=0.3, s=14)
                xs = sorted({x for x, _ in points})
                ys = [statistics.median(v for x2, v in points if x2 == x) for x in xs]
                ax.plot(xs, ys, style, marker="o", color=colours[i % len(colours)], linewidth=2,
                        label=f"n={size}, {CONDITIONS[condition]}")
        ax.set_title(f"{model} - {source} poison" + (f" ({sweep})" if several else ""), fontsize=10)
        ax.set_xlabel("poisoned examples")
        ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # each panel names its own lines (sizes differ between panels)
            ax.legend(fontsize=7, loc="best")
    axes[0][0].set_ylabel(METRICS[metric].replace(" (unsafe prompts)", "") if group == "unsafe" else metric)
    fig.suptitle(f"{METRICS[metric]}; lines: median over seeds", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(rows: list[dict], out_dir: Path, sweep: str, fmt: str = "png", parquet: bool = False) -> dict:
    """Figures, CSV (and Parquet) and a Markdown summary into ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = {m: str(plot(rows, m, out_dir / f"{sweep}-{m}.{fmt}")) for m in ("asr", "sure_rate", "bare_sure_rate")}
    write_csv(rows, out_dir / f"{sweep}.csv")
    if parquet:
        write_parquet(rows, out_dir / f"{sweep}.parquet")
    table = markdown_table(medians(rows))
    md = out_dir / f"{sweep}.md"
    md.write_text(f"# Sweep {sweep}\n\nMedians over seeds, unsafe held-out prompts.\n\n{table}\n\n" +
                  "\n".join(f"![{m}]({Path(p).name})" for m, p in figures.items()) + "\n")
    return {"figures": figures, "csv": str(out_dir / f"{sweep}.csv"), "markdown": str(md),
            **({"parquet": str(out_dir / f"{sweep}.parquet")} if parquet else {})}
