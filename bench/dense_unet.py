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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import research_common as rc  # noqa: E402

LITE = {"channels": 32}
SINGLE = {"input.pair": False, "coherent_weight": 0.0}


def variants():
    return [("baseline", {**LITE, **SINGLE, "topology": "hourglass", "block": "resnet", "inside": "none"}, ()),
            ("+CAB", {**LITE, **SINGLE, "topology": "sat3", "block": "cab", "inside": "none"}, ()),
            ("+deformable", {**LITE, **SINGLE, "topology": "sat3", "block": "cab", "inside": "deformable"}, ()),
            ("+coherent", {**LITE, "topology": "sat3", "block": "cab", "inside": "deformable",
                           "coherent_weight": 0.001, "input.pair": True}, ())]


def main(argv=None) -> int:
    args = rc.finish_args(rc.parser(__doc__, "dense_unet", epochs=1, steps=10, batch=8), argv)
    from tqdm import tqdm

    rows = rc.train_all(variants(), "dense_unet", args)
    if args.train_only:
        return rc.exit_code(rows)
    crops = None
    for row in tqdm(rows, desc="measure", unit="variant"):
        if "error" in row:
            continue
        arch, config, model = rc.load_run(row)
        if crops is None:
            crops = rc.crops_for(config.input, 8)
        row.update(rc.measure(arch, config, model, args, crops[0], int8=True, calib=[c[None] for c in crops]))

    print(f"Dense U-Net lite (32 channels, 2 stacks), {args.epochs} epochs x {args.steps} steps x batch "
          f"{args.batch_size}, seed {args.seed}; NME inter-ocular on {args.val}")
    rc.print_table(rows, [("variant", "variant", "{}"), ("val NME %", "val_nme_pct", "{:.2f}"),
                          ("params", "params", "{:,}"), ("f32 KB", "float32_kb", "{:.0f}"),
                          ("int8 KB", "int8_kb", "{:.0f}"),
                          ("f32 ms", lambda r: r["latency_ms_float32"]["median"], "{:.2f}"),
                          ("int8 ms", lambda r: r["latency_ms_int8"]["median"], "{:.2f}"),
                          ("train s", "train_seconds", "{:.0f}")])
    rc.write(args, "dense_unet", {"width": "lite: 32 channels (paper 256)", "rows": rows,
                                  "latency": f"LiteRT 1 thread, median of {args.runs} after {args.warmup}",
                                  "int8_calibration": "8 LFPW #train crops"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
