"""Stacked dense U-Nets with dual transformers (issue 12) at lite width on this CPU: Table 1's ablation steps.

Variants, trained side by side through ``python -m tfalign.train`` with the same seed, batch and step budget, all at
the ``dense_unet_lite`` width (32 channels instead of 256), two stacks:

* ``baseline``: Hourglass topology, ResNet blocks, no inside transformer, no coherent loss (Table 1's first row);
* ``+CAB``: the SAT (III) topology with Channel Aggregation Blocks;
* ``+deformable``: + the deformable convolution after each U-Net (inside transformer);
* ``+coherent``: + the coherent loss on an image and its transformed twin, λ = 0.001 (outside transformer: the
  full model of the paper).

The first three train on single views (``input.pair`` off, so their steps cost one forward pass); the last one on
pairs, as the paper does. Then: validation NME (inter-ocular, 68 points, the fixed LFPW #val split), params, float32
and full-int8 .tflite size, host LiteRT latency (1 thread). Prints a table, writes bench/results/dense_unet.json.

    .venv/bin/python bench/dense_unet.py             # the committed budget (see --help for the defaults)
    .venv/bin/python bench/dense_unet.py --quick     # smoke run, numbers meaningless

At this budget (minutes of a shared 2-core CPU) the networks are far from converged: the table shows what a short
run gives, not the paper's Table 1.
"""
from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import research_common as rc  # noqa: E402

LITE = {"channels": 32,
        # Nadam 2.5e-4 is the paper's rate for ~100k updates; in a few hundred the heat maps stay flat (baseline,
        # 100 steps: 87.7 % NME at 2.5e-4, 60.2 % at 1e-3).
        "train.learning_rate": 1e-3}
SINGLE = {"input.pair": False, "coherent_weight": 0.0}


# int8 parity of the in-graph decode, on the deformable model: the same inference graph as the full model (the
# coherent loss changes only the training), and the first of the two to finish training here.
PARITY = ("+deformable",)
SAME_GRAPH_AS_PARITY = ("+coherent",)


def variants():
    return [("baseline", {**LITE, **SINGLE, "topology": "hourglass", "block": "resnet", "inside": "none"}, ()),
            ("+CAB", {**LITE, **SINGLE, "topology": "sat3", "block": "cab", "inside": "none"}, ()),
            ("+deformable", {**LITE, **SINGLE, "topology": "sat3", "block": "cab", "inside": "deformable"}, ()),
            ("+coherent", {**LITE, "topology": "sat3", "block": "cab", "inside": "deformable",
                           "coherent_weight": 0.001, "input.pair": True}, ())]


def int8_parity(arch, config, model, calib, records, args, crop) -> dict:
    """Full-int8 .tflite (heatmap decode in the graph) vs Keras on the validation faces: NME of both and the point
    gap in crop pixels; the same with the decode layer kept float (the package's float-keep policy)."""
    from mobile_export import tflite as tfl
    from mobile_two_stage import latency_ms

    from tfalign.training import evaluation

    true, mask = evaluation.targets(records, config.input.schemes)
    scheme = config.input.schemes[0]
    raw = {}

    def run(name, predict):
        """NME (image pixels, the trainer's metric) and the crop-normalised outputs, batch by batch in order."""
        def capture(x):
            y = np.asarray(predict(x))
            raw.setdefault(name, []).append(y)
            return y
        pred = evaluation.predict_keras(capture, records, config.input, 16)
        res = evaluation.score(pred, true, mask, config.input.schemes)["summary"][scheme]["inter_ocular"]
        return 100 * res["nme"], np.concatenate(raw[name])

    inference = arch.inference_model(config, model)
    keras_nme, keras_pts = run("keras", lambda x: inference(x, training=False))
    out = {"faces": len(records), "keras_nme_pct": keras_nme, "calibration": f"{len(calib)} LFPW #train crops"}
    side = config.input.width
    for name, keep in (("int8", False), ("int8_float_decode", True)):
        decode = inference.get_layer("decode")
        decode.keep_float_in_int8 = keep
        model_bytes = tfl.convert(inference, "int8", representative=lambda: iter(calib))
        runner = tfl.Runner(model_bytes)
        nme, pts = run(name, lambda x: runner.batch(np.asarray(x)))
        gap = np.linalg.norm((pts - keras_pts) * side, axis=-1)
        out[name] = {"nme_pct": nme, "output_dtype": np.dtype(runner.output["dtype"]).name,
                     "gap_crop_px_median": float(np.median(gap)), "gap_crop_px_p90": float(np.percentile(gap, 90)),
                     "kb": round(len(model_bytes) / 1024, 1),
                     "latency_ms": latency_ms(model_bytes, crop, args.runs, args.warmup)}
    del inference.get_layer("decode").keep_float_in_int8
    return out


