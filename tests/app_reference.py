"""Reference implementation of the demo apps' non-UI math, and the generator of their shared test vectors.

The Android core (android_demo/core, Kotlin) and the iOS core (ios_demo/TFAlignCore, Swift) re-implement what is
here line for line; both read the vectors this file writes, so the three agree by construction:

* ``tests/golden/one_euro.json`` — one-euro filter parameters and inputs → expected outputs.
* ``tests/golden/app_cases.json`` — contract variants with face box → crop window, raw output tensors → image
  points, a small image → model input tensor, and latency samples → percentiles.

Conventions (DEVELOPERS.md, schemas/contract.schema.json): pixel centres at integer coordinates; crop side =
scale × max(w, h) of the face box, centre = box centre + (shift_x, shift_y) × side; ``origin: "edge"`` means
u = (i + 0.5) / W for crop pixel i, ``origin: "center"`` means 0 at the first pixel's centre, u_edge = u_center + 0.5 / W
(as tfalign.runtime decodes it).

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
import types

import numpy as np

GOLDEN = pathlib.Path(__file__).resolve().parent / "golden"
sys.path.insert(0, str(GOLDEN.parents[1]))  # run as a script from anywhere: the package is in the repo root
ONE_EURO_FILE = GOLDEN / "one_euro.json"
APP_CASES_FILE = GOLDEN / "app_cases.json"
# The export's golden landmarks (mobile_export/golden.py): a model-input crop PNG, a box whose contract crop is that
# PNG, per-mode input/output contract blocks and expected normalised points.
EXPORT_GOLDEN_FILE = GOLDEN / "landmarks_mobile_two_stage.json"

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
# The crop window, normalisation, quantization and decoding are the Python package's own functions
# (tfalign.data.geometry, tfalign.runtime), so the vectors are what the package does. Only the resampling and the
# gray conversion are re-implemented in plain arithmetic, as the apps do them: OpenCV's warpAffine and RGB2GRAY
# round internally and differ from them by at most 1 level on a fraction of a percent of pixels
# (tests/test_android_demo.py checks that bound).

def _spec(contract):
    from tfalign.runtime import contract_spec
    return contract_spec(contract)


def crop_window(box, contract):
    """Face box (x, y, w, h) → crop window (cx, cy, side) in image pixels."""
    from tfalign.data import geometry
    spec = _spec(contract)
    return geometry.square_crop(box, spec.crop_scale, (spec.shift_x, spec.shift_y))


def decode(raw, contract, window):
    """Raw landmark tensor values → image pixel points [N, 2], the way tfalign.runtime.LandmarkModel.predict does."""
    from tfalign.data import geometry
    from tfalign.runtime import dequantize_landmarks, landmark_output
    out = landmark_output(contract)
    spec = _spec(contract)
    points = dequantize_landmarks(np.asarray(raw, _NP[out["dtype"]]).reshape(out["shape"]), out)
    if out["origin"] == "center":
        points = points + 0.5 / np.array([spec.width, spec.height], np.float32)
    affine = geometry.crop_affine(window[:2], window[2], spec.height, spec.width)
    return geometry.points_to_image(points, affine, spec)


_NP = {"float32": np.float32, "float16": np.float16, "int8": np.int8, "uint8": np.uint8}


def sample_crop(image_rgb, contract, window):
    """uint8 RGB crop [height, width, 3]: exact bilinear weights, pixel centres at integers, ``crop.border`` outside
    the image, rounded half to even like OpenCV's saturate_cast."""
    inp, crop = contract["input"], contract["crop"]
    out_h, out_w = inp["height"], inp["width"]
    cx, cy, side = window
    border = float(crop.get("border", 0.0))
    h, w, _ = image_rgb.shape
    img = image_rgb.astype(np.float64)
    out = np.zeros((out_h, out_w, 3))
    for i in range(out_h):
        y = cy + (i + 0.5 - out_h / 2) * side / out_h
        for j in range(out_w):
            x = cx + (j + 0.5 - out_w / 2) * side / out_w
            x0, y0 = math.floor(x), math.floor(y)
            fx, fy = x - x0, y - y0
            acc = np.zeros(3)
            for dx, dy, wt in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy),
                               (1, 1, fx * fy)):
                ix, iy = x0 + dx, y0 + dy
                acc += wt * (img[iy, ix] if 0 <= ix < w and 0 <= iy < h else border)
            out[i, j] = acc
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def gray(crop_rgb):
    """BT.601 luma rounded half to even. OpenCV's RGB2GRAY uses fixed-point weights and differs by 1 level on a
    fraction of a percent of pixels; the apps use this exact formula."""
    c = crop_rgb.astype(np.float64)
    return np.rint(0.299 * c[..., 0] + 0.587 * c[..., 1] + 0.114 * c[..., 2]).astype(np.uint8)[..., None]


