"""The crop math, written once: training, evaluation, the export contract and inference all call these functions.

Coordinates (see DEVELOPERS.md):
    * image / crop pixels: 0-based, the centre of pixel column ``i`` is ``x = i`` (an image of width W spans the
      continuous range [-0.5, W - 0.5]);
    * normalised crop coordinates (model outputs): origin at the crop's top-left *edge*, ``u = (x_crop + 0.5) / W``.

The crop: a square of side ``crop_scale * max(w, h)`` of the face box (the tight box of the scheme's points, or a
detector box mapped to it), centred on the box centre shifted by ``(shift_x, shift_y) * side``, resampled to the
model input (H x W) with bilinear interpolation; outside the image the crop is :data:`PAD_VALUE` (black).

An ``affine`` here is a 2x3 float matrix mapping image pixel coordinates to crop pixel coordinates, exactly the
matrix given to ``cv2.warpAffine``; augmentation composes extra transforms into it so that one warp per sample does
crop + augmentation + resize.
"""
from __future__ import annotations

from typing import Optional, Sequence

import cv2
import numpy as np

#: Value of crop pixels that fall outside the image (all channels), before normalisation.
PAD_VALUE = 0
#: cv2 interpolation of the one warp per sample (apps must resample bilinearly too).
INTERPOLATION = cv2.INTER_LINEAR


def points_box(points: np.ndarray) -> tuple:
    """Tight (x, y, w, h) box of points [N, 2] in pixels."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if p.size == 0:
        raise ValueError("points: cannot take the box of zero points")
    lo, hi = p.min(axis=0), p.max(axis=0)
    return (float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1]))


def _check_box(box) -> tuple:
    try:
        x, y, w, h = (float(v) for v in box)
    except (TypeError, ValueError):
        raise ValueError(f"box: expected (x, y, w, h), got {box!r}") from None
    if not np.all(np.isfinite([x, y, w, h])) or max(w, h) <= 0:
        raise ValueError(f"box: (x, y, w, h) must be finite with max(w, h) > 0, got {box!r}")
    return x, y, w, h


def square_crop(box, crop_scale: float = 1.25, shift: Sequence[float] = (0.0, 0.0)) -> tuple:
    """(cx, cy, side) of the square crop of a face box (x, y, w, h): the contract's definition."""
    x, y, w, h = _check_box(box)
    if crop_scale <= 0:
        raise ValueError(f"crop_scale must be > 0, got {crop_scale}")
    side = crop_scale * max(w, h)
    return x + w / 2.0 + shift[0] * side, y + h / 2.0 + shift[1] * side, side


def crop_for_spec(box, input_spec) -> tuple:
    """(cx, cy, side) of the square crop that ``input_spec`` (crop_scale, shift_x, shift_y) defines on ``box``."""
    return square_crop(box, input_spec.crop_scale, (input_spec.shift_x, input_spec.shift_y))


def crop_affine(center: Sequence[float], side: float, out_height: int, out_width: int) -> np.ndarray:
    """2x3 matrix: image pixel → crop pixel, for the square (center, side) resampled to out_height x out_width.

    The square covers [cx - side/2, cx + side/2] in continuous pixel coordinates, so that a point on its left edge
    gets u = 0 and a point on its right edge u = 1.
    """
    if side <= 0:
        raise ValueError(f"side must be > 0, got {side}")
    sx, sy = out_width / side, out_height / side
    return np.array([[sx, 0.0, -sx * (center[0] - side / 2.0) - 0.5],
                     [0.0, sy, -sy * (center[1] - side / 2.0) - 0.5]], dtype=np.float64)


def box_affine(box, input_spec) -> np.ndarray:
    """The contract's affine (image pixel → crop pixel) for a face box and an InputSpec."""
    cx, cy, side = crop_for_spec(box, input_spec)
    return crop_affine((cx, cy), side, input_spec.height, input_spec.width)


def similarity(angle_deg: float = 0.0, scale: float = 1.0, center: Sequence[float] = (0.0, 0.0),
               translate: Sequence[float] = (0.0, 0.0)) -> np.ndarray:
    """3x3 matrix: rotate by ``angle_deg`` (clockwise on screen, y is down) and scale about ``center``, then
    translate."""
    a = np.deg2rad(angle_deg)
    c, s = scale * np.cos(a), scale * np.sin(a)
    cx, cy = center
    return np.array([[c, -s, cx - c * cx + s * cy + translate[0]],
                     [s, c, cy - s * cx - c * cy + translate[1]],
                     [0.0, 0.0, 1.0]], dtype=np.float64)


