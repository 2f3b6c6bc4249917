"""Does the Android app core compute what tfalign.runtime computes, on real exported models and faces?

For every ``.tflite`` given (default: everything under exports/), on synthetic faces (tfalign.data.synthetic,
box = tight box of the points, as the contract defines it):

* Python: ``tfalign.runtime.LandmarkModel`` preprocesses (OpenCV crop), invokes LiteRT, decodes → image points;
  the raw output tensor is kept.
* App core (android_demo/core, Kotlin, through its ``CliKt`` request runner): the same contract, image and box give
  the crop window and the model input; the same raw output gives image points.

Printed and written to bench/results/app_core_parity.json: the largest input difference (in 0-255 pixel levels, or
quantization steps for integer inputs), the share of input values that differ at all, and the largest point
difference in pixels. Inputs may differ by one pixel level where OpenCV's internal rounding differs from exact
bilinear weights; with an int8 input whose steps fall on half levels (scale 1/127.5, zero point -1) a one-level
difference can round to two steps. The iOS core runs the same
math (checked against the same golden vectors on macOS). Needs the JVM tools of android_demo/core/run_tests.sh.

    .venv/bin/python bench/app_core_parity.py [MODEL.tflite ...] [--faces N]
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CORE = REPO / "android_demo" / "core"
BUILD = CORE / "build" / "kotlinc"


def _app_core(request: dict, tmp: pathlib.Path) -> dict:
    path = tmp / "request.json"
    path.write_text(json.dumps(request))
    cp = f"{BUILD / 'main'}:/usr/share/java/kotlin-stdlib.jar"
    proc = subprocess.run(["java", "-cp", cp, "org.tfalign.core.CliKt", str(path)], capture_output=True, text=True,
                          timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"app core refused the request: {proc.stderr.strip()}")
    return json.loads(proc.stdout)


def measure(model_path: pathlib.Path, faces: int, tmp: pathlib.Path) -> dict:
    from tfalign.data import geometry, synthetic
    from tfalign.runtime import LandmarkModel, landmark_output

    model = LandmarkModel(str(model_path))
    contract, inp = model.contract, model.contract["input"]
    out_detail = model.interpreter.get_output_details()[landmark_output(contract).get("index", 0)]
    step = inp["scale"] if inp["dtype"] in ("int8", "uint8") else 1.0 / inp["std"]  # one input unit, in levels
    worst_input = worst_points = worst_window = 0.0
    differing = total = 0
    scheme = contract["scheme"]["name"].split("+")[0]
    for rec in synthetic.make_records(faces, scheme=scheme, seed=11, size=160):
        image = rec.image
        box = geometry.points_box(rec.points)
        x, _ = model.preprocess(image, box)
        points = model.predict(image, box)
        raw = model.interpreter.get_tensor(out_detail["index"]).reshape(-1)
        got = _app_core({"contract": contract, "box": list(box), "raw_output": raw.astype(np.float64).tolist(),
                         "image": {"width": image.shape[1], "height": image.shape[0],
                                   "rgb": image.reshape(-1).astype(int).tolist()}}, tmp)
        theirs = np.asarray(x, np.float64).reshape(-1)
        if inp["dtype"] in ("int8", "uint8"):
            info = np.iinfo(inp["dtype"])
            theirs = np.clip(np.round(np.asarray(x, np.float32) / np.float32(inp["scale"])) + inp["zero_point"],
                             info.min, info.max).reshape(-1)
            diff = np.abs(np.asarray(got["input"]) - theirs)
        else:
            diff = np.abs(np.asarray(got["input"]) - theirs) / step
        worst_input = max(worst_input, float(diff.max()))
        differing += int((diff > 1e-3).sum())
        total += diff.size
        worst_points = max(worst_points, float(np.abs(np.asarray(got["points"]) - points.reshape(-1)).max()))
        worst_window = max(worst_window, float(np.abs(np.asarray(got["window"]) -
                                                      np.asarray(geometry.square_crop(
                                                          box, contract["crop"]["scale"],
                                                          (contract["crop"]["shift_x"], contract["crop"]["shift_y"]))
                                                      )).max()))
    return {"model": model_path.name, "input_dtype": inp["dtype"], "faces": faces,
            "max_input_diff_levels": worst_input, "input_values_differing": differing / total,
            "max_point_diff_px": worst_points,
            "max_window_diff_px": worst_window}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", type=pathlib.Path,
                    help="exported .tflite files with their .contract.json (default: every .tflite under exports/)")
    ap.add_argument("--faces", type=int, default=8, help="synthetic faces per model (default 8)")
    args = ap.parse_args(argv)
    models = args.models or sorted((REPO / "exports").rglob("*.tflite"))
    if not models:
        print("app_core_parity.py: no models; run `make demo` or pass MODEL.tflite", file=sys.stderr)
        return 2
    # Build the core (cached) through the same script the tests use.
    build = subprocess.run(["bash", str(CORE / "run_tests.sh")], capture_output=True, text=True,
                           env=dict(os.environ), timeout=900)
    if build.returncode != 0:
        print(f"app_core_parity.py: android_demo/core/run_tests.sh failed:\n{build.stdout[-2000:]}{build.stderr[-2000:]}",
              file=sys.stderr)
        return 2
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for m in models:
            rows.append(measure(m, args.faces, pathlib.Path(tmp)))
    print(f"{'model':36s} {'input':7s} {'faces':>5s} {'max Δinput':>10s} {'% inputs ≠':>10s} {'max Δpoints px':>14s} "
          f"{'max Δwindow px':>14s}")
    for r in rows:
        print(f"{r['model']:36s} {r['input_dtype']:7s} {r['faces']:5d} {r['max_input_diff_levels']:10.3g} "
              f"{100 * r['input_values_differing']:10.3f} {r['max_point_diff_px']:14.3g} {r['max_window_diff_px']:14.3g}")
    from tfalign.io import atomic_write_json
    out = REPO / "bench" / "results" / "app_core_parity.json"
    used = sys.argv[1:] if argv is None else list(argv)
    atomic_write_json(str(out), {"command": "python bench/app_core_parity.py " + " ".join(map(str, used)),
                                 "results": rows})
    print(f"wrote {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
