"""Representative faces for int8 calibration, drawn from the training pipeline (``tfalign.data.pipeline``).

Calibration sees exactly what the model sees at inference: the pipeline's evaluation crop and normalisation
(``make_dataset(training=False)``), so the activation ranges match deployment. Real faces when a dataset spec is
given (e.g. ``300w:../shared/data/lfpw/trainset#train``), synthetic faces (``tfalign.data.synthetic``) otherwise,
so a model can be quantized on a machine without face data.
"""
from __future__ import annotations

from typing import Optional

import numpy as np


def calibration_records(input_spec, data_spec: Optional[str] = None, count: int = 64, seed: int = 0) -> list:
    """``count`` face records: an even random sample of ``data_spec`` or synthetic faces in the model's markup."""
    if int(count) != count or count <= 0:
        raise ValueError(f"count: calibration needs a positive number of faces, got {count!r}")
    if data_spec is None:
        from tfalign.data import synthetic
        # Rendered at twice the crop so the crop is downsampled like a real photo, not upsampled.
        return synthetic.make_records(int(count), scheme=input_spec.schemes[0], seed=seed,
                                      size=max(64, 2 * max(input_spec.height, input_spec.width)))
    from tfalign.data.records import DataError
    from tfalign.data.spec import load_records
    try:
        records = list(load_records(data_spec))
    except DataError as exc:
        raise ValueError(f"calibration data {data_spec}: {exc}") from None
    except (KeyError, ValueError, OSError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        raise ValueError(f"calibration data {data_spec}: {msg}") from None
    if not records:
        raise ValueError(f"calibration data {data_spec}: no faces")
    if len(records) > count:
        keep = np.sort(np.random.default_rng(seed).choice(len(records), int(count), replace=False))
        records = [records[i] for i in keep]
    return records


def calibration_crops(input_spec, data_spec: Optional[str] = None, count: int = 64, seed: int = 0) -> np.ndarray:
    """[M, H, W, C] float32 normalised crops (the pipeline's evaluation preprocessing), in record order."""
    from tfalign.data.pipeline import make_dataset
    records = calibration_records(input_spec, data_spec, count, seed)
    ds = make_dataset(records, input_spec, training=False, batch_size=16, seed=seed, deterministic=True)
    return np.concatenate([b["image"].numpy() for b in ds], axis=0).astype(np.float32)


def calibration_batches(input_spec, data_spec: Optional[str] = None, count: int = 64, seed: int = 0,
                        batch_size: int = 8) -> list:
    """:func:`calibration_crops` in [≤ batch_size, H, W, C] batches (QAT range calibration)."""
    crops = calibration_crops(input_spec, data_spec, count, seed)
    return [crops[i:i + batch_size] for i in range(0, len(crops), batch_size)]


def representative_dataset(input_spec, data_spec: Optional[str] = None, count: int = 64, seed: int = 0):
    """A callable for ``presets.for_int8``: each call yields the same ``count`` crops, one [1, H, W, C] at a time.

    Crops are made once, on first use, and reused by every call (the converter may iterate more than once).
    """
    cache = []

    def representative():
        if not cache:
            cache.append(calibration_crops(input_spec, data_spec, count, seed))
        return representative_from([cache[0]])()

    return representative


def representative_from(batches):
    """A callable for the presets over crops already made (e.g. :func:`calibration_batches`, which QAT also uses
    for its ranges): each call yields every face of ``batches`` ([N, H, W, C] arrays) as [1, H, W, C]."""
    def representative():
        for batch in batches:
            for x in batch:
                yield x[None]

    return representative


__all__ = ["calibration_records", "calibration_crops", "calibration_batches", "representative_dataset",
           "representative_from"]
