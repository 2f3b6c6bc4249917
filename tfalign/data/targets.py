"""Target encoders shared by the architectures, in TensorFlow so they run in the pipeline (``ds.map``) or the loss.

All take points normalised to the crop with the edge origin (``u = (x + 0.5) / W``, the pipeline's ``points``), so
one set of labels serves every output resolution: on a map of width ``Wm`` the point sits at map pixel
``u * Wm - 0.5`` (centre convention) and in map cell ``floor(u * Wm)``.

``mean_shape`` and ``nearest_neighbors`` are NumPy: they are computed once per dataset (PIPNet's meanface).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from tfalign._keras import tf


def _mask_or_ones(points, mask):
    if mask is None:
        return tf.ones(tf.shape(points)[:-1], points.dtype)
    return tf.cast(mask, points.dtype)


def gaussian_heatmaps(points, height: int, width: int, sigma: float = 1.5, mask=None):
    """[B, N, 2] normalised points → [B, height, width, N] unnormalised Gaussians (peak 1 at the point).

    ``sigma`` is in map pixels; a stride-s map of an HxW input is ``gaussian_heatmaps(p, H // s, W // s)``. The
    Gaussian is evaluated at the map pixel centres, so the peak is sub-pixel exact. Masked points give zero maps.
    """
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    points = tf.convert_to_tensor(points, tf.float32)
    m = _mask_or_ones(points, mask)
    px = points[..., 0] * float(width) - 0.5  # [B, N]
    py = points[..., 1] * float(height) - 0.5
    xs = tf.range(width, dtype=tf.float32)
    ys = tf.range(height, dtype=tf.float32)
    # Separable: exp(-(dx²+dy²)/2σ²) = gx ⊗ gy, much cheaper than a dense [B,N,H,W] distance.
    gx = tf.exp(-tf.square(xs[None, None, :] - px[..., None]) / (2.0 * sigma * sigma))  # [B, N, W]
    gy = tf.exp(-tf.square(ys[None, None, :] - py[..., None]) / (2.0 * sigma * sigma))  # [B, N, H]
    maps = gy[..., :, None] * gx[..., None, :] * m[..., None, None]  # [B, N, H, W]
    return tf.transpose(maps, [0, 2, 3, 1])


def _cells(points, height: int, width: int):
    """Map cell (cx, cy) containing each point, clamped to the map, and the scaled coordinates."""
    sx = points[..., 0] * float(width)
    sy = points[..., 1] * float(height)
    cx = tf.clip_by_value(tf.floor(sx), 0.0, float(width - 1))
    cy = tf.clip_by_value(tf.floor(sy), 0.0, float(height - 1))
    return cx, cy, sx, sy


def pip_targets(points, height: int, width: int, neighbors, mask=None) -> dict:
    """PIPNet targets on a height x width map (stride = input / map size).

    Each landmark i owns the cell ``(floor(u*Wm), floor(v*Hm))`` (clamped to the map). Returns:
        ``score`` [B, H, W, N]: 1 at the owning cell of each annotated point, else 0.
        ``offset_x``, ``offset_y`` [B, H, W, N]: the point's position inside its cell, in cells (``u*Wm - cx``; in
            [0, 1) for points inside the map), at the owning cell only.
        ``neighbor_x``, ``neighbor_y`` [B, H, W, N*K]: channel ``i*K + j`` holds, at landmark i's cell, the offset of
            its j-th neighbour ``neighbors[i, j]`` from that cell, in cells.
        ``mask`` [B, N] and ``neighbor_mask`` [B, N*K] (mask of i times mask of its neighbour), for the losses.
    ``neighbors``: int [N, K] from :func:`nearest_neighbors`.
    """
    points = tf.convert_to_tensor(points, tf.float32)
    neighbors = tf.convert_to_tensor(np.asarray(neighbors, np.int32))
    if neighbors.shape.rank != 2:
        raise ValueError(f"neighbors must be [N, K], got shape {neighbors.shape}")
    m = _mask_or_ones(points, mask)
    k = int(neighbors.shape[1])
    cx, cy, sx, sy = _cells(points, height, width)  # [B, N]
    cell = tf.cast(cy, tf.int32) * width + tf.cast(cx, tf.int32)
    onehot = tf.one_hot(cell, height * width, dtype=tf.float32) * m[..., None]  # [B, N, HW]

    def to_map(values, channels_last):  # values [B, C, HW] → [B, H, W, C]
        return tf.reshape(tf.transpose(values, [0, 2, 1]), [-1, height, width, channels_last])

    n = tf.shape(points)[1]
    off_x = onehot * (sx - cx)[..., None]
    off_y = onehot * (sy - cy)[..., None]
    nb_sx = tf.gather(sx, neighbors, axis=1)  # [B, N, K]
    nb_sy = tf.gather(sy, neighbors, axis=1)
    nb_m = tf.gather(m, neighbors, axis=1) * m[..., None]
    nb_x = onehot[:, :, None, :] * ((nb_sx - cx[..., None]) * nb_m)[..., None]  # [B, N, K, HW]
    nb_y = onehot[:, :, None, :] * ((nb_sy - cy[..., None]) * nb_m)[..., None]
    nk = n * k
    return {
        "score": to_map(onehot, n),
        "offset_x": to_map(off_x, n),
        "offset_y": to_map(off_y, n),
        "neighbor_x": to_map(tf.reshape(nb_x, [-1, nk, height * width]), nk),
        "neighbor_y": to_map(tf.reshape(nb_y, [-1, nk, height * width]), nk),
        "mask": m,
        "neighbor_mask": tf.reshape(nb_m, [-1, nk]),
    }


def mean_shape(points_normalised, mask: Optional[np.ndarray] = None) -> np.ndarray:
    """Mean of normalised shapes [M, N, 2] → [N, 2], over the faces where each point is annotated (``mask`` [M, N]).

    Raises ValueError naming the points that no face annotates.
    """
    p = np.asarray(points_normalised, np.float64)
    if p.ndim != 3 or p.shape[-1] != 2 or p.shape[0] == 0:
        raise ValueError(f"points_normalised must be [M, N, 2] with M > 0, got shape {p.shape}")
    m = np.ones(p.shape[:2]) if mask is None else np.asarray(mask, np.float64)
    if m.shape != p.shape[:2]:
        raise ValueError(f"mask must be [M, N] = {p.shape[:2]}, got {m.shape}")
    count = m.sum(0)
    if np.any(count == 0):
        raise ValueError(f"points {np.flatnonzero(count == 0).tolist()} are annotated in no face")
    return ((p * m[..., None]).sum(0) / count[:, None]).astype(np.float32)


def nearest_neighbors(mean: np.ndarray, k: int) -> np.ndarray:
    """[N, k] indices of each point's k nearest other points on the mean shape (closest first, self excluded)."""
    s = np.asarray(mean, np.float64)
    if s.ndim != 2 or s.shape[1] != 2:
        raise ValueError(f"mean_shape must be [N, 2], got shape {s.shape}")
    if not 1 <= k < s.shape[0]:
        raise ValueError(f"k must be in [1, {s.shape[0] - 1}] for {s.shape[0]} points, got {k}")
    d = np.linalg.norm(s[:, None] - s[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    return np.argsort(d, axis=1, kind="stable")[:, :k].astype(np.int32)