def hflip(width: int) -> np.ndarray:
    """3x3 matrix mirroring pixel coordinates in an image of ``width`` columns (x → width - 1 - x)."""
    return np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=np.float64)


def to3x3(affine: np.ndarray) -> np.ndarray:
    a = np.asarray(affine, dtype=np.float64)
    if a.shape == (3, 3):
        return a
    if a.shape != (2, 3):
        raise ValueError(f"affine must be 2x3 or 3x3, got shape {a.shape}")
    return np.vstack([a, [0.0, 0.0, 1.0]])


def invert_affine(affine: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine, as 2x3."""
    return np.linalg.inv(to3x3(affine))[:2]


def transform_points(points: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Apply a 2x3 (or 3x3 affine) matrix to points [..., 2]."""
    a = to3x3(affine)
    p = np.asarray(points, dtype=np.float64)
    return (p @ a[:2, :2].T + a[:2, 2]).astype(np.float32)


def normalization_matrix(height: int, width: int) -> np.ndarray:
    """3x3 matrix: crop pixel → normalised (edge origin), u = (x + 0.5) / W."""
    return np.array([[1.0 / width, 0.0, 0.5 / width], [0.0, 1.0 / height, 0.5 / height], [0.0, 0.0, 1.0]])


def pixel_to_normalized(points: np.ndarray, height: int, width: int) -> np.ndarray:
    """Crop pixel coordinates [..., 2] → normalised (edge origin)."""
    return transform_points(points, normalization_matrix(height, width))


def normalized_to_pixel(points: np.ndarray, height: int, width: int) -> np.ndarray:
    """Normalised (edge origin) [..., 2] → crop pixel coordinates: x = u * W - 0.5."""
    return transform_points(points, np.linalg.inv(normalization_matrix(height, width)))


def points_to_crop(points_image: np.ndarray, affine: np.ndarray, input_spec) -> np.ndarray:
    """Image pixel points [..., 2] → normalised crop coordinates."""
    return pixel_to_normalized(transform_points(points_image, affine), input_spec.height, input_spec.width)


def points_to_image(points_norm: np.ndarray, affine: np.ndarray, input_spec) -> np.ndarray:
    """Normalised crop points [..., 2] (model output) → image pixel coordinates, through ``affine``'s inverse."""
    crop_px = normalized_to_pixel(points_norm, input_spec.height, input_spec.width)
    return transform_points(crop_px, invert_affine(affine))


def _as_rgb(image: np.ndarray, name: str = "image") -> np.ndarray:
    img = np.asarray(image)
    if img.dtype != np.uint8:
        raise ValueError(f"{name}: expected uint8 pixels, got {img.dtype}")
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] not in (1, 3) or img.shape[0] == 0 or img.shape[1] == 0:
        raise ValueError(f"{name}: expected an HxWx3 RGB (or HxW gray) image, got shape {img.shape}")
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    return img


def warp(image: np.ndarray, affine: np.ndarray, out_height: int, out_width: int) -> np.ndarray:
    """The one resampling used everywhere: ``cv2.warpAffine`` bilinear, constant :data:`PAD_VALUE` border."""
    return cv2.warpAffine(image, np.asarray(affine, np.float64)[:2], (int(out_width), int(out_height)),
                          flags=INTERPOLATION, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=(PAD_VALUE,) * 4)


def model_channels(crop_uint8: np.ndarray, input_spec) -> np.ndarray:
    """uint8 RGB crop HxWx3 → uint8 HxWxC in the model's colour layout (gray HxWx1 when channels == 1)."""
    if input_spec.channels == 1:
        return cv2.cvtColor(crop_uint8, cv2.COLOR_RGB2GRAY)[:, :, None]
    return crop_uint8


def normalize(crop_uint8: np.ndarray, input_spec) -> np.ndarray:
    """uint8 RGB crop HxWx3 → float32 HxWxC model input: gray first when channels == 1, then (x - mean) / std."""
    x = model_channels(crop_uint8, input_spec).astype(np.float32)
    x -= np.float32(input_spec.mean)
    x *= np.float32(1.0 / input_spec.std)
    return x


