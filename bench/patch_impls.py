"""RoIAlign forms side by side: ``PointPatches(impl="corners")`` vs ``impl="separable"`` in the two-stage model.

The same trained weights (shipped ``tfalign/weights/mobile_two_stage`` by default, or ``--model-dir``) are exported
twice per precision (float32 and full-int8 PTQ, the exporter's own path, ``mobile_export.tflite.convert``); per form:
the largest point difference from the Keras model with the other form (the forms must agree), validation NME
through LiteRT, the op count and the RoIAlign ops' share (single-op timing, ``mobile_export.profile.perop``), and
the whole-model LiteRT latency with 1 thread, median over interleaved rounds (the four exports share the machine's
noise); and, per op type, the single-op time of the float32 and int8 exports (where int8 gains and where it does
not on this host). Prints two tables, writes ``bench/results/patch_impls.json``.

    python bench/patch_impls.py
    python bench/patch_impls.py --rounds 20 --runs 50
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

DEFAULT_DATA = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared",
                                             "data", "lfpw", "trainset"))
IMPLS = ("corners", "separable")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-dir", metavar="DIR", default=None,
                   help="a mobile_two_stage training run (default: the shipped weights)")
    p.add_argument("--val", metavar="SPEC", default=f"300w:{DEFAULT_DATA}#val",
                   help="validation faces (default: the fixed LFPW #val split)")
    p.add_argument("--calibration", metavar="SPEC", default=f"300w:{DEFAULT_DATA}#train",
                   help="int8 calibration faces (default: the LFPW #train split)")
    p.add_argument("--calibration-size", type=int, default=64, help="int8 calibration faces (default 64)")
    p.add_argument("--rounds", type=int, default=10, help="interleaved latency rounds (default 10)")
    p.add_argument("--runs", type=int, default=30, help="invokes per export per round (default 30)")
    p.add_argument("--perop-runs", type=int, default=30, help="timed invokes per single-op model (default 30)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                                 "patch_impls.json"), help="JSON results file")
    return p.parse_args(argv)


def with_patch_impl(model, impl: str):
    """``model`` with every ``PointPatches`` computing as ``impl`` (no weights: the other layers are shared)."""
    from tfalign import layers as tfa_layers
    from tfalign._keras import keras

    def clone(layer):
        if isinstance(layer, tfa_layers.PointPatches):
            return type(layer).from_config({**layer.get_config(), "impl": impl})  # keeps subclasses (RoIAlign)
        return layer

    return keras.models.clone_model(model, clone_function=clone)


def main(argv=None) -> int:
    args = parse_args(argv)
    from mobile_export import tflite
    from mobile_export.profile import perop
    from quantization import calibration, presets
    from tfalign import layers as tfa_layers
    from tfalign.models.base import load_pretrained
    from tfalign.training import evaluation, load_model_dir
    from tfalign.training.data import load_specs, make_dataset

    if args.model_dir:
        arch, config, model = load_model_dir(args.model_dir)
        source = f"run:{args.model_dir}"
    else:
        arch, config, model = load_pretrained("mobile_two_stage")
        source = "pretrained:tfalign/weights/mobile_two_stage"
    patches = [layer for layer in model.layers if isinstance(layer, tfa_layers.PointPatches)]
    if not patches:
        print(f"patch_impls.py: error: {source} has no PointPatches layer", file=sys.stderr)
        return 2
    spec = config.input
    val = load_specs([args.val], "--val")[0][1]
    batch = next(iter(make_dataset(val[:8], spec, training=False, batch_size=8, seed=0)))["image"].numpy()
    rep = calibration.representative_dataset(spec, args.calibration, args.calibration_size)

    keras_points, exports = {}, {}
    for impl in IMPLS:
        infer = arch.inference_model(config, with_patch_impl(model, impl))
        out = infer(batch, training=False)
        keras_points[impl] = np.asarray(out["landmarks"] if isinstance(out, dict) else out)
        exports[(impl, "float32")] = tflite.convert(infer, preset=presets.for_float32())
        exports[(impl, "int8")] = tflite.convert(infer, preset=presets.for_int8(rep))
    keras_gap = float(np.abs(keras_points["corners"] - keras_points["separable"]).max())

    results = {}
    tmp = tempfile.mkdtemp(prefix="patch_impls_")
    roi_name = patches[0].name
    for (impl, precision), data in exports.items():
        runner = tflite.Runner(data)
        pred = evaluation.predict_keras(lambda x: np.concatenate([runner(x[i:i + 1]) for i in range(len(x))]),
                                        val, spec, 1)
        nme = evaluation.score(pred, *evaluation.targets(val, spec.schemes), spec.schemes)["primary"]
        path = os.path.join(tmp, f"{impl}_{precision}.tflite")
        with open(path, "wb") as f:
            f.write(data)
        prof = perop.profile(path, runs=args.perop_runs, progress=False)
        roi_ops = [r for r in prof["ops"] if roi_name in (r.get("name") or "") and r.get("time_ms") is not None]
        results[f"{impl}/{precision}"] = {
            "impl": impl, "precision": precision, "size_bytes": len(data), "nme": float(nme),
            "num_ops": prof["num_ops"], "roi_ops": len(roi_ops),
            "roi_op_types": sorted({r["op"] for r in roi_ops}),
            "roi_ms_single_op_sum": float(sum(r["time_ms"] for r in roi_ops)),
            "op_sum_ms": float(prof["op_sum_ms"]),
            "by_op_type": {a["op"]: {"count": a["count"], "ms": round(a["time_ms"], 4), "macs": a["macs"]}
                           for a in perop.by_type(prof)}}
        print(f"  {impl}/{precision}: NME {nme:.4%}, {len(roi_ops)} RoIAlign ops", file=sys.stderr, flush=True)

    runners = {k: tflite.Runner(v) for k, v in exports.items()}
    x0 = batch[:1]
    times = {k: [] for k in runners}
    from tqdm import tqdm
    for r in runners.values():
        for _ in range(5):
            r(x0)
    for _ in tqdm(range(args.rounds), desc="latency rounds", unit="round", file=sys.stderr):
        for k, r in runners.items():
            for _ in range(args.runs):
                t0 = time.perf_counter()
                r(x0)
                times[k].append((time.perf_counter() - t0) * 1e3)
    for (impl, precision), t in times.items():
        results[f"{impl}/{precision}"]["latency_ms"] = float(np.median(t))
    for precision in ("float32", "int8"):
        a, b = results[f"corners/{precision}"], results[f"separable/{precision}"]
        b["speedup_vs_corners"] = a["latency_ms"] / b["latency_ms"]
        b["roi_speedup_vs_corners"] = a["roi_ms_single_op_sum"] / max(b["roi_ms_single_op_sum"], 1e-9)

    report = {"command": " ".join(["python"] + sys.argv), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                  time.gmtime()),
              "weights": source, "layer": roi_name, "size": patches[0].size, "spacing": patches[0].spacing,
              "keras_max_point_gap": keras_gap, "val": args.val, "val_faces": len(val),
              "threads": 1, "rounds": args.rounds, "runs": args.runs, "rows": results}
    print(f"\nRoIAlign forms, {source} ({roi_name}: {patches[0].size}x{patches[0].size} samples "
          f"{patches[0].spacing} px apart); Keras point gap between forms {keras_gap:.2e}")
    print(f"{'form':<22}{'NME':>8}{'ops':>6}{'RoI ops':>9}{'RoI ms':>9}{'model ms':>10}{'speed-up':>10}")
    for key, r in results.items():
        sp = f"{r['speedup_vs_corners']:.2f}x" if "speedup_vs_corners" in r else "1.00x"
        print(f"{key:<22}{r['nme']:>8.2%}{r['num_ops']:>6}{r['roi_ops']:>9}{r['roi_ms_single_op_sum']:>9.3f}"
              f"{r['latency_ms']:>10.3f}{sp:>10}")
    # Where int8 gains and loses on this host (the default form): single-op time per op type, float32 vs int8.
    f32, i8 = results["separable/float32"]["by_op_type"], results["separable/int8"]["by_op_type"]
    print(f"\nper op type, separable form (single-op sums, ms): {'float32':>8}{'int8':>8}{'int8 speed-up':>15}")
    for op in sorted(set(f32) | set(i8), key=lambda o: -max(f32.get(o, {}).get("ms", 0), i8.get(o, {}).get("ms", 0))):
        a, b = f32.get(op, {}).get("ms", 0.0), i8.get(op, {}).get("ms", 0.0)
        ratio = f"{a / b:.2f}x" if a and b else "-"
        print(f"  {op:<46}{a:>8.3f}{b:>8.3f}{ratio:>15}")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp_out = args.out + ".tmp"
    with open(tmp_out, "w") as f:
        json.dump(report, f, indent=2)
    os.replace(tmp_out, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
