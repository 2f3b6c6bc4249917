"""``python -m tfalign.profile --import FILE...``: merge measurements from phones (and hosts) into one table.

Every file follows schemas/benchmark.schema.json — written by the Android/iOS apps' benchmark mode, by
``--adb`` and by the host profiler — so a phone measurement and a host measurement sit in the same table.
"""
from __future__ import annotations

import json
import pathlib

from . import common


def load(path) -> dict:
    p = pathlib.Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"--import {p}: file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"--import {p}: not a JSON file ({exc})") from None
    common.validate_benchmark(doc, f"--import {p}")
    return doc


def rows(docs_by_file) -> list[dict]:
    """One row per (file, result), sorted by model then p50."""
    out = []
    for path, doc in docs_by_file:
        dev, model = doc["device"], doc["model"]
        for r in doc["results"]:
            out.append({
                "source": str(path), "device": dev["model"], "soc": dev.get("soc", ""), "os": dev["os"],
                "runtime": r["runtime"], "delegate": r["delegate"], "compute_units": r.get("compute_units"),
                "threads": r.get("threads"), "p50_ms": r["p50_ms"], "p90_ms": r.get("p90_ms"),
                "init_ms": r.get("init_ms"), "model": model["file"], "sha256": model["sha256"],
                "size_bytes": model.get("size_bytes"), "note": r.get("note", ""),
            })
    out.sort(key=lambda r: (r["model"], r["sha256"], r["p50_ms"]))
    return out


def merge(paths) -> dict:
    if not paths:
        raise ValueError("--import: give at least one benchmark JSON file")
    return merge_docs([(p, load(p)) for p in paths])


def merge_docs(docs) -> dict:
    """``[(source name, validated document), ...]`` → merged rows and warnings."""
    table_rows = rows(docs)
    # The same file name with different contents means two different models: say so rather than compare them.
    by_name: dict = {}
    for r in table_rows:
        by_name.setdefault(r["model"], set()).add(r["sha256"])
    clashes = sorted(n for n, shas in by_name.items() if len(shas) > 1)
    return {"files": [str(p) for p, _ in docs], "rows": table_rows,
            "warnings": [f"{n}: {len(by_name[n])} different files (sha256) share this name; rows are kept apart "
                         "by their sha256 prefix" for n in clashes]}


def _label(r) -> str:
    unit = r["compute_units"] or r["delegate"]
    threads = f" {r['threads']}T" if r.get("threads") else ""
    return f"{r['device']} · {unit}{threads}"


def table(merged) -> str:
    body = common.fmt_table(
        ["model", "sha256", "device", "soc", "runtime", "delegate", "threads", "p50 ms", "p90 ms", "init ms"],
        [(r["model"], r["sha256"][:8], r["device"], r["soc"], r["runtime"], r["compute_units"] or r["delegate"],
          r["threads"] or "-", f"{r['p50_ms']:.3f}", "-" if r["p90_ms"] is None else f"{r['p90_ms']:.3f}",
          "-" if r["init_ms"] is None else f"{r['init_ms']:.1f}") for r in merged["rows"]])
    return "\n".join([body] + [f"warning: {w}" for w in merged["warnings"]])


def chart(merged, path) -> str:
    """Horizontal bars: p50 per device/delegate (whisker to p90 where known), one colour per model file."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tfalign.io import atomic_path
    rs = merged["rows"]
    models = list(dict.fromkeys((r["model"], r["sha256"]) for r in rs))
    colors = plt.get_cmap("tab10")
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(rs) + 1.4))
    for i, r in enumerate(rs):
        k = models.index((r["model"], r["sha256"]))
        err = None if r["p90_ms"] is None else [[0], [max(0.0, r["p90_ms"] - r["p50_ms"])]]
        ax.barh(i, r["p50_ms"], xerr=err, capsize=2, color=colors(k % 10),
                label=f"{r['model']} ({r['sha256'][:8]})" if i == [j for j, s in enumerate(rs)
                                                                    if (s["model"], s["sha256"]) == models[k]][0]
                else None)
    ax.set_yticks(range(len(rs)), [_label(r) for r in rs], fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("latency ms (p50; whisker to p90), log scale")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return str(path)
