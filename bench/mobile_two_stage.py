"""Benchmark of the two-stage mobile model against the issue's goals → table + bench/results/mobile_two_stage.json.

For each preset: parameters, MACs (from the float .tflite graph, mobile_export.profile.perop), float32 and full-int8
.tflite size (mobile_export.tflite.convert, the exporter's own path), LiteRT latency on 1 thread (median of --runs
after --warmup invocations) and, for the trained model, validation NME / AUC@0.1 / FR@0.1 (inter-ocular) of Keras,
float TFLite and int8 TFLite on the fixed validation split, scored by tfalign.training.evaluation like the trainer.

    python bench/mobile_two_stage.py                                   # shipped weights, LFPW #val
    python bench/mobile_two_stage.py --model-dir runs/mts --runs 500   # a training run instead

The α = 0.5 preset has no trained weights: its row gives size and speed only (random initialisation).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

GOALS = {"params": 200_000, "int8_kb": 300, "nme_pct": 4.0, "latency_ms": 1.0}
DEFAULT_DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data",
                            "lfpw", "trainset")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--weights", metavar="DIR", default=None,
                     help="folder with config.json + weights.npz (default: the shipped tfalign/weights/mobile_two_stage)")
    src.add_argument("--model-dir", metavar="DIR", help="a training run folder (python -m tfalign.train --out DIR)")
    p.add_argument("--val", metavar="SPEC", default=f"300w:{os.path.normpath(DEFAULT_DATA)}#val",
                   help="validation dataset spec (default: the fixed LFPW validation split)")
    p.add_argument("--calibration", metavar="SPEC", default=f"300w:{os.path.normpath(DEFAULT_DATA)}#train",
                   help="int8 calibration faces (default: the LFPW training split, never the validation faces)")
    p.add_argument("--calibration-size", type=int, default=64, metavar="N", help="calibration faces (default 64)")
    p.add_argument("--runs", type=int, default=300, metavar="N", help="timed invocations per model (default 300)")
    p.add_argument("--warmup", type=int, default=30, metavar="N", help="untimed invocations first (default 30)")
    p.add_argument("--no-a05", action="store_true", help="skip the α = 0.5 size/speed row")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                                 "mobile_two_stage.json"), help="JSON results file")
    args = p.parse_args(argv)
    for flag in ("runs", "warmup", "calibration_size"):
        if getattr(args, flag) <= 0:
            p.error(f"--{flag.replace('_', '-')} must be > 0, got {getattr(args, flag)}")
    return args


def tflite_predict(model_bytes: bytes):
    """batch of normalised crops → [B, N, 2] normalised landmarks, one face at a time (static batch 1)."""
    from mobile_export.tflite import Runner

    return Runner(model_bytes).batch


def latency_ms(model_bytes: bytes, x: np.ndarray, runs: int, warmup: int) -> dict:
    """Median / p90 / min ms of ``invoke`` on one real crop ``x`` (an unset input may hold NaNs, and NaN
    coordinates make the RoI GATHER indices invalid)."""
    from mobile_export.tflite import Runner

    runner = Runner(model_bytes)
    runner.set_input(x[None])
    it = runner.interpreter
    for _ in range(warmup):
        it.invoke()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        it.invoke()
        times.append((time.perf_counter() - t0) * 1e3)
    return {"median": float(np.median(times)), "p90": float(np.percentile(times, 90)), "min": float(np.min(times))}


def macs_of(model_bytes: bytes) -> int:
    from mobile_export.profile import perop

    return int(sum(row["macs"] for row in perop.graph_ops(perop.read_model(model_bytes))))


def crops(records, input_spec, limit=None):
    from tfalign.training.data import make_dataset

    ds = make_dataset(records[:limit] if limit else records, input_spec, training=False, batch_size=16, seed=0)
    return np.concatenate([b["image"].numpy() for b in ds])


def evaluate(predict, records, input_spec) -> dict:
    from tfalign.training import evaluation

    pred = evaluation.predict_keras(predict, records, input_spec, batch_size=16)
    true, mask = evaluation.targets(records, input_spec.schemes)
    s = evaluation.score(pred, true, mask, input_spec.schemes)["summary"][input_spec.schemes[0]]["inter_ocular"]
    return {"nme_pct": 100 * s["nme"], "auc@0.1": s["auc@0.1"], "fr@0.1_pct": 100 * s["fr@0.1"], "faces": s["faces"]}


def bench_variant(name, keras_model, config, args, val, calib, progress) -> dict:
    from mobile_export import tflite as tfl

    from tfalign.models.base import get_architecture
    from tfalign.training.evaluation import landmark_fn

    arch = get_architecture("mobile_two_stage")
    inference = arch.inference_model(config, keras_model)
    row = {"model": name, "params": int(keras_model.count_params()), "alpha": config.alpha,
           "input": f"{config.input.height}x{config.input.width}x{config.input.channels}"}
    progress.set_description(f"{name}: convert")
    f32 = tfl.convert(inference, "none")
    i8 = tfl.convert(inference, "int8", representative=lambda: iter(calib))
    row.update(macs=macs_of(f32), float32_kb=len(f32) / 1024, int8_kb=len(i8) / 1024,
               int8_coverage=tfl.inspect(i8)["int8_coverage"])
    progress.update()
    progress.set_description(f"{name}: latency")
    row["latency_ms"] = {"float32": latency_ms(f32, calib[0], args.runs, args.warmup),
                         "int8": latency_ms(i8, calib[0], args.runs, args.warmup)}
    progress.update()
    if val is not None:
        progress.set_description(f"{name}: validation")
        row["val"] = {"keras": evaluate(landmark_fn(keras_model), val, config.input),
                      "tflite_float32": evaluate(tflite_predict(f32), val, config.input),
                      "tflite_int8": evaluate(tflite_predict(i8), val, config.input)}
    progress.update()
    return row


def main(argv=None) -> int:
    args = parse_args(argv)
    from tqdm import tqdm

    from tfalign import config as cfg_lib
    from tfalign.data.spec import load_records
    from tfalign.io import atomic_write_json
    from tfalign.models import mobile_two_stage as mts
    from tfalign.models.base import resolve

    try:
        if args.model_dir:
            from tfalign.training import load_model_dir
            _, config, model = load_model_dir(args.model_dir)
            source = f"run:{args.model_dir}"
        else:
            folder = args.weights or mts.WEIGHTS_DIR
            model, config = mts.load_pretrained(folder)
            source = f"weights:{os.path.relpath(folder)}"
        val = load_records(args.val)
        calib_records = load_records(args.calibration)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    calib = crops(calib_records, config.input, args.calibration_size)
    variants = [("mobile_two_stage", model, config, val)]
    if not args.no_a05:
        arch, c05 = resolve("mobile_two_stage_a05")
        c05 = cfg_lib.replace(c05, input=config.input)
        variants.append(("mobile_two_stage_a05 (untrained)", arch.build(c05), c05, None))
    rows = []
    with tqdm(total=3 * len(variants), unit="step") as progress:
        for name, m, c, v in variants:
            rows.append(bench_variant(name, m, c, args, v, calib, progress))

    main_row = rows[0]
    goals = {"params <= 200k": main_row["params"] <= GOALS["params"],
             "int8 <= 300 KB": main_row["int8_kb"] <= GOALS["int8_kb"],
             "val NME <= 4.0 % (int8 TFLite)": main_row["val"]["tflite_int8"]["nme_pct"] <= GOALS["nme_pct"],
             "val NME <= 4.0 % (float)": main_row["val"]["keras"]["nme_pct"] <= GOALS["nme_pct"],
             "int8 LiteRT 1 thread <= 1.0 ms": main_row["latency_ms"]["int8"]["median"] <= GOALS["latency_ms"]}
    result = {"source": source, "val": args.val, "calibration": f"{args.calibration} (first {len(calib)} faces)",
              "runs": args.runs, "warmup": args.warmup, "threads": 1, "rows": rows, "goals_met": goals,
              "command": "python bench/mobile_two_stage.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    atomic_write_json(args.out, result)

    print(f"\n{'model':34s} {'params':>8s} {'MMACs':>7s} {'f32 KB':>7s} {'i8 KB':>6s} {'f32 ms':>7s} {'i8 ms':>6s}  "
          f"{'NME% keras/f32/i8':>20s}  {'AUC i8':>6s} {'FR% i8':>6s}")
    for r in rows:
        v = r.get("val")
        nme = (f"{v['keras']['nme_pct']:.2f}/{v['tflite_float32']['nme_pct']:.2f}/{v['tflite_int8']['nme_pct']:.2f}"
               if v else "-")
        auc = f"{v['tflite_int8']['auc@0.1']:.3f}" if v else "-"
        fr = f"{v['tflite_int8']['fr@0.1_pct']:.1f}" if v else "-"
        print(f"{r['model']:34s} {r['params']:8d} {r['macs'] / 1e6:7.1f} {r['float32_kb']:7.0f} {r['int8_kb']:6.0f} "
              f"{r['latency_ms']['float32']['median']:7.3f} {r['latency_ms']['int8']['median']:6.3f}  {nme:>20s}  "
              f"{auc:>6s} {fr:>6s}")
    print("\ngoals: " + ", ".join(f"{k}: {'met' if ok else 'NOT met'}" for k, ok in goals.items()))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