def main(argv=None) -> int:
    args = rc.finish_args(rc.parser(__doc__, "dense_unet", epochs=1, steps=10, batch=8), argv)
    rows = rc.train_all(variants(), "dense_unet", args)
    if args.train_only:
        return rc.exit_code(rows)
    for row, arch, config, model, crops in rc.trained_models(rows, 8):
        calib = [c[None] for c in crops]
        if row["variant"] not in PARITY:
            # +coherent has +deformable's inference graph (the loss is all that differs): int8 size and latency
            # are measured once, on the parity row (a conversion of the deformable model takes minutes here).
            int8 = row["variant"] not in SAME_GRAPH_AS_PARITY
            row.update(rc.measure(arch, config, model, args, crops[0], int8=int8, calib=calib))
            continue
        # One int8 conversion serves the size/latency columns and the parity check (each takes minutes here).
        from tfalign.data.spec import load_records
        row.update(rc.measure(arch, config, model, args, crops[0]))
        try:
            p = row["int8_parity"] = int8_parity(arch, config, model, calib, load_records(args.val), args, crops[0])
            row["int8_kb"], row["latency_ms_int8"] = p["int8"]["kb"], p["int8"]["latency_ms"]
        except Exception as exc:  # a failed int8 conversion is a result to report, not the end of the bench
            row["int8_parity"] = {"error": f"{type(exc).__name__}: {exc}"}

    rc.time_deferred(args)  # every model's latency, interleaved: the same load for all rows
    print(f"Dense U-Net lite (32 channels, 2 stacks), {args.epochs} epochs x {args.steps} steps x batch "
          f"{args.batch_size}, seed {args.seed}; NME inter-ocular on {args.val}")
    rc.print_table(rows, [("variant", "variant", "{}"), ("val NME %", "val_nme_pct", "{:.2f}"),
                          ("params", "params", "{:,}"), ("f32 KB", "float32_kb", "{:.0f}"),
                          ("int8 KB", "int8_kb", "{:.0f}"),
                          ("f32 ms", lambda r: r["latency_ms_float32"]["median"], "{:.2f}"),
                          ("int8 ms", lambda r: r["latency_ms_int8"]["median"], "{:.2f}"),
                          ("train s", "train_seconds", "{:.0f}")])
    for r in rows:
        if "int8_parity" in r and "error" not in r["int8_parity"]:
            p = r["int8_parity"]
            print(f"int8 parity of {r['variant']} on {p['faces']} val faces: Keras NME {p['keras_nme_pct']:.2f} %, "
                  + ", ".join(f"{k} {p[k]['nme_pct']:.2f} % (gap median {p[k]['gap_crop_px_median']:.2f} crop px)"
                              for k in ("int8", "int8_float_decode")))
    rc.write(args, "dense_unet", {"width": "lite: 32 channels (paper 256)", "rows": rows,
                                  "latency": f"LiteRT 1 thread, median of {args.runs} after {args.warmup}, float32 models interleaved in rounds",
                                  "int8_calibration": "8 LFPW #train crops"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
