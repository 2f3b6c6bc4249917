"""The README's model table, generated from bench/results/*.json (never typed by hand).

    python bench/summary.py                 # print the table
    python bench/summary.py --write-readme  # replace the block between the models-table markers in README.md
"""
from __future__ import annotations

import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "bench", "results")
START, END = "<!-- models-table:start -->", "<!-- models-table:end -->"


def _load(name):
    path = os.path.join(RESULTS, f"{name}.json")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def _f(value, fmt):
    return "–" if value is None else format(value, fmt)


#: Research-architecture presets whose trained weights ship, and how they were trained (their model cards say more).
SHIPPED_RESEARCH = {
    "dense_unet_w64": "LFPW, 1,500 steps + 1,500 self-distilled fine-tuning steps of batch 8 (shipped fp16)",
}


def _compression_cells(model_row: dict) -> list[str]:
    """int8 NME, float32/int8 KB and ms of one model's compression.json row (dashes where a variant is missing)."""
    c = model_row.get("variants", {})
    f32, i8 = c.get("float32", {}), c.get("ptq_int8", {})
    return [_f(i8.get("nme") and i8["nme"] * 100, ".2f"),
            _f(f32.get("size_bytes") and f32["size_bytes"] / 1024, ".0f"),
            _f(i8.get("size_bytes") and i8["size_bytes"] / 1024, ".0f"),
            _f(f32.get("latency_ms"), ".2f"), _f(i8.get("latency_ms"), ".2f")]


def rows() -> list[list[str]]:
    out = []
    m2s = _load("mobile_two_stage")
    if m2s:
        for r in m2s["rows"]:
            val = r.get("val") or {}
            lat = r.get("latency_ms", {})
            out.append([r["model"], f"{r['params']:,}", _f(r.get("macs", 0) / 1e6, ".0f"),
                        _f(val.get("tflite_float32", {}).get("nme_pct"), ".2f"),
                        _f(val.get("tflite_int8", {}).get("nme_pct"), ".2f"),
                        _f(r.get("float32_kb"), ".0f"), _f(r.get("int8_kb"), ".0f"),
                        _f(lat.get("float32", {}).get("median"), ".2f"), _f(lat.get("int8", {}).get("median"), ".2f"),
                        "LFPW, 220 + 190 fine-tuning epochs (shipped)" if val else "untrained: size/speed only",
                        "bench/mobile_two_stage.py"])
    pip = _load("pipnet")
    comp = (_load("compression") or {}).get("models", {})
    if pip:
        for name, v in pip["variants"].items():
            nme = (v.get("val") or {}).get("nme")
            out.append([name, f"{v['params']:,}", _f(v["gmacs"] * 1e3, ".0f"), _f(nme and nme * 100, ".2f"),
                        *_compression_cells(comp.get(name, {})),
                        _pipnet_budget(name, v["trained"]) if v.get("trained") else "not trained here (CPU budget)",
                        "bench/pipnet.py, bench/compression.py"])
    # Research architectures with shipped weights: everything from the compression bench's rows of them.
    for name, recipe in SHIPPED_RESEARCH.items():
        f32 = comp.get(name, {}).get("variants", {}).get("float32")
        if not f32:
            continue
        out.append([name, f"{f32['params']:,}", _f(f32["macs"] / 1e6, ".0f"), _f(f32["nme"] * 100, ".2f"),
                    *_compression_cells(comp[name]), recipe, "bench/compression.py"])
    # One row per research architecture: its paper's full variant (the ablations are in the bench JSON).
    for name, flagship in (("decafa", "S4"), ("dense_unet", "+coherent"), ("pose_tree_moe", "Pose-Tree-MoE")):
        res = _load(name)
        if not res:
            continue
        rows = [r for r in res["rows"] if r["variant"] == flagship]
        if not rows:  # the paper's full variant was not trained in the last bench run: its best trained one
            trained = [r for r in res["rows"] if r.get("val_nme_pct") is not None]
            rows = [min(trained, key=lambda r: r["val_nme_pct"])] if trained else []
        for r in rows:
            steps = r.get("steps")
            out.append([f"{name} {r['variant']} (lite)", f"{r['params']:,}", "–", _f(r.get("val_nme_pct"), ".1f"), "–",
                        _f(r.get("float32_kb"), ".0f"), _f(r.get("int8_kb"), ".0f"),
                        _f((r.get("latency_ms_float32") or {}).get("median"), ".1f"),
                        _f((r.get("latency_ms_int8") or {}).get("median"), ".1f"),
                        f"{steps} training steps only: NOT a trained model", f"bench/{name}.py"])
    peers = _load("peers")
    if peers:
        for r in peers["rows"]:
            if r["model"].startswith("mediapipe"):
                out.append([f"(reference) {r['model']}", "–", _f(r.get("mmacs"), ".0f"), "–", "–",
                            _f(r["size_bytes"] / 1024, ".0f"), "–", _f(r.get("p50_ms_1t"), ".2f"), "–",
                            "468 3-D points, not comparable in accuracy", "bench/peers.py"])
    return out


def _pipnet_budget(name: str, trained: dict) -> str:
    """A PIPNet variant's training, from scratch or fine-tuned from an earlier run (``base_run``); shipped or not."""
    shipped = os.path.isfile(os.path.join(ROOT, "tfalign", "weights", name, "weights.npz"))
    where = "shipped fp16" if shipped else f"not shipped: {trained['run']}"
    chain = trained.get("base_runs") or ([trained["base_run"]] if trained.get("base_run") else [])
    if chain:
        later = chain[1:] + [trained]
        steps = sum(r["epochs"] * (r.get("steps_per_epoch") or 0) for r in later)
        return (f"LFPW, {chain[0]['epochs']} epochs from scratch + {steps} fine-tuning steps in {len(later)} "
                f"run(s) ({where})")
    gpu = trained.get("trained_with")
    if gpu:  # bench/pipnet_gpu.py: the PyTorch mirror on a lent GPU, imported and checked against Keras
        return (f"LFPW, {trained['epochs']} epochs from scratch on a GPU (bench/pipnet_gpu.py; {where})")
    return f"LFPW, {trained['epochs']} epochs from scratch ({where})"


HEADER = ["model", "params", "MMACs", "val NME % (float TFLite)", "val NME % (int8)", "float32 KB", "int8 KB",
          "float32 ms", "int8 ms", "weights", "source"]


def table() -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(r) + " |" for r in rows()]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--write-readme", action="store_true", help="replace the models table block in README.md")
    args = ap.parse_args(argv)
    text = table()
    print(text)
    if args.write_readme:
        from tfalign.io import atomic_write
        path = os.path.join(ROOT, "README.md")
        with open(path, encoding="utf-8") as fh:
            readme = fh.read()
        if START not in readme or END not in readme:
            print(f"{path}: markers {START} / {END} not found", file=sys.stderr)
            return 2
        head, rest = readme.split(START, 1)
        _, tail = rest.split(END, 1)
        atomic_write(path, f"{head}{START}\n{text}\n{END}{tail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
