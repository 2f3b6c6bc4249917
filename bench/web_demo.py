"""The exported model in headless Chromium (web_demo, LiteRT.js WASM/XNNPACK) vs Python LiteRT → table +
bench/results/web_demo.json.

Builds web_demo (npm install when needed + npm run build), serves it on 127.0.0.1 with the model's folder mounted,
opens one face (LFPW image_0001 on its ground-truth box) in the page, and runs the page's benchmark button code
(``warmup`` untimed + ``runs`` timed invocations, no pre/post-processing). Reports the page's stage times on the face,
the benchmark percentiles (the JSON of schemas/benchmark.schema.json, stored whole), Python LiteRT's invoke time on
the same model (1 thread) and the largest landmark difference page vs Python on the same crop.

    python bench/web_demo.py --model exports/default/mobile_two_stage_float32.tflite exports/int8/*.tflite
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
WEB = os.path.join(ROOT, "web_demo")
DEFAULT_FACE = os.path.normpath(os.path.join(ROOT, "..", "shared", "data", "lfpw", "trainset", "image_0001.jpg"))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, nargs="+",
                   help="exported .tflite files, each with its .contract.json beside it")
    p.add_argument("--face", default=DEFAULT_FACE, help="face image with a .pts beside it (default: LFPW image_0001)")
    p.add_argument("--warmup", type=int, default=10, help="untimed runs before timing (default: 10)")
    p.add_argument("--runs", type=int, default=100, help="timed runs (default: 100)")
    p.add_argument("--chromium", default=os.environ.get("TFALIGN_CHROMIUM", "/usr/bin/chromium"))
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "web_demo.json"))
    return p.parse_args(argv)


def main(argv=None) -> int:
    import importlib.util

    import cv2
    from tfalign.data import geometry
    from tfalign.data.readers import read_pts
    from tfalign.io import atomic_write_json
    from tfalign.runtime import LandmarkModel

    args = parse_args(argv)
    for path, what in [(m, "--model") for m in args.model] + [(args.face, "--face"), (args.chromium, "--chromium")]:
        if not os.path.isfile(path):
            print(f"web_demo.py: {what} {path} not found", file=sys.stderr)
            return 2
    rec = read_pts(os.path.splitext(args.face)[0] + ".pts", args.face)
    image = cv2.cvtColor(cv2.imread(args.face), cv2.COLOR_BGR2RGB)
    box = geometry.points_box(rec.points)

    if not os.path.isfile(os.path.join(WEB, "node_modules", ".package-lock.json")):
        subprocess.run(["npm", "install", "--no-audit", "--no-fund"], cwd=WEB, check=True)
    subprocess.run(["npm", "run", "build"], cwd=WEB, check=True, capture_output=True)
    spec = importlib.util.spec_from_file_location("web_demo_serve", os.path.join(WEB, "scripts", "serve.py"))
    serve = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(serve)
    rows, docs = [], {}
    print(f"{'model':40s} {'web p50':>8s} {'web p90':>8s} {'py p50':>8s} {'py p90':>8s} {'max diff px':>11s}")
    for model_path in args.model:
        model = LandmarkModel(model_path)
        name = os.path.basename(model_path)
        with tempfile.TemporaryDirectory() as tmp:
            cv2.imwrite(os.path.join(tmp, "face.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            url, stop = serve.serve_in_thread(os.path.join(WEB, "dist"),
                                              {"/models/": os.path.dirname(os.path.abspath(model_path)), "/faces/": tmp})
            try:
                box_arg = ",".join(f"{v:.4f}" for v in box)
                opts = {"url": f"{url}?model=models/{name}&image=faces/face.png&box={box_arg}", "mode": "image",
                        "out": tmp, "chromium": args.chromium,
                        "benchmark": {"warmupRuns": args.warmup, "runs": args.runs}}
                subprocess.run(["node", "scripts/e2e.mjs", json.dumps(opts)], cwd=WEB, check=True, timeout=900)
                with open(os.path.join(tmp, "result.json"), encoding="utf-8") as fh:
                    result = json.load(fh)
            finally:
                stop()
        last = result["last"]
        inp = model.contract["input"]
        crop = np.frombuffer(base64.b64decode(last["crop"]), np.uint8).reshape(inp["height"], inp["width"], 3)
        x = geometry.normalize(crop, model.spec)
        py_points = geometry.points_to_image(model.run_normalized(x), geometry.box_affine(last["box"], model.spec),
                                             model.spec)
        max_diff = float(np.abs(py_points - np.asarray(last["points"]).reshape(-1, 2)).max())
        for _ in range(args.warmup):
            model.run_normalized(x)
        samples = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            model.run_normalized(x)
            samples.append((time.perf_counter() - t0) * 1e3)
        web = result["benchmark"]["results"][0]
        row = {"model": name, "weights": model.contract.get("model", {}).get("weights", ""),
               "web_p50_ms": web["p50_ms"], "web_p90_ms": web["p90_ms"], "web_init_ms": web["init_ms"],
               "python_litert_p50_ms": float(np.percentile(samples, 50)),
               "python_litert_p90_ms": float(np.percentile(samples, 90)),
               "page_stage_ms": last["times"], "max_landmark_diff_px": max_diff}
        rows.append(row)
        docs[name] = result["benchmark"]
        print(f"{name:40s} {row['web_p50_ms']:8.2f} {row['web_p90_ms']:8.2f} {row['python_litert_p50_ms']:8.2f} "
              f"{row['python_litert_p90_ms']:8.2f} {max_diff:11.5f}   page stages (ms): "
              + ", ".join(f"{k} {v:.1f}" for k, v in last["times"].items()))
    atomic_write_json(args.out, {"command": "python bench/web_demo.py " + " ".join(argv or sys.argv[1:]),
                                 "face": args.face, "note": "2-core machine shared with other jobs: latencies are "
                                 "noisy; compare web vs Python within one run", "rows": rows,
                                 "benchmark_json": docs})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
