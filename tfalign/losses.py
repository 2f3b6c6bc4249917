"""Loss pieces shared by the architectures. Architecture-specific losses live in their model modules."""
from __future__ import annotations

from tfalign._keras import tf


def masked_point_loss(pred, true, mask, kind: str = "l1", weights=None):
    """Mean point error over annotated points.

    pred, true: [B, N, 2]; mask: [B, N] (1 = annotated); weights: optional [N] per-point weights.
    ``l1``: |dx| + |dy|; ``l2``: dx² + dy²; ``euclid``: sqrt(dx² + dy²). Returns a scalar; zero when nothing is
    annotated (so a batch of 5-point faces contributes no gradient to a 68-point head).
    """
    diff = pred - true
    if kind == "l1":
        per = tf.reduce_sum(tf.abs(diff), -1)
    elif kind == "l2":
        per = tf.reduce_sum(tf.square(diff), -1)
    elif kind == "euclid":
        per = tf.sqrt(tf.reduce_sum(tf.square(diff), -1) + 1e-12)
    else:
        raise ValueError(f"unknown point loss kind '{kind}' (l1, l2, euclid)")
    mask = tf.cast(mask, per.dtype)
    if weights is not None:
        mask = mask * tf.cast(weights, per.dtype)[None, :]
    return tf.math.divide_no_nan(tf.reduce_sum(per * mask), tf.reduce_sum(mask))


def scheme_slices(schemes) -> list[tuple[str, int, int]]:
    """(scheme, start, stop) of each markup in the concatenated point layout of an InputSpec."""
    from tfalign.schemes import get_scheme
    out, start = [], 0
    for name in schemes:
        n = get_scheme(name).num_points
        out.append((name, start, start + n))
        start += n
    return out
