"""Pose-Tree-MoE (issue 13) at lite sizes on this CPU: Table 1's variants, top-k speed, int8/CoreML export.

Variants, trained side by side through ``python -m tfalign.train`` with the same seed, batch and step budget, all at
the ``pose_tree_moe_lite`` sizes (2 cascade stages instead of 4, L' = 16 expert regressors of 32 hidden units
instead of 64 × 128; 150×150 gray input, 32×32 patches):

* ``Baseline``: one representation CNN (20-40-80-160-30 filters) + one FC regressor with as many hidden units as
  all experts together (16 × 32 = 512);
* ``MoE``: one representation CNN + 16 expert regressors, plain average;
* ``Softmax-MoE``: the same with a softmax gate;
* ``Tree-MoE``: the same with a depth-4 neural tree gate;
* ``Pose-Tree-MoE``: 8 expert CNNs (7-14-28-56-30) gated on the head pose by a depth-3 tree + Tree-MoE regression.

The head-pose labels of the LFPW faces come from ``tfalign.data.pose.estimate_pose`` (solvePnP against the 3D mean
face). Then: validation NME (inter-ocular, 68 points, fixed LFPW #val split), params, float32 .tflite size, host
LiteRT latency (1 thread) with all experts and with the top-k experts (k = 4, 1; NME too), and the Pose-Tree-MoE
run exported to int8 TFLite and CoreML through ``python -m tfalign.export``. Prints a table, writes
bench/results/pose_tree_moe.json.

    .venv/bin/python bench/pose_tree_moe.py          # the committed budget (see --help for the defaults)
    .venv/bin/python bench/pose_tree_moe.py --quick  # smoke run, numbers meaningless

At this budget (minutes of a shared 2-core CPU) the networks are far from converged: the table shows what a short
run gives, not the paper's Table 1.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import research_common as rc  # noqa: E402

LITE = {"num_stages": 2, "regression_experts": 16, "regression_hidden": 32}
SINGLE_CNN = {"representation_experts": 1, "expert_filters": [20, 40, 80, 160, 30]}
TOP_K = (4, 1)


def variants():
    return [("Baseline", {**LITE, **SINGLE_CNN, "regression_experts": 1, "regression_hidden": 512,
                          "regression_gate": "average"}, ()),
            ("MoE", {**LITE, **SINGLE_CNN, "regression_gate": "average"}, ()),
            ("Softmax-MoE", {**LITE, **SINGLE_CNN, "regression_gate": "softmax"}, ()),
            ("Tree-MoE", {**LITE, **SINGLE_CNN, "regression_gate": "tree"}, ()),
            ("Pose-Tree-MoE", dict(LITE), ())]


def val_nme(model, config, records) -> float:
    from tfalign.training import evaluation

    pred = evaluation.predict_keras(evaluation.landmark_fn(model), records, config.input, 16)
    res = evaluation.score(pred, *evaluation.targets(records, config.input.schemes), config.input.schemes)
    return 100 * res["summary"][config.input.schemes[0]]["inter_ocular"]["nme"]


def main(argv=None) -> int:
    args = rc.finish_args(rc.parser(__doc__, "pose_tree_moe", epochs=2, steps=15, batch=8), argv)
    from tfalign.data.spec import load_records

    rows = rc.train_all(variants(), "pose_tree_moe", args)
    if args.train_only:
        return rc.exit_code(rows)
    val = load_records(args.val)
    for row, arch, config, model, crops in rc.trained_models(rows):
        crop = crops[0]
        row.update(rc.measure(arch, config, model, args, crop))
        if config.regression_experts > max(TOP_K):
            row["top_k"] = []
            for k in TOP_K:
                a, c, m = rc.load_run(row, top_k=k)
                lat = rc.measure(a, c, m, args, crop)
                row["top_k"].append({"k": k, "val_nme_pct": val_nme(m, c, val),
                                     "latency_ms_float32": lat["latency_ms_float32"], "float32_kb": lat["float32_kb"]})
    rc.time_deferred(args)  # every model's latency, interleaved: the same load for all rows
    main_row = next((r for r in rows if r["variant"] == "Pose-Tree-MoE" and "error" not in r), None)
    exported = rc.export_run(main_row, args) if main_row else None

    print(f"Pose-Tree-MoE lite (2 stages, 16 regressors x 32), {args.epochs} epochs x {args.steps} steps x batch "
          f"{args.batch_size}, seed {args.seed}; NME inter-ocular on {args.val}")
    k_cols = [(f"top{k} NME", lambda r, i=i: r["top_k"][i]["val_nme_pct"], "{:.2f}") for i, k in enumerate(TOP_K)]
    k_ms = [(f"top{k} ms", lambda r, i=i: r["top_k"][i]["latency_ms_float32"]["median"], "{:.2f}")
            for i, k in enumerate(TOP_K)]
    rc.print_table(rows, [("variant", "variant", "{}"), ("val NME %", "val_nme_pct", "{:.2f}"),
                          ("params", "params", "{:,}"), ("f32 KB", "float32_kb", "{:.0f}"),
                          ("all ms", lambda r: r["latency_ms_float32"]["median"], "{:.2f}"), *k_ms, *k_cols,
                          ("train s", "train_seconds", "{:.0f}")])
    if exported:
        print(f"export CLI (int8 TFLite + CoreML): exit {exported['exit_code']}, files {exported['files']}"
              + (f", error: {exported['error']}" if "error" in exported else ""))
    rc.write(args, "pose_tree_moe", {"sizes": "lite: 2 stages, 16 expert regressors x 32 hidden (paper 4, 64 x 128)",
                                     "rows": rows, "export_cli": exported,
                                     "latency": f"LiteRT 1 thread, float32, median of {args.runs} after "
                                                f"{args.warmup}, all models interleaved in rounds"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
