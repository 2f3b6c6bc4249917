"""Predictions over a dataset and the NME / AUC / FR tables: shared by the trainer's validation and the evaluator.

Every path crops with the pipeline's evaluation preprocessing (``tfalign.data.geometry.preprocess`` on the face
box of ``tfalign.data.pipeline``), the code the export contract and the apps use, and every path is scored in
image pixels against the records' own points (``pipeline.record_targets``), so a Keras model, its ``.tflite``
export and the trainer's validation are measured the same way.
"""
from __future__ import annotations

import numpy as np

from tfalign.schemes import get_scheme

THRESHOLD = 0.1


def landmark_fn(model):
    """batch input → [B, N, 2] normalised landmarks, compiled once (``model`` returns a dict with 'landmarks')."""
    from tfalign._keras import tf
    return tf.function(lambda x: model(x, training=False)["landmarks"])


def targets(records, schemes) -> tuple:
    """(points [M, N, 2] image pixels, mask [M, N]) in the concatenated layout of ``schemes``."""
    from tfalign.data.pipeline import record_targets
    pairs = [record_targets(r, schemes) for r in records]
    return np.stack([p for p, _ in pairs]), np.stack([m for _, m in pairs])


def predict_keras(predict, records, input_spec, batch_size: int, inputs=lambda b: b["image"]) -> np.ndarray:
    """Run ``predict`` (batch input → [B, N, 2] normalised) over ``records``: [M, N, 2] image pixels, in order."""
    from tfalign.data import geometry
    from tfalign.training.data import make_dataset
    ds = make_dataset(records, input_spec, training=False, batch_size=batch_size, seed=0)
    n = len(records)
    pred = np.full((n, input_spec.num_points, 2), np.nan, np.float32)
    for batch in ds:
        out = np.asarray(predict(inputs(batch)))
        affines = batch["crop_affine"].numpy()
        # Placed by the pipeline's record index, so the order of the parallel map cannot mix faces up.
        for k, i in enumerate(batch["index"].numpy()):
            pred[i] = geometry.points_to_image(out[k], affines[k], input_spec)
    missing = np.flatnonzero(np.isnan(pred[:, 0, 0]))
    if missing.size:
        raise RuntimeError(f"the evaluation pipeline yielded no prediction for faces {missing[:10].tolist()}")
    return pred


def predict_runtime(landmark_model, records, scheme: str, progress: bool = False) -> np.ndarray:
    """Run an exported model (``tfalign.runtime.LandmarkModel``, contract only) over ``records``: [M, N, 2] px.

    The face box is the pipeline's (``geometry.face_box`` of the record's points in the contract's scheme), so
    the crop equals the one the Keras path gets.
    """
    from tqdm import tqdm

    from tfalign.data import geometry
    from tfalign.data.pipeline import load_image
    out = []
    for rec in tqdm(records, desc="evaluate", unit="face", disable=not progress):
        box = geometry.face_box(rec.points, rec.scheme, scheme)
        out.append(landmark_model.predict(load_image(rec), box))
    return np.stack(out).astype(np.float32)


def norms_of(scheme) -> list:
    """The normalisations of ``tfalign.metrics`` that apply to ``scheme`` (eye-based ones need its eyes)."""
    from tfalign import metrics
    return [n for n in metrics.NORMS if n in scheme.norm_pairs or n in ("bbox", "diagonal")]


def score(pred, true, mask, schemes, threshold: float = THRESHOLD) -> dict:
    """NME per predicted scheme and per normalisation of that scheme; points in any common unit (pixels).

    Returns ``{"primary": float, "summary": {scheme: {norm: {nme, auc@θ, fr@θ, faces}}},
    "per_sample": {scheme: {norm: [M] (NaN where the face has no points of that scheme)}}}``. ``primary`` (what
    "best" is chosen by) is the mean NME of the first scheme under its first normalisation (inter-ocular).
    """
    from tfalign import metrics
    from tfalign.data.pipeline import scheme_layout
    pred, true, mask = np.asarray(pred, np.float64), np.asarray(true, np.float64), np.asarray(mask, np.float64)
    per_sample = {}
    for name, start, stop in scheme_layout(schemes):
        m = mask[:, start:stop]
        have = m.sum(axis=1) > 0
        if not have.any():
            continue
        per_sample[name] = {}
        for norm in norms_of(get_scheme(name)):
            errs = np.full(len(mask), np.nan)
            errs[have] = metrics.nme(pred[have, start:stop], true[have, start:stop], name, norm, mask=m[have])
            per_sample[name][norm] = errs
    if not per_sample:
        raise ValueError("no face has points of a scheme the model predicts")
    summary = summarize(per_sample, None, threshold)
    first = next(iter(summary.values()))
    return {"primary": next(iter(first.values()))["nme"], "summary": summary, "per_sample": per_sample}


def summarize(per_sample: dict, select, threshold: float = THRESHOLD) -> dict:
    """{scheme: {norm: {nme, auc@θ, fr@θ, faces}}} over the faces ``select`` (index array/bool mask; None = all)."""
    from tfalign import metrics
    out = {}
    for name, norms in per_sample.items():
        for norm, errs in norms.items():
            e = errs if select is None else errs[select]
            e = e[np.isfinite(e)]
            if e.size == 0:
                continue
            auc, fr = metrics.auc_fr(e, threshold)
            out.setdefault(name, {})[norm] = {"nme": float(e.mean()), f"auc@{threshold:g}": auc,
                                              f"fr@{threshold:g}": fr, "faces": int(e.size)}
    return out
