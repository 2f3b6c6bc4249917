"""Keras ↔ exported-model parity on faces, and the faces to calibrate and check with.

Tolerances (what ``python -m tfalign.export`` checks and the tests assert):

* float exports (``none``, ``float16``): every coordinate within :data:`FLOAT_TOL` of Keras, in normalised crop
  units — "1e-3 relative" to the crop side, i.e. 0.128 px at 128 px input.
* quantized exports (``dynamic``, ``int8``): NME(exported, Keras) ≤ :data:`QUANT_NME_TOL`, normalised by the
  inter-ocular distance of the ground-truth points (the usual face-alignment normaliser; the box diagonal
  ``sqrt(w·h)`` for schemes without eyes). The ground truth, not the prediction, normalises, so a model that
  collapses all points to one spot cannot pass by shrinking its own normaliser.

The exported model runs through ``tfalign.runtime.LandmarkModel`` — the same contract-only path the apps take —
on exactly the normalised crops Keras sees.
"""
from __future__ import annotations

import time
from typing import Optional, Sequence

import numpy as np

from tfalign.data import geometry
from tfalign.data.pipeline import load_image, record_targets
from tfalign.losses import scheme_slices
from tfalign.schemes import get_scheme

FLOAT_TOL = 1e-3
QUANT_NME_TOL = 0.02
TOLERANCES = {"none": ("max_abs", FLOAT_TOL), "float16": ("max_abs", FLOAT_TOL),
              "dynamic": ("nme", QUANT_NME_TOL), "int8": ("nme", QUANT_NME_TOL)}


def crops(records: Sequence, input_spec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normalised crops [B, H, W, C], ground truth in crop coordinates [B, N, 2] and its mask [B, N].

    The crop box is the tight box of the first scheme's points (the contract's box definition), via
    ``geometry.face_box`` so faces annotated in another markup get the same crop.
    """
    from tqdm import tqdm

    xs, pts, masks = [], [], []
    first = input_spec.schemes[0]
    for rec in tqdm(records, desc="crop faces", unit="face", leave=False, disable=len(records) < 32):
        image = load_image(rec)
        box = geometry.face_box(rec.points, rec.scheme, first)
        x, affine = geometry.preprocess(image, box, input_spec)
        points, mask = record_targets(rec, input_spec.schemes)
        xs.append(x)
        pts.append(geometry.points_to_crop(points, affine, input_spec))
        masks.append(mask)
    return np.stack(xs).astype(np.float32), np.stack(pts).astype(np.float32), np.stack(masks).astype(np.float32)


def normaliser(points_crop: np.ndarray, mask: np.ndarray, schemes: Sequence[str]) -> np.ndarray:
    """Per-face NME normaliser [B] from ground-truth crop points: inter-ocular of the first markup that has one
    and is annotated, else sqrt(w·h) of the annotated points' box."""
    out = np.full(points_crop.shape[0], np.nan, np.float64)
    for name, start, stop in scheme_slices(schemes):
        sch = get_scheme(name)
        if "inter_ocular" not in sch.norm_pairs:
            continue
        d = sch.norm_distance(points_crop[:, start:stop], "inter_ocular")
        ok = np.isnan(out) & (mask[:, start:stop].min(axis=1) > 0) & (d > 0)
        out[ok] = d[ok]
    for i in np.flatnonzero(np.isnan(out)):
        p = points_crop[i][mask[i] > 0]
        w, h = p.max(0) - p.min(0)
        out[i] = np.sqrt(max(w * h, 1e-12))
    return out


def nme(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray, norm: np.ndarray) -> np.ndarray:
    """Per-face mean point error of ``pred`` vs ``ref`` over masked points, divided by ``norm``.

    Not ``tfalign.metrics.nme``: that one normalises by its reference's own eyes and takes one scheme; parity
    compares two predictions over a possibly concatenated markup, normalised by the ground truth."""
    err = np.linalg.norm(pred - ref, axis=-1)
    return (err * mask).sum(1) / np.maximum(mask.sum(1), 1) / norm


def keras_points(model, x: np.ndarray) -> np.ndarray:
    out = model(x, training=False)
    if isinstance(out, dict):
        out = out["landmarks"]
    return np.asarray(out, np.float32)


def exported_points(runner, x: np.ndarray) -> np.ndarray:
    return np.stack([runner.run_normalized(xi) for xi in x])


def compare(keras_pts: np.ndarray, exported_pts: np.ndarray, truth: np.ndarray, mask: np.ndarray,
            schemes: Sequence[str], quantize: str) -> dict:
    """Parity figures and the pass/fail verdict for one quantization mode."""
    from mobile_export.contract import output_schemes

    # An inference model gives the primary markup only: score the leading markups it carries.
    schemes = output_schemes(schemes, keras_pts.shape[1])
    truth, mask = truth[:, :keras_pts.shape[1]], mask[:, :keras_pts.shape[1]]
    norm = normaliser(truth, mask, schemes)
    diff = np.abs(exported_pts - keras_pts)[mask > 0]
    metric, tol = TOLERANCES[quantize]
    parity = nme(exported_pts, keras_pts, mask, norm)
    result = {
        "faces": int(len(keras_pts)),
        "max_abs": float(diff.max()) if diff.size else 0.0,
        "mean_abs": float(diff.mean()) if diff.size else 0.0,
        "nme": float(parity.mean()),
        "nme_max": float(parity.max()),
        "nme_keras_vs_truth": float(nme(keras_pts, truth, mask, norm).mean()),
        "nme_exported_vs_truth": float(nme(exported_pts, truth, mask, norm).mean()),
        "metric": metric,
        "tolerance": tol,
    }
    result["passed"] = bool(result[metric] <= tol)
    return result


def tflite_parity(keras_model, runner, records: Sequence, input_spec, quantize: str) -> dict:
    """Keras vs a ``LandmarkModel`` (``.tflite`` + contract) on ``records``."""
    x, truth, mask = crops(records, input_spec)
    return compare(keras_points(keras_model, x), exported_points(runner, x), truth, mask, input_spec.schemes,
                   quantize)


def host_latency(runner, x: np.ndarray, runs: int = 30, warmup: int = 5) -> dict:
    """Median / p90 latency in ms of ``runner.run_normalized`` on one crop (LiteRT, its thread setting)."""
    for _ in range(warmup):
        runner.run_normalized(x)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        runner.run_normalized(x)
        times.append((time.perf_counter() - t0) * 1e3)
    from mobile_export.profile import x86_amx  # whether XNNPACK could run int8 on Intel AMX (no phone has it)
    from tfalign.training.runconfig import cpu_info  # whether int8 has an 8-bit dot product here (int8_timing_note)
    return {"median_ms": float(np.median(times)), "p90_ms": float(np.percentile(times, 90)), "runs": runs,
            "x86_amx": x86_amx.status(), "cpu_features": cpu_info().get("isa", [])}


def synthetic_records(n: int, input_spec, seed: int):
    """Synthetic faces in the model's first markup (calibration and checks on machines without face data)."""
    return face_records(None, n, input_spec, seed, "synthetic faces")


def face_records(spec: Optional[str], count: int, input_spec, seed: int, flag: str) -> list:
    """``count`` faces of a dataset spec (an even random sample), or synthetic faces when ``spec`` is None: the
    same selection quantization/ calibrates with. Errors name ``flag``."""
    from quantization.calibration import calibration_records

    try:
        return calibration_records(input_spec, spec, count, seed)
    except ValueError as exc:
        raise ValueError(f"{flag}: {exc}") from None
