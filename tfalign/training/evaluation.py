"""Prediction over a dataset and the NME / AUC / FR tables: shared by the trainer's validation and the evaluator.

Both run the evaluation path of ``tfalign.data.pipeline`` (the same crop code as training and export) and score in
crop pixels. The crop is a similarity transform of the image, so NME (a ratio of distances) is the same as in
image pixels.
"""
from __future__ import annotations

import numpy as np

from tfalign.losses import scheme_slices
from tfalign.schemes import get_scheme

THRESHOLD = 0.1


def predict_records(predict, records, input_spec, batch_size: int, inputs=lambda b: b["image"]):
    """Run ``predict`` (batch → [B, N, 2] normalised) over ``records`` in order.

    Returns (pred, true, mask) as NumPy: [M, N, 2] normalised, [M, N, 2] normalised, [M, N].
    """
    from tfalign.training.data import make_dataset
    ds = make_dataset(records, input_spec, training=False, batch_size=batch_size, seed=0)
    preds, trues, masks = [], [], []
    for batch in ds:
        preds.append(np.asarray(predict(inputs(batch))))
        trues.append(batch["points"].numpy())
        masks.append(batch["mask"].numpy())
    pred, true, mask = (np.concatenate(a, 0) for a in (preds, trues, masks))
    if len(pred) != len(records):
        raise RuntimeError(f"the evaluation pipeline yielded {len(pred)} faces for {len(records)} records")
    return pred, true, mask


def score(pred, true, mask, input_spec, threshold: float = THRESHOLD) -> dict:
    """NME per scheme of the model and per normalisation of that scheme.

    Returns ``{"primary": float, "summary": {scheme: {norm: {nme, auc, fr, faces}}},
    "per_sample": {scheme: {norm: [M] (NaN where the face has no points of that scheme)}}}``. ``primary`` (the
    number "best" is chosen by) is the first scheme's first normalisation.
    """
    from tfalign import metrics
    scale = np.array([input_spec.width, input_spec.height], np.float64)
    pred_px, true_px = np.asarray(pred, np.float64) * scale, np.asarray(true, np.float64) * scale
    mask = np.asarray(mask, np.float64)
    summary, per_sample, primary = {}, {}, None
    for name, start, stop in scheme_slices(input_spec.schemes):
        scheme = get_scheme(name)
        m = mask[:, start:stop]
        have = m.sum(axis=1) > 0
        if not have.any():
            continue
        summary[scheme.name], per_sample[scheme.name] = {}, {}
        for norm in metrics.normalizations(scheme):
            errs = np.full(len(mask), np.nan)
            errs[have] = metrics.nme(pred_px[have, start:stop], true_px[have, start:stop], scheme.name, norm,
                                     mask=m[have])
            valid = errs[np.isfinite(errs)]
            if valid.size == 0:
                continue
            auc, fr = metrics.auc_fr(valid, threshold)
            summary[scheme.name][norm] = {"nme": float(valid.mean()), f"auc@{threshold:g}": float(auc),
                                          f"fr@{threshold:g}": float(fr), "faces": int(valid.size)}
            per_sample[scheme.name][norm] = errs
            if primary is None:
                primary = float(valid.mean())
    if primary is None:
        raise ValueError("no face in the validation data has points of a scheme the model predicts")
    return {"primary": primary, "summary": summary, "per_sample": per_sample}