def normalize_tensor(x_uint8, input_spec):
    """:func:`normalize`'s arithmetic on a uint8 tensor already in :func:`model_channels` layout (any batch shape).

    The same float32 operations in the same order, so the result is bitwise equal to :func:`normalize`; the
    pipeline uses it to move 4x fewer bytes through ``tf.numpy_function`` and batching.
    """
    from tfalign._keras import tf
    x = tf.cast(x_uint8, tf.float32) - tf.constant(input_spec.mean, tf.float32)
    return x * tf.constant(np.float32(1.0 / input_spec.std))


def crop_image(image: np.ndarray, box, input_spec) -> np.ndarray:
    """uint8 RGB crop (H x W x 3) of ``image`` for face ``box`` (x, y, w, h) as the contract defines it."""
    img = _as_rgb(image)
    return warp(img, box_affine(box, input_spec), input_spec.height, input_spec.width)


def preprocess(image_rgb_uint8: np.ndarray, box, input_spec) -> tuple:
    """Inference / evaluation preprocessing: (normalised float32 H x W x C, 2x3 affine image→crop pixels).

    Map the model's normalised output back to the image with :func:`points_to_image` (same ``affine``).
    """
    img = _as_rgb(image_rgb_uint8, "image_rgb_uint8")
    affine = box_affine(box, input_spec)
    crop = warp(img, affine, input_spec.height, input_spec.width)
    return normalize(crop, input_spec), affine.astype(np.float32)


def reference_shape_68() -> np.ndarray:
    """Frontal 2D projection of the 3D mean face (68 points, mm): a stand-in face when a markup is too sparse."""
    from tfalign.data.face3d import MEAN_FACE_68
    return np.asarray(MEAN_FACE_68[:, :2], dtype=np.float64)


def _fit_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 least-squares similarity (rotation, uniform scale, translation) mapping src [N, 2] onto dst [N, 2]."""
    ms, md = src.mean(0), dst.mean(0)
    a, b = src - ms, dst - md
    denom = float(np.sum(a * a))
    if denom <= 1e-12:  # all source points coincide: a translation is all we can fit
        return np.array([[1.0, 0.0, md[0] - ms[0]], [0.0, 1.0, md[1] - ms[1]]])
    # Complex-number form of 2D Procrustes: dst ~ z * src with z = scale * e^{i angle}.
    zc = np.sum((a[:, 0] * b[:, 0] + a[:, 1] * b[:, 1])) / denom
    zs = np.sum((a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0])) / denom
    rot = np.array([[zc, -zs], [zs, zc]])
    return np.hstack([rot, (md - rot @ ms)[:, None]])


def face_box(points: np.ndarray, scheme: str, box_scheme: Optional[str] = None) -> tuple:
    """Face box (x, y, w, h) on which crops are defined: the tight box of the ``box_scheme`` points of this face.

    ``box_scheme`` defaults to ``scheme``. When the face is annotated in another markup (say 5-point MTFL faces
    for a 68-point model) the ``box_scheme`` points are converted (``schemes.conversion_matrix``) when a
    conversion exists, else estimated by fitting the mean face to the annotated points with a similarity
    transform, so that a 5-point face gets about the crop its 68-point equivalent would (exactly for a frontal
    mean-shaped face; with yaw the jaw moves against the eyes and mouth, so the estimate is off by up to ~15% of
    the box at 15° yaw, comparable to the pipeline's box jitter).
    """
    from tfalign import schemes

    points = np.asarray(points, dtype=np.float64)
    box_scheme = box_scheme or scheme
    if schemes.get_scheme(box_scheme).name == schemes.get_scheme(scheme).name:
        return points_box(points)
    try:
        return points_box(schemes.conversion_matrix(scheme, box_scheme) @ points)
    except KeyError:
        pass
    ref68 = reference_shape_68()
    try:
        ref_src = schemes.conversion_matrix("300w_68", scheme) @ ref68
        ref_dst = schemes.conversion_matrix("300w_68", box_scheme) @ ref68
    except KeyError:
        # No common reference: the face's own points are the best box we have.
        return points_box(points)
    m = _fit_similarity(ref_src, points)
    return points_box(transform_points(ref_dst, m))
