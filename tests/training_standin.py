"""Stand-ins for tfalign.data.spec / tfalign.data.pipeline / tfalign.metrics while those are being written.

``install()`` registers a module only where the real one does not exist yet, so the trainer tests switch to the
real code as soon as it lands. Synthetic faces here: 32×32 images with a bright dot on each of 5 points.
"""
from __future__ import annotations

import importlib.util
import sys
import types

import numpy as np


def _missing(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is None
    except ModuleNotFoundError:
        return True


def _records(n: int, seed: int = 1234, size: int = 32):
    from tfalign.data.records import FaceRecord
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        pts = rng.uniform(4, size - 5, size=(5, 2)).astype(np.float32)
        img = np.zeros((size, size, 3), np.uint8)
        for x, y in np.round(pts).astype(int):
            img[max(0, y - 1):y + 2, max(0, x - 1):x + 2] = 255
        out.append(FaceRecord("", pts, "mtfl_5", image=img, source=f"standin:{i}"))
    return out


def load_records(spec: str, skip_bad: bool = False):
    kind, _, arg = spec.partition(":")
    if kind != "synthetic":
        raise ValueError(f"unknown dataset spec '{spec}'")
    try:
        n = int(arg)
    except ValueError:
        raise ValueError(f"synthetic:N needs an integer, got '{arg}'") from None
    return _records(n)


def make_dataset(records, input_spec, *, training, batch_size, seed, **_):
    from tfalign._keras import tf
    size = np.array([input_spec.width, input_spec.height], np.float32)
    images = np.stack([(r.image.astype(np.float32) - input_spec.mean) / input_spec.std for r in records])
    points = np.stack([(r.points + 0.5) / size for r in records]).astype(np.float32)
    ds = tf.data.Dataset.from_tensor_slices({"image": images, "points": points,
                                             "mask": np.ones(points.shape[:2], np.float32)})
    if training:
        ds = ds.shuffle(len(records), seed=seed)
    return ds.batch(batch_size)


def nme(pred, true, scheme, norm="inter_ocular", mask=None):
    from tfalign.schemes import get_scheme
    d = get_scheme(scheme).norm_distance(true, norm)
    err = np.linalg.norm(np.asarray(pred) - np.asarray(true), axis=-1)
    m = np.ones(err.shape) if mask is None else np.asarray(mask)
    return (err * m).sum(-1) / np.maximum(m.sum(-1), 1) / d


def normalizations(scheme):
    return sorted(scheme.norm_pairs)


def auc_fr(errors, threshold=0.1):
    e = np.sort(np.asarray(errors))
    xs = np.linspace(0, threshold, 1001)
    ced = np.searchsorted(e, xs, side="right") / len(e)
    return float(np.trapezoid(ced, xs) / threshold), float(np.mean(e > threshold))


def install() -> None:
    me = sys.modules[__name__]
    for name, attrs in (("tfalign.data.spec", ("load_records",)), ("tfalign.data.pipeline", ("make_dataset",)),
                        ("tfalign.metrics", ("nme", "normalizations", "auc_fr"))):
        if _missing(name):
            mod = types.ModuleType(name)
            for a in attrs:
                setattr(mod, a, getattr(me, a))
            sys.modules[name] = mod
