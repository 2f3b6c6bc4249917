"""Where a model's int8 speed-up comes from: float32 vs PTQ int8 of the whole model and of its leading parts.

The per-op profiler (``python -m tfalign.profile --per-op``, ``bench/patch_impls.py``'s op-type table) times each
op alone with LiteRT's builtin kernels, but an app runs the model through XNNPACK, LiteRT's default CPU delegate,
which fuses and runs most of the graph itself; per-op times cannot show its share. Here each part is exported on its
own (the leading sub-model up to the named layers' outputs, the exporter's own path for float32 and int8) and timed
whole, 1 thread, with XNNPACK on (what apps get) and off (builtin kernels), median over interleaved rounds so all
exports share the machine's noise. The difference between the whole model and a part is the rest of the graph
(for mobile_two_stage: RoIAlign, the per-landmark refinement and the soft-argmaxes).

    python bench/int8_split.py                                  # mobile_two_stage, shipped weights
    python bench/int8_split.py --part stage1=heatmap1 --part features=heatmap1,s2_shared_relu

Prints a table, writes ``bench/results/int8_split.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from mobile_export.profile import x86_amx  # noqa: E402  (stdlib only)

DEFAULT_DATA = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared",
                                             "data", "lfpw", "trainset"))
DEFAULT_PARTS = {"mobile_two_stage": ["stage 1 (backbone + coarse heatmaps)=heatmap1",
                                      "stage 1 + stage-2 features=heatmap1,s2_shared_relu"]}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="mobile_two_stage",
                   help="model with shipped weights (default mobile_two_stage)")
    p.add_argument("--model-dir", metavar="DIR", default=None, help="a training run instead of shipped weights")
    p.add_argument("--part", action="append", default=None, metavar="NAME=LAYER[,LAYER]",
                   help="a leading part of the model: the sub-model from the input to these layers' outputs "
                        "(repeatable; default for mobile_two_stage: stage 1, and stage 1 + the stage-2 features)")
    p.add_argument("--calibration", metavar="SPEC", default=f"300w:{DEFAULT_DATA}#train",
                   help="int8 calibration faces (default: the LFPW #train split)")
    p.add_argument("--calibration-size", type=int, default=64, help="int8 calibration faces (default 64)")
    p.add_argument("--rounds", type=int, default=15, help="interleaved latency rounds (default 15)")
    p.add_argument("--runs", type=int, default=30, help="invokes per export per round (default 30)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                                 "int8_split.json"), help="JSON results file")
    x86_amx.add_argument(p)
    args = p.parse_args(argv)
    for flag in ("calibration_size", "rounds", "runs"):
        if getattr(args, flag) <= 0:
            p.error(f"--{flag.replace('_', '-')}: must be > 0")
    parts = args.part if args.part is not None else DEFAULT_PARTS.get(args.model, [])
    args.parts = []
    for item in parts:
        name, sep, layers = item.rpartition("=")
        if not sep or not name or not layers:
            p.error(f"--part '{item}': expected NAME=LAYER[,LAYER]")
        args.parts.append((name, [s.strip() for s in layers.split(",") if s.strip()]))
    return args


def _load(args):
    from tfalign.models.base import load_pretrained
    if args.model_dir:
        from tfalign.training import load_model_dir
        return load_model_dir(args.model_dir)
    return load_pretrained(args.model)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.no_amx:
        x86_amx.deny()  # before any interpreter: XNNPACK reads the CPU's features once per process
    from mobile_export import tflite
    from mobile_export.profile.common import interleaved_ms, runtime_version, warm_interpreter
    from quantization import calibration, presets
    from tfalign._keras import keras

    arch, config, model = _load(args)
    models = {"whole model": arch.inference_model(config, model)}
    for name, layer_names in args.parts:
        try:
            outs = [model.get_layer(n).output for n in layer_names]
        except ValueError as exc:
            print(f"int8_split: error: --part {name}: {exc}", file=sys.stderr)
            return 2
        models[name] = keras.Model(model.inputs, outs)
    rep = calibration.representative_dataset(config.input, args.calibration, args.calibration_size)
    exports, interpreters = {}, {}
    for name, m in models.items():
        for precision, preset in (("float32", presets.for_float32()), ("int8", presets.for_int8(rep))):
            data = tflite.convert(m, preset=preset)
            exports[(name, precision)] = {"size_bytes": len(data), "ops": len(tflite.op_names(data))}
            for xnnpack in (True, False):
                interpreters[(name, precision, xnnpack)] = warm_interpreter(data, threads=1, xnnpack=xnnpack)
    times = interleaved_ms(interpreters, args.rounds, args.runs)
    rows = []
    for name in models:
        for xnnpack in (True, False):
            f = float(np.median(times[(name, "float32", xnnpack)]))
            q = float(np.median(times[(name, "int8", xnnpack)]))
            rows.append({"part": name, "kernels": "XNNPACK" if xnnpack else "builtin", "float32_ms": round(f, 4),
                         "int8_ms": round(q, 4), "speedup": round(f / q, 3),
                         "float32_ops": exports[(name, "float32")]["ops"], "int8_ops": exports[(name, "int8")]["ops"]})
    # The rest of the graph after each part, by difference (same run, same kernels).
    whole = {r["kernels"]: r for r in rows if r["part"] == "whole model"}
    for r in [r for r in rows if r["part"] != "whole model"]:
        w = whole[r["kernels"]]
        f, q = w["float32_ms"] - r["float32_ms"], w["int8_ms"] - r["int8_ms"]
        rows.append({"part": f"whole model minus '{r['part']}'", "kernels": r["kernels"], "float32_ms": round(f, 4),
                     "int8_ms": round(q, 4), "speedup": round(f / q, 3) if q > 0 else None, "by_difference": True})
    header = f"{'part':<58} {'kernels':<8} {'float32 ms':>10} {'int8 ms':>8} {'speed-up':>8}"
    print(header)
    for r in rows:
        s = f"{r['speedup']:.2f}x" if r["speedup"] else "-"
        print(f"{r['part']:<58} {r['kernels']:<8} {r['float32_ms']:>10.3f} {r['int8_ms']:>8.3f} {s:>8}")
    from tfalign.training.runconfig import cpu_info
    out = {"command": "python bench/int8_split.py " + " ".join(sys.argv[1:] if argv is None else argv),
           "created": time.strftime("%Y-%m-%d %H:%M:%S"), "runtime": runtime_version(), "cpu": cpu_info(),
           "x86_amx": x86_amx.status(),
           "model": args.model, "model_dir": args.model_dir, "parts": {n: l for n, l in args.parts}, "threads": 1,
           "rounds": args.rounds, "runs": args.runs, "calibration": f"{args.calibration} ({args.calibration_size})",
           "rows": rows}
    from tfalign.io import atomic_write
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    atomic_write(args.out, (json.dumps(out, indent=1) + "\n").encode())
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
