"""Training throughput of every architecture through the one trainer, on this machine.

For each model: ``python -m tfalign.train`` for 2 epochs of ``--steps`` steps on procedural faces (so no data is
needed); the figure is epoch 2 (graphs traced, pipeline warm): faces per second through the whole loop (the
pipeline's augmentation + forward + backward + optimizer), plus validation time and the size of what a run keeps
(one checkpoint with optimizer slots, the best weights). Prints a table and writes bench/results/training.json.

    .venv/bin/python bench/training.py [--models tiny_test mobile_two_stage ...] [--batch 8] [--steps 6]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

DEFAULT_MODELS = ("tiny_test", "mobile_two_stage", "pipnet_mbv3", "decafa_lite", "pose_tree_moe_lite")


def _parser():
    p = argparse.ArgumentParser(prog="bench/training.py", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), help="model presets to time")
    p.add_argument("--batch", type=int, default=8, help="global batch size")
    p.add_argument("--steps", type=int, default=6, help="steps per epoch (2 epochs; epoch 2 is timed)")
    p.add_argument("--faces", type=int, default=64, help="synthetic training faces")
    p.add_argument("--timeout", type=int, default=900, help="seconds allowed per model")
    p.add_argument("--out", default=os.path.join(HERE, "results", "training.json"), help="JSON results file")
    return p


def _size(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def run_one(model: str, args, folder: str) -> dict:
    out = os.path.join(folder, model)
    cmd = [sys.executable, "-m", "tfalign.train", "--model", model, "--data", f"synthetic:{args.faces}",
           "--val", "synthetic:16:300w_68:1", "--epochs", "2", "--steps-per-epoch", str(args.steps),
           "--batch-size", str(args.batch), "--no-progress", "--out", out]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=args.timeout)
    if proc.returncode != 0:
        return {"model": model, "error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
    run = json.load(open(os.path.join(out, "config.json")))
    epochs = json.load(open(os.path.join(out, "history.json")))["epochs"]
    last = json.load(open(os.path.join(out, "checkpoints", "last.json")))
    e2 = epochs[-1]
    from tfalign.training import load_model_dir
    _, config, keras_model = load_model_dir(out)
    return {"model": model, "architecture": run["architecture"], "input": [config.input.height, config.input.width,
                                                                         config.input.channels],
            "params": int(keras_model.count_params()), "batch": args.batch, "steps": args.steps,
            "faces_per_second": e2["faces_per_second"], "step_ms": round(1000 * e2["train_seconds"] / args.steps, 1),
            "validation_seconds": round(e2["seconds"] - e2["train_seconds"], 2),
            "checkpoint_bytes": _size(os.path.join(out, "checkpoints", last["dir"])),
            "best_weights_bytes": _size(os.path.join(out, "best.weights.h5"))}


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="tfalign-bench-train-") as folder:
        for model in args.models:
            rows.append(run_one(model, args, folder))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print(f"{'model':<22} {'input':<12} {'params':>10} {'faces/s':>8} {'step ms':>8} {'val s':>6} "
          f"{'ckpt KiB':>9} {'best KiB':>9}")
    for r in rows:
        if "error" in r:
            print(f"{r['model']:<22} error: {r['error']}")
            continue
        print(f"{r['model']:<22} {'x'.join(map(str, r['input'])):<12} {r['params']:>10,} {r['faces_per_second']:>8.1f} "
              f"{r['step_ms']:>8.1f} {r['validation_seconds']:>6.2f} {r['checkpoint_bytes'] / 1024:>9.0f} "
              f"{r['best_weights_bytes'] / 1024:>9.0f}")
    from tfalign.io import atomic_write_json
    from tfalign.training.runconfig import versions
    atomic_write_json(args.out, {"command": " ".join([".venv/bin/python", "bench/training.py", *(argv or sys.argv[1:])]),
                                 "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                             "note": "shared 2-core machine, no GPU; other jobs ran at the same time"},
                                 "versions": versions(), "results": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
