"""Reference implementation of the demo apps' non-UI math, and the generator of their shared test vectors.

The Android core (android_demo/core, Kotlin) and the iOS core (ios_demo/TFAlignCore, Swift) re-implement what is
here line for line; both read the vectors this file writes, so the three agree by construction:

* ``tests/golden/one_euro.json`` — one-euro filter parameters and inputs → expected outputs.
* ``tests/golden/app_cases.json`` — contract variants with face box → crop window, raw output tensors → image
  points, a small image → model input tensor, and latency samples → percentiles.

Conventions (DEVELOPERS.md): pixel centres at integer coordinates; crop side = scale × max(w, h) of the face box,
centre = box centre + (shift_x, shift_y) × side; ``origin: "edge"`` means u = (i + 0.5) / W for crop pixel i, and
``origin: "center"`` means u = i / W (0 at the first pixel's centre), so u_edge = u_center + 0.5 / W.

Regenerate after a deliberate change with ``python tests/app_reference.py --write``; tests/test_android_demo.py
fails while the committed files differ from what this file generates.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import pathlib
import sys

import numpy as np

GOLDEN = pathlib.Path(__file__).resolve().parent / "golden"
ONE_EURO_FILE = GOLDEN / "one_euro.json"
APP_CASES_FILE = GOLDEN / "app_cases.json"

# Casiez et al., "1€ Filter" (CHI 2012). Defaults follow MediaPipe's face-landmark smoothing: the derivative is
# multiplied by value_scale = 1 / object scale (mean of the landmarks' box width and height), so these numbers are
# independent of how large the face is in the frame.
ONE_EURO_DEFAULTS = {"min_cutoff": 0.05, "beta": 80.0, "d_cutoff": 1.0}


class OneEuroFilter:
    """Scalar one-euro filter.

    The derivative is taken against the previous *raw* value (the authors' C++/Java reference and MediaPipe do
    this; the paper's first pseudo-code used the previous filtered value). The first sample passes through; a
    timestamp that does not increase leaves the state untouched and returns the last output.
    """

    def __init__(self, min_cutoff=ONE_EURO_DEFAULTS["min_cutoff"], beta=ONE_EURO_DEFAULTS["beta"],
                 d_cutoff=ONE_EURO_DEFAULTS["d_cutoff"]):
        if min_cutoff <= 0 or d_cutoff <= 0 or beta < 0:
            raise ValueError(f"one-euro parameters must have min_cutoff > 0, d_cutoff > 0, beta >= 0; got "
                             f"min_cutoff={min_cutoff}, beta={beta}, d_cutoff={d_cutoff}")
        self.min_cutoff, self.beta, self.d_cutoff = float(min_cutoff), float(beta), float(d_cutoff)
        self.reset()

    def reset(self):
        self.t_prev = None
        self.x_prev_raw = 0.0
        self.x_hat = 0.0
        self.dx_hat = 0.0

    @staticmethod
    def alpha(cutoff, dt):
        tau = 1.0 / (2.0 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    def __call__(self, t, x, value_scale=1.0):
        if self.t_prev is None:
            self.t_prev, self.x_prev_raw, self.x_hat, self.dx_hat = t, x, x, 0.0
            return x
        dt = t - self.t_prev
        if dt <= 0:
            return self.x_hat
        dx = (x - self.x_prev_raw) * value_scale / dt
        self.dx_hat += self.alpha(self.d_cutoff, dt) * (dx - self.dx_hat)
        cutoff = self.min_cutoff + self.beta * abs(self.dx_hat)
        self.x_hat += self.alpha(cutoff, dt) * (x - self.x_hat)
        self.t_prev, self.x_prev_raw = t, x
        return self.x_hat


def object_scale(points):
    """MediaPipe's object scale: mean of the width and height of the points' bounding box."""
    p = np.asarray(points, np.float64).reshape(-1, 2)
    return 0.5 * ((p[:, 0].max() - p[:, 0].min()) + (p[:, 1].max() - p[:, 1].min()))


def smooth_landmarks(frames, timestamps, params):
    """One filter per coordinate, value_scale = 1 / object_scale of the raw points of the frame."""
    filters = None
    out = []
    for t, pts in zip(timestamps, frames):
        flat = np.asarray(pts, np.float64).reshape(-1)
        if filters is None:
            filters = [OneEuroFilter(**params) for _ in flat]
        s = object_scale(flat)
        vs = 1.0 / s if s > 0 else 1.0
        out.append([f(t, float(v), vs) for f, v in zip(filters, flat)])
    return out


def _one_euro_cases():
    rng = np.random.default_rng(20261121)
    cases = []

    def add(name, params, ts, xs, scales=None, note=""):
        f = OneEuroFilter(**params)
        scales = [1.0] * len(xs) if scales is None else scales
        ys = [f(float(t), float(x), float(s)) for t, x, s in zip(ts, xs, scales)]
        cases.append({"name": name, "note": note, "params": params, "timestamps_s": [float(t) for t in ts],
                      "value_scale": [float(s) for s in scales], "inputs": [float(x) for x in xs],
                      "expected": ys})

    t30 = np.arange(40) / 30.0
    add("constant", ONE_EURO_DEFAULTS, t30, [5.0] * 40, note="a constant passes through unchanged")
    add("step", {"min_cutoff": 1.0, "beta": 0.0, "d_cutoff": 1.0}, t30, [0.0] * 10 + [10.0] * 30,
        note="beta 0: a plain exponential low-pass with cutoff 1 Hz")
    noisy = np.sin(2 * np.pi * 0.5 * t30) * 20 + rng.normal(0, 1.0, t30.size) + 100
    add("noisy_sine_defaults", ONE_EURO_DEFAULTS, t30, noisy, [1 / 50.0] * t30.size,
        note="face of 50 px: value_scale 1/50")
    add("noisy_sine_fast", {"min_cutoff": 1.7, "beta": 0.3, "d_cutoff": 1.0}, t30, noisy)
    ts_irregular = np.cumsum(rng.uniform(0.01, 0.08, 30))
    add("irregular_dt", {"min_cutoff": 0.5, "beta": 2.0, "d_cutoff": 2.0}, ts_irregular,
        rng.normal(0, 3.0, 30).cumsum(), rng.uniform(0.5, 2.0, 30))
    ts_dup = [0.0, 0.033, 0.033, 0.066, 0.050, 0.1]
    add("non_increasing_timestamps", {"min_cutoff": 1.0, "beta": 0.5, "d_cutoff": 1.0}, ts_dup,
        [1.0, 2.0, 50.0, 3.0, -40.0, 4.0], note="a repeated or earlier timestamp returns the last output")

    # Landmark smoothing: 3 points, jittering face moving right.
    base = np.array([[40.0, 50.0], [60.0, 50.0], [50.0, 70.0]])
    frames, ts = [], []
    for k in range(12):
        frames.append((base + [k * 1.5, 0.0] + rng.normal(0, 0.7, base.shape)).tolist())
        ts.append(k / 30.0)
    landmark = {"name": "three_points", "params": ONE_EURO_DEFAULTS, "timestamps_s": ts, "frames": frames,
                "expected": smooth_landmarks(frames, ts, ONE_EURO_DEFAULTS)}
    return {
        "description": "One-euro filter test vectors (Casiez et al. 2012; derivative against the previous raw "
                       "value and scaled by value_scale as in MediaPipe). Generated by tests/app_reference.py; "
                       "checked by the Python, Kotlin (android_demo/core) and Swift (ios_demo/TFAlignCore) "
                       "implementations.",
        "defaults": ONE_EURO_DEFAULTS,
        "tolerance": 1e-9,
        "cases": cases,
        "landmark_cases": [landmark],
    }


# --- contract math ------------------------------------------------------------------------------------------------

def _per_channel(value, channels, field):
    v = np.atleast_1d(np.asarray(value, np.float64))
    if v.size == 1:
        return np.repeat(v, channels)
    if v.size != channels:
        raise ValueError(f"{field}: {v.size} values for {channels} channels")
    return v


def crop_window(box, crop):
    """Face box (x, y, w, h) → crop window (cx, cy, side) in image pixels."""
    x, y, w, h = box
    side = crop["scale"] * max(w, h)
    return (x + 0.5 * w + crop.get("shift_x", 0.0) * side, y + 0.5 * h + crop.get("shift_y", 0.0) * side, side)


def crop_to_image(u, v, window, out_w, out_h, origin):
    """Normalised crop coordinates → image pixel coordinates."""
    if origin == "center":
        u, v = u + 0.5 / out_w, v + 0.5 / out_h
    cx, cy, side = window
    return cx + (u - 0.5) * side, cy + (v - 0.5) * side


def decode(raw, contract, window):
    out = next(o for o in contract["outputs"] if o["kind"] == "landmarks")
    raw = np.asarray(raw, np.float64).reshape(-1)
    if out["dtype"] in ("int8", "uint8"):
        raw = (raw - out["zero_point"]) * out["scale"]
    uv = raw.reshape(-1, 2)
    x, y = crop_to_image(uv[:, 0], uv[:, 1], window, contract["input"]["width"], contract["input"]["height"],
                         out["origin"])
    return np.stack([x, y], -1)


def _sample(img, x, y, interpolation):
    """Sample image [H, W, C] (0..255) at (x, y), pixel centres at integers, zero outside (cv2 BORDER_CONSTANT)."""
    h, w, _ = img.shape

    def px(ix, iy):
        if 0 <= ix < w and 0 <= iy < h:
            return img[iy, ix].astype(np.float64)
        return np.zeros(img.shape[2])

    if interpolation == "nearest":
        return px(int(math.floor(x + 0.5)), int(math.floor(y + 0.5)))
    x0, y0 = int(math.floor(x)), int(math.floor(y))
    fx, fy = x - x0, y - y0
    return ((1 - fx) * (1 - fy) * px(x0, y0) + fx * (1 - fy) * px(x0 + 1, y0)
            + (1 - fx) * fy * px(x0, y0 + 1) + fx * fy * px(x0 + 1, y0 + 1))


def preprocess(image_rgb, contract, window):
    """RGB uint8 image [H, W, 3] → model input [height, width, channels] (float32 values or quantized ints)."""
    inp = contract["input"]
    out_h, out_w, ch = inp["height"], inp["width"], inp["channels"]
    cx, cy, side = window
    interp = contract["crop"].get("interpolation", "bilinear")
    out = np.zeros((out_h, out_w, ch))
    for i in range(out_h):
        for j in range(out_w):
            x = cx + (j + 0.5 - out_w / 2) * side / out_w
            y = cy + (i + 0.5 - out_h / 2) * side / out_h
            rgb = _sample(image_rgb, x, y, interp)
            out[i, j] = [0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]] if inp["color"] == "GRAY" else rgb
    x = (out - _per_channel(inp["mean"], ch, "mean")) / _per_channel(inp["std"], ch, "std")
    if inp["dtype"] in ("int8", "uint8"):
        lo, hi = (-128, 127) if inp["dtype"] == "int8" else (0, 255)
        return np.clip(np.rint(x / inp["scale"]) + inp["zero_point"], lo, hi)
    return x


def percentile(values, q):
    """numpy's default (linear interpolation between closest ranks): what the profiler reports."""
    return float(np.percentile(np.asarray(values, np.float64), q))


BASE_CONTRACT = {
    "format_version": 1,
    "scheme": {"name": "mtfl_5", "num_points": 5,
               "point_names": ["left_eye", "right_eye", "nose", "left_mouth", "right_mouth"]},
    "input": {"name": "image", "index": 0, "height": 6, "width": 6, "channels": 3, "color": "RGB",
              "dtype": "float32", "mean": [127.5, 127.5, 127.5], "std": [127.5, 127.5, 127.5]},
    "crop": {"scale": 1.25, "shift_x": 0.0, "shift_y": 0.05, "interpolation": "bilinear"},
    "outputs": [{"kind": "landmarks", "index": 0, "name": "landmarks", "shape": [1, 5, 2],
                 "layout": "xy_normalized", "origin": "edge", "dtype": "float32"}],
}


def _variant(name, **patch):
    c = copy.deepcopy(BASE_CONTRACT)
    for path, value in patch.items():
        node = c
        keys = path.split("__")
        for k in keys[:-1]:
            node = node[int(k)] if isinstance(node, list) else node[k]
        node[keys[-1]] = value
    return name, c


def _app_cases():
    rng = np.random.default_rng(7)
    variants = [
        _variant("float_rgb_edge"),
        _variant("float_rgb_center_shifted", crop__shift_x=-0.1, crop__shift_y=0.2,
                 outputs__0__origin="center", input__mean=[120.0, 110.0, 100.0], input__std=[60.0, 58.0, 57.0]),
        _variant("int8_io", input__dtype="int8", input__scale=0.0078125, input__zero_point=0,
                 outputs__0__dtype="int8", outputs__0__scale=0.00390625, outputs__0__zero_point=-128,
                 outputs__0__shape=[1, 10]),
        _variant("uint8_gray_nearest", input__dtype="uint8", input__channels=1, input__color="GRAY",
                 input__mean=0.0, input__std=1.0, input__scale=1.0, input__zero_point=0,
                 crop__interpolation="nearest", outputs__0__dtype="uint8", outputs__0__scale=0.005,
                 outputs__0__zero_point=10, outputs__0__origin="center"),
    ]
    image = rng.integers(0, 256, size=(9, 11, 3)).astype(np.uint8)
    boxes = [[3.0, 2.0, 4.0, 5.0], [-2.5, 4.25, 6.0, 3.0]]
    cases = []
    for name, contract in variants:
        out = contract["outputs"][0]
        n = contract["scheme"]["num_points"]
        if out["dtype"] == "float32":
            raw = rng.uniform(-0.1, 1.1, 2 * n).round(6)
        else:
            lo, hi = (-128, 127) if out["dtype"] == "int8" else (0, 255)
            raw = rng.integers(lo, hi + 1, 2 * n)
        for b, box in enumerate(boxes):
            window = crop_window(box, contract["crop"])
            cases.append({
                "name": f"{name}/box{b}", "contract": contract, "box": box, "expected_window": list(window),
                "raw_output": raw.tolist(), "expected_points": decode(raw, contract, window).tolist(),
                "expected_input": preprocess(image, contract, window).reshape(-1).tolist(),
            })
    samples = rng.gamma(4.0, 2.0, 37).round(4).tolist()
    stats = {"samples_ms": samples,
             "expected": {"p50_ms": percentile(samples, 50), "p90_ms": percentile(samples, 90),
                          "p95_ms": percentile(samples, 95), "p99_ms": percentile(samples, 99),
                          "mean_ms": float(np.mean(samples)), "min_ms": float(np.min(samples)),
                          "max_ms": float(np.max(samples))}}
    return {
        "description": "Contract math test vectors for the demo apps (crop window, preprocessing, output decoding, "
                       "latency percentiles). Generated by tests/app_reference.py.",
        "image": {"height": image.shape[0], "width": image.shape[1], "channels": 3,
                  "rgb": image.reshape(-1).tolist()},
        "tolerance": {"window": 1e-9, "points": 1e-6, "input_float": 1e-4, "input_quantized": 0, "stats": 1e-9},
        "cases": cases,
        "stats": stats,
    }


def generate() -> dict:
    return {ONE_EURO_FILE: _one_euro_cases(), APP_CASES_FILE: _app_cases()}


def dumps(obj, indent="") -> str:
    """JSON with lists of numbers on one line, so the golden files stay readable and diffable."""
    if isinstance(obj, dict):
        inner = indent + " "
        items = [f"{inner}{json.dumps(k)}: {dumps(v, inner).strip()}" for k, v in obj.items()]
        text = "{\n" + ",\n".join(items) + "\n" + indent + "}" if items else "{}"
    elif isinstance(obj, list) and any(isinstance(v, (dict, list)) for v in obj):
        inner = indent + " "
        text = "[\n" + ",\n".join(inner + dumps(v, inner).strip() for v in obj) + "\n" + indent + "]"
    else:
        text = json.dumps(obj)
    return text + ("\n" if indent == "" else "")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite the golden files (atomically)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(GOLDEN.parents[1]))
    from tfalign.io import atomic_write
    for path, obj in generate().items():
        if args.write:
            atomic_write(str(path), dumps(obj))
            print(f"wrote {path}")
        else:
            same = path.exists() and path.read_text() == dumps(obj)
            print(f"{path}: {'up to date' if same else 'DIFFERS (run with --write)'}")


if __name__ == "__main__":
    main()
