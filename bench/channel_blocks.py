"""Does removing output channels save time? LiteRT latency of one convolution against its output channel count.

Channel pruning (quantization.channel_pruning) assumes time falls with channels. XNNPACK, LiteRT's CPU delegate,
computes a convolution's output channels in blocks of its GEMM micro-kernel's width (``nr``: 16 float32 lanes with
AVX-512 on x86, measured here; XNNPACK's ARM kernels are 8 or 16 wide, not measured here), so a layer cut from 32 to 24 channels may run exactly as
long as before: the last block is computed whole. The kept counts are rounded to ``--channel-divisor``
(``python -m quantization.prune``, ``bench/compression.py``); this table says which divisor the CPU it runs on
rewards. Each shape is exported float32 and PTQ int8 (random weights, calibrated on random inputs) and timed with
XNNPACK, 1 thread, interleaved rounds, median.

    python bench/channel_blocks.py                        # 3x3 conv, 128x128x48 in; 1x1 conv 64x64x64 in
    python bench/channel_blocks.py --shape 3x3:64x64x96 --cout 8:64:8

Prints a table, writes ``bench/results/channel_blocks.json``.
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

DEFAULT_SHAPES = ["3x3:128x128x48", "1x1:64x64x64"]


def _parse_shape(text: str):
    try:
        k, hwc = text.split(":")
        kh, kw = (int(v) for v in k.split("x"))
        h, w, c = (int(v) for v in hwc.split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shape '{text}': expected KxK:HxWxC, e.g. 3x3:128x128x48") from None
    if kh != kw or min(kh, h, w, c) <= 0:
        raise argparse.ArgumentTypeError(f"--shape '{text}': kernel must be square and every size > 0")
    return {"name": text, "kernel": kh, "input": [h, w, c]}


def _parse_range(text: str):
    try:
        lo, hi, step = (int(v) for v in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--cout '{text}': expected LOW:HIGH:STEP, e.g. 4:64:4") from None
    if lo <= 0 or hi < lo or step <= 0:
        raise argparse.ArgumentTypeError(f"--cout '{text}': need 0 < LOW <= HIGH and STEP > 0")
    return list(range(lo, hi + 1, step))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", action="append", type=_parse_shape, default=None, metavar="KxK:HxWxC",
                   help="convolution kernel and input (repeatable; default: "
                        + ", ".join(DEFAULT_SHAPES) + ")")
    p.add_argument("--cout", type=_parse_range, default=_parse_range("4:64:4"), metavar="LOW:HIGH:STEP",
                   help="output channel counts to time (default 4:64:4)")
    p.add_argument("--rounds", type=int, default=7, help="interleaved latency rounds (default 7)")
    p.add_argument("--runs", type=int, default=10, help="invokes per model per round (default 10)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                                 "channel_blocks.json"), help="JSON results file")
    x86_amx.add_argument(p)
    args = p.parse_args(argv)
    for flag in ("rounds", "runs"):
        if getattr(args, flag) <= 0:
            p.error(f"--{flag}: must be > 0")
    args.shape = args.shape or [_parse_shape(s) for s in DEFAULT_SHAPES]
    return args


def _conv_model(kernel: int, input_shape, cout: int, seed: int):
    from tfalign._keras import keras
    keras.utils.set_random_seed(seed)
    inp = keras.Input(tuple(input_shape), batch_size=1)
    x = keras.layers.Conv2D(cout, kernel, padding="same", use_bias=False)(inp)
    x = keras.layers.BatchNormalization()(x)  # folded into the conv on export, as in the models
    return keras.Model(inp, keras.layers.ReLU()(x))


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.no_amx:
        x86_amx.deny()  # before any interpreter: XNNPACK reads the CPU's features once per process
    from tqdm import tqdm

    from mobile_export import tflite
    from mobile_export.profile.common import interleaved_ms, runtime_version, warm_interpreter
    from quantization import presets
    from quantization.calibration import representative_from
    from tfalign.training.runconfig import cpu_info

    interpreters = {}
    for shape in args.shape:
        rng = np.random.default_rng(0)
        faces = representative_from([rng.uniform(-1, 1, [4] + shape["input"]).astype(np.float32)])
        for cout in tqdm(args.cout, desc=f"export {shape['name']}", file=sys.stderr):
            model = _conv_model(shape["kernel"], shape["input"], cout, seed=cout)
            for precision, preset in (("float32", presets.for_float32()),
                                      ("int8", presets.for_int8(faces))):
                data = tflite.convert(model, preset=preset)
                interpreters[(shape["name"], cout, precision)] = warm_interpreter(data, threads=1, xnnpack=True)
    times = interleaved_ms(interpreters, args.rounds, args.runs)

    rows = []
    for shape in args.shape:
        h, w, c = shape["input"]
        for cout in args.cout:
            row = {"shape": shape["name"], "cout": cout, "macs": h * w * c * cout * shape["kernel"] ** 2}
            for precision in ("float32", "int8"):
                ms = float(np.median(times[(shape["name"], cout, precision)]))
                row[f"{precision}_ms"] = round(ms, 4)
                row[f"{precision}_gmacs"] = round(row["macs"] / ms / 1e6, 2)
            rows.append(row)
    print(f"{'shape':<16} {'cout':>4} {'MMACs':>7} {'f32 ms':>8} {'f32 GMAC/s':>10} {'int8 ms':>8} {'int8 GMAC/s':>11}")
    for r in rows:
        print(f"{r['shape']:<16} {r['cout']:>4} {r['macs'] / 1e6:>7.1f} {r['float32_ms']:>8.3f} "
              f"{r['float32_gmacs']:>10.1f} {r['int8_ms']:>8.3f} {r['int8_gmacs']:>11.1f}")
    out = {"command": "python bench/channel_blocks.py " + " ".join(sys.argv[1:] if argv is None else argv),
           "created": time.strftime("%Y-%m-%d %H:%M:%S"), "runtime": runtime_version(), "cpu": cpu_info(),
           "x86_amx": x86_amx.status(),
           "threads": 1, "kernels": "XNNPACK", "rounds": args.rounds, "runs": args.runs,
           "shapes": args.shape, "rows": rows}
    from tfalign.io import atomic_write  # creates the folder
    atomic_write(args.out, (json.dumps(out, indent=1) + "\n").encode())
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
