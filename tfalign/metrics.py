"""Face-alignment metrics (pure NumPy): NME, AUC / failure rate at a threshold, CED curves and plots.

Definitions (as in the 300-W / WFLW / COFW literature and PIPNet's ``compute_nme`` / ``compute_fr_and_auc``):
    * NME of a face = mean over its (annotated) points of the Euclidean error, divided by a normalising distance:
      ``inter_ocular`` (outer eye corners), ``inter_pupil`` (eye centres), ``bbox`` (sqrt(w * h) of the tight box
      of the ground-truth points) or ``diagonal`` (sqrt(w² + h²) of that box). The eye indices come from the
      scheme (``tfalign.schemes``).
    * CED: fraction of faces with NME <= x, for x from 0 to the threshold.
    * AUC@θ: area under the CED on [0, θ] divided by θ (trapezoid rule on a grid of ``step``); FR@θ: fraction of
      faces with NME > θ.
"""
from __future__ import annotations

from typing import Mapping, Optional

import numpy as np

NORMS = ("inter_ocular", "inter_pupil", "bbox", "diagonal")


def _scheme(scheme):
    from tfalign.schemes import LandmarkScheme, get_scheme
    return scheme if isinstance(scheme, LandmarkScheme) else get_scheme(scheme)


def nme(pred, gt, scheme, norm: str = "inter_ocular", mask=None) -> np.ndarray:
    """Per-face normalised mean error, shape [B] (a single face [N, 2] gives shape [1]).

    Args:
        pred, gt: [B, N, 2] or [N, 2] points, any common unit (pixels or normalised coordinates).
        scheme: scheme name or ``LandmarkScheme`` of the points (gives the eye indices).
        norm: ``inter_ocular`` | ``inter_pupil`` | ``bbox`` | ``diagonal``.
        mask: optional [B, N] (or [N]); only points with mask > 0 are averaged (and bound the box norms).
    """
    p = np.asarray(pred, np.float64)
    g = np.asarray(gt, np.float64)
    p = p[None] if p.ndim == 2 else p
    g = g[None] if g.ndim == 2 else g
    if p.shape != g.shape or p.ndim != 3 or p.shape[-1] != 2:
        raise ValueError(f"pred and gt must both be [B, N, 2] (or [N, 2]); got {np.shape(pred)} and {np.shape(gt)}")
    s = _scheme(scheme)
    if p.shape[1] != s.num_points:
        raise ValueError(f"points have {p.shape[1]} points but scheme {s.name} has {s.num_points}")
    if mask is None:
        m = np.ones(p.shape[:2])
    else:
        m = np.asarray(mask, np.float64)
        m = m[None] if m.ndim == 1 else m
        if m.shape != p.shape[:2]:
            raise ValueError(f"mask must be [B, N] = {p.shape[:2]}, got {np.shape(mask)}")
        m = (m > 0).astype(np.float64)
    if not np.all(np.isfinite(p)) or not np.all(np.isfinite(g)):
        raise ValueError("pred or gt contain NaN or infinite values")
    if norm in ("inter_ocular", "inter_pupil"):
        d = s.norm_distance(g, norm)
    elif norm in ("bbox", "diagonal"):
        on = m[..., None] > 0
        wh = np.where(on, g, -np.inf).max(axis=1) - np.where(on, g, np.inf).min(axis=1)
        d = np.sqrt(wh[:, 0] * wh[:, 1]) if norm == "bbox" else np.hypot(wh[:, 0], wh[:, 1])
    else:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    count = m.sum(1)
    if np.any(count == 0):
        raise ValueError(f"faces {np.flatnonzero(count == 0).tolist()} have no annotated point (mask all zero)")
    if np.any(~np.isfinite(d)) or np.any(d <= 0):
        raise ValueError(f"normalising distance '{norm}' is zero for faces {np.flatnonzero(~(d > 0)).tolist()}")
    err = np.linalg.norm(p - g, axis=-1)
    return (err * m).sum(1) / count / d


def _check_nmes(nmes) -> np.ndarray:
    x = np.asarray(nmes, np.float64).ravel()
    if x.size == 0:
        raise ValueError("nmes: empty, nothing to summarise")
    if not np.all(np.isfinite(x)) or np.any(x < 0):
        raise ValueError("nmes must be finite and >= 0")
    return x


def _grid(threshold: float, step: float) -> np.ndarray:
    if not threshold > 0 or not 0 < step <= threshold:
        raise ValueError(f"need threshold > 0 and 0 < step <= threshold, got threshold={threshold}, step={step}")
    return np.linspace(0.0, threshold, int(round(threshold / step)) + 1)


def ced_curve(nmes, threshold: float = 0.1, step: float = 0.0001) -> tuple:
    """(xs, ys): fraction of faces with NME <= x, for xs = 0, step, ..., threshold."""
    x = np.sort(_check_nmes(nmes))
    xs = _grid(threshold, step)
    ys = np.searchsorted(x, xs, side="right") / x.size
    return xs, ys


def auc_fr(nmes, threshold: float = 0.1, step: float = 0.0001) -> tuple:
    """(AUC@threshold, FR@threshold) of per-face NMEs; both in [0, 1]."""
    xs, ys = ced_curve(nmes, threshold, step)
    auc = float(np.trapezoid(ys, xs) / threshold)
    fr = float(np.mean(_check_nmes(nmes) > threshold))
    return auc, fr


def ced_plot(curves: Mapping[str, "np.ndarray"], path: str, threshold: float = 0.1, step: float = 0.0001,
             title: Optional[str] = None) -> str:
    """Write a CED plot (PNG) of ``{label: per-face NMEs}`` to ``path`` atomically; labels carry AUC and FR."""
    if not curves:
        raise ValueError("curves: give at least one {label: nmes}")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tfalign.io import atomic_path

    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=100)
    try:
        for label, values in curves.items():
            xs, ys = ced_curve(values, threshold, step)
            auc, fr = auc_fr(values, threshold, step)
            ax.plot(xs, ys, label=f"{label} (AUC {auc:.3f}, FR {fr:.1%})")
        ax.set_xlim(0, threshold)
        ax.set_ylim(0, 1)
        ax.set_xlabel("NME")
        ax.set_ylabel("fraction of faces")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower right")
        if title:
            ax.set_title(title)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
    return path