def preprocess(image_rgb, contract, window):
    """RGB uint8 image → model input values [height, width, channels]: floats, or the integers to store."""
    from tfalign.data import geometry
    inp = contract["input"]
    crop = sample_crop(image_rgb, contract, window)
    if inp["color"] == "GRAY":
        crop = gray(crop)
    if inp.get("normalization", "client") == "model":  # CoreML image input: raw pixels, the model normalises
        return crop.astype(np.float64)
    # channels=3 tells geometry.normalize not to convert again: the crop is already in the model's colour.
    x = geometry.normalize(crop, types.SimpleNamespace(channels=3, mean=inp["mean"], std=inp["std"]))
    if inp["dtype"] in ("int8", "uint8"):
        info = np.iinfo(_NP[inp["dtype"]])
        return np.clip(np.round(x / np.float32(inp["scale"])) + inp["zero_point"], info.min, info.max
                       ).astype(np.float64)
    if inp["dtype"] == "float16":
        return x.astype(np.float16).astype(np.float64)
    return x.astype(np.float64)


def percentile(values, q):
    """numpy's default (linear interpolation between closest ranks): what the profiler reports."""
    return float(np.percentile(np.asarray(values, np.float64), q))


BASE_CONTRACT = {
    "format_version": "1.0",
    "scheme": {"name": "mtfl_5", "num_points": 5,
               "point_names": ["left_eye", "right_eye", "nose", "left_mouth", "right_mouth"]},
    "input": {"name": "image", "index": 0, "shape": [1, 6, 6, 3], "height": 6, "width": 6, "channels": 3,
              "color": "RGB", "dtype": "float32", "mean": 127.5, "std": 127.5, "normalization": "client"},
    "crop": {"box": "landmarks_tight", "scale": 1.25, "shift_x": 0.0, "shift_y": 0.05, "interpolation": "bilinear",
             "border": 0.0},
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
    from tfalign.runtime import validate_contract
    rng = np.random.default_rng(7)
    variants = [
        _variant("float_rgb_edge"),
        _variant("float_rgb_center_shifted", crop__shift_x=-0.1, crop__shift_y=0.2, crop__border=40.0,
                 outputs__0__origin="center", input__mean=120.0, input__std=58.0),
        _variant("int8_io", input__dtype="int8", input__scale=0.0078125, input__zero_point=0,
                 outputs__0__dtype="int8", outputs__0__scale=0.00390625, outputs__0__zero_point=-128),
        _variant("uint8_gray_center", input__dtype="uint8", input__channels=1, input__color="GRAY",
                 input__shape=[1, 6, 6, 1], input__mean=0.0, input__std=1.0, input__scale=1.0,
                 input__zero_point=0, outputs__0__dtype="uint8", outputs__0__scale=0.005,
                 outputs__0__zero_point=10, outputs__0__origin="center"),
        _variant("float16_input", input__dtype="float16"),
        _variant("coreml_image_input", input__dtype="uint8", input__normalization="model", input__mean=127.5,
                 input__std=127.5),
    ]
    image = rng.integers(0, 256, size=(9, 11, 3)).astype(np.uint8)
    boxes = [[3.0, 2.0, 4.0, 5.0], [-2.5, 4.25, 6.0, 3.0]]
    cases = []
    for name, contract in variants:
        validate_contract(contract, f"app case {name}")
        out = contract["outputs"][0]
        n = contract["scheme"]["num_points"]
        if out["dtype"].startswith("float"):
            raw = rng.uniform(-0.1, 1.1, 2 * n).astype(_NP[out["dtype"]]).astype(np.float64)
        else:
            info = np.iinfo(_NP[out["dtype"]])
            raw = rng.integers(info.min, info.max + 1, 2 * n).astype(np.float64)
        for b, box in enumerate(boxes):
            window = crop_window(box, contract)
            cases.append({
                "name": f"{name}/box{b}", "contract": contract, "box": box, "expected_window": list(window),
                "raw_output": raw.tolist(), "expected_points": np.asarray(decode(raw, contract, window),
                                                                          np.float64).tolist(),
                "expected_input": preprocess(image, contract, window).reshape(-1).tolist(),
            })
    samples = rng.gamma(4.0, 2.0, 37).round(4).tolist()
    stats = {"samples_ms": samples,
             "expected": {"p50_ms": percentile(samples, 50), "p90_ms": percentile(samples, 90),
                          "p95_ms": percentile(samples, 95), "p99_ms": percentile(samples, 99),
                          "mean_ms": float(np.mean(samples)), "min_ms": float(np.min(samples)),
                          "max_ms": float(np.max(samples))}}
    # float16 tensors: float32 value → IEEE half bits (round to nearest even), as numpy's astype(float16).
    f32 = np.concatenate([np.array([0.0, -0.0, 1.0, 65504.0, 65519.99, 65520.0, 1e-8, 2.0 ** -25, 3 * 2.0 ** -26,
                                    2.0 ** -24, 6.0e-5, 6.1e-5, -2.5, 0.1, 1 + 2.0 ** -11, 1 + 3 * 2.0 ** -11,
                                    np.inf, -np.inf]),
                          rng.normal(0, 3, 20), rng.uniform(-1e-4, 1e-4, 10)]).astype(np.float32)
    with np.errstate(over="ignore"):  # 65520 and up overflow to inf on purpose
        f16 = f32.astype(np.float16)
    half = {"float32_bits": f32.view(np.uint32).tolist(), "float16_bits": f16.view(np.uint16).tolist()}
    return {
        "description": "Contract math test vectors for the demo apps (crop window, preprocessing, output decoding, "
                       "latency percentiles), computed with tfalign.data.geometry / tfalign.runtime. Generated by "
                       "tests/app_reference.py. Points are float32 (as tfalign computes them); input values are "
                       "floats or, for integer tensors, the integers to store.",
        "image": {"height": image.shape[0], "width": image.shape[1], "channels": 3,
                  "rgb": image.reshape(-1).tolist()},
        "tolerance": {"window": 1e-9, "points": 1e-4, "input_float": 1e-5, "input_quantized": 0, "stats": 1e-9},
        "cases": cases,
        "stats": stats,
        "float16": half,
        "export_golden": _export_golden_cases(),
    }


def _export_golden_cases():
    """The export golden, as the app cores see it: the PNG through the app's crop with the identity box must be the
    model input tfalign.runtime builds from it (compared by SHA-256 of the little-endian tensor bytes: bit-exact),
    and the expected normalised points must decode to ``u * W - 0.5`` there."""
    import hashlib

    import cv2

    from tfalign.data import geometry
    from tfalign.runtime import contract_spec, validate_contract
    from tfalign.schemes import get_scheme

    if not EXPORT_GOLDEN_FILE.is_file():
        return None
    g = json.loads(EXPORT_GOLDEN_FILE.read_text())
    png = cv2.cvtColor(cv2.imread(str(GOLDEN / g["crop_png"]), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    h, w = png.shape[:2]
    bx, by, bw, bh = g["identity_box"]
    # identity_box encodes the crop it was made for (mobile_export.golden.identity_box): invert it.
    crop = {"box": "landmarks_tight", "scale": w / max(bw, bh), "shift_x": (w / 2 - 0.5 - (bx + bw / 2)) / w,
            "shift_y": (h / 2 - 0.5 - (by + bh / 2)) / h, "interpolation": "bilinear", "border": 0.0}
    scheme = get_scheme(g["scheme"])
    cases = []
    for mode, blocks in g["contracts"].items():
        contract = {"format_version": "1.0",
                    "scheme": {"name": scheme.name, "num_points": scheme.num_points,
                               "point_names": list(scheme.point_names)},
                    "input": blocks["input"], "crop": crop, "outputs": blocks["outputs"]}
        validate_contract(contract, f"{EXPORT_GOLDEN_FILE.name} contracts.{mode}")
        spec = contract_spec(contract)
        if not np.array_equal(geometry.crop_image(png, g["identity_box"], spec), png):
            raise ValueError(f"{EXPORT_GOLDEN_FILE.name}: identity_box does not crop the PNG to itself")
        x = geometry.normalize(png, spec)  # what tfalign.runtime feeds the model, then quantized like it
        inp = contract["input"]
        if inp["dtype"] in ("int8", "uint8"):
            info = np.iinfo(_NP[inp["dtype"]])
            x = np.clip(np.round(x / inp["scale"]) + inp["zero_point"], info.min, info.max).astype(inp["dtype"])
        tensor = x.astype(np.dtype(x.dtype).newbyteorder("<")).tobytes()
        window = crop_window(g["identity_box"], contract)
        raw = np.asarray(g["expected"][mode], np.float32).reshape(-1)
        cases.append({"mode": mode, "contract": contract, "box": g["identity_box"], "expected_window": list(window),
                      "expected_input_sha256": hashlib.sha256(tensor).hexdigest(),
                      "expected_input_head": x.reshape(-1)[:24].astype(np.float64).tolist(),
                      "raw_output": raw.astype(np.float64).tolist(),
                      "expected_points": np.asarray(decode(raw, contract, window), np.float64).tolist()})
    return {"source": EXPORT_GOLDEN_FILE.name, "png": g["crop_png"], "weights_sha256": g["weights_sha256"],
            "cases": cases}


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
