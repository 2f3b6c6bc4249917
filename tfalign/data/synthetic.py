"""Procedural synthetic faces with exact landmarks, for tests and for machines without face data.

Each face is the 3D mean face (:mod:`tfalign.data.face3d`) with a random identity (proportions), expression (mouth
open, smile, brows, eye opening) and head pose (yaw ±60°, pitch ±25°, roll ±25°), projected with a pinhole camera
and painted with OpenCV from the projected points: hair, a filled skin hull with directional shading, eyes with
iris, brows, nose, lips, jaw shadow; over a cluttered background; then random illumination, occluders, blur and
noise. The ground truth is the projection itself, so it is exact; any scheme with a conversion from 68 points
(``tfalign.schemes``) can be requested. Face ``i`` of seed ``s`` depends only on (s, i), not on ``n``.

``attributes``: ``pose_pyr`` (pitch, yaw, roll) radians in the :func:`tfalign.data.face3d.rotation_matrix`
convention, ``expression`` (dict of the amounts used), ``occluded`` (bool), ``camera`` (focal, cx, cy) in pixels of
the pinhole camera that projected :data:`tfalign.data.face3d.MEAN_FACE_68` (mm). ``visibility`` is 0 for points under
an occluder.
"""
from __future__ import annotations

import cv2
import numpy as np

from tfalign import schemes
from tfalign.data import face3d
from tfalign.data.records import FaceRecord

_SHIFT = 4  # cv2 drawing with 4 fractional bits: landmarks are drawn at sub-pixel positions
_ONE = 1 << _SHIFT
_SKIN = np.array([[255, 224, 196], [241, 194, 125], [224, 172, 105], [198, 134, 66], [141, 85, 36],
                  [92, 51, 23], [255, 205, 178]], dtype=np.float64)
_HAIR = np.array([[20, 15, 10], [60, 40, 20], [110, 75, 40], [200, 170, 110], [140, 60, 30], [90, 90, 90]],
                 dtype=np.float64)


def _fixed(points: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(points) * _ONE).astype(np.int32)


def _poly(img, points, color, closed=True, thickness=-1):
    pts = _fixed(points).reshape(-1, 1, 2)
    color = tuple(float(c) for c in color)
    if thickness < 0:
        cv2.fillPoly(img, [pts], color, cv2.LINE_AA, _SHIFT)
    else:
        cv2.polylines(img, [pts], closed, color, max(1, int(round(thickness))), cv2.LINE_AA, _SHIFT)


def _ellipse(img, center, axes, angle, color, thickness=-1):
    cv2.ellipse(img, tuple(int(v) for v in _fixed(center)), tuple(int(max(1, v)) for v in _fixed(axes)),
                float(angle), 0.0, 360.0, tuple(float(c) for c in color), thickness, cv2.LINE_AA, _SHIFT)


def _background(rng, size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    a = rng.uniform(0, 2 * np.pi)
    t = (np.cos(a) * xx + np.sin(a) * yy)
    t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
    img = (c0[None, None] * (1 - t[..., None]) + c1[None, None] * t[..., None]).astype(np.uint8)
    for _ in range(int(rng.integers(6, 20))):  # clutter: shapes and lines at every scale
        color = rng.uniform(0, 255, 3)
        kind = rng.integers(0, 4)
        p = rng.uniform(-0.1, 1.1, 2) * size
        r = rng.uniform(0.02, 0.3) * size
        if kind == 0:
            q = p + rng.uniform(-1, 1, 2) * r
            cv2.rectangle(img, tuple(int(v) for v in p), tuple(int(v) for v in q), tuple(float(c) for c in color), -1)
        elif kind == 1:
            _ellipse(img, p, (r, r * rng.uniform(0.3, 1)), rng.uniform(0, 180), color)
        elif kind == 2:
            _poly(img, p + rng.uniform(-1, 1, (2, 2)) * r * 2, color, closed=False, thickness=rng.uniform(1, 6))
        else:
            _poly(img, p + rng.uniform(-1, 1, (int(rng.integers(3, 7)), 2)) * r, color)
    return img


def _expression(rng) -> dict:
    return {
        "mouth_open": float(rng.uniform(0.0, 1.0)) if rng.random() < 0.5 else 0.0,
        "smile": float(rng.uniform(-0.4, 1.0)),
        "brows": float(rng.uniform(-1.0, 1.0)),
        "eye_open": float(rng.uniform(0.4, 1.3)),
    }


def _shape(rng, expr: dict) -> np.ndarray:
    """Mean face with identity and expression deformations (mm, face frame)."""
    s = np.array(face3d.MEAN_FACE_68, dtype=np.float64)
    s[:, 0] *= rng.uniform(0.88, 1.12)
    s[:, 1] *= rng.uniform(0.9, 1.1)
    s[:, 2] *= rng.uniform(0.85, 1.15)
    s[27:36, 2] -= (s[27:36, 2] - s[27:36, 2].max()) * rng.uniform(-0.2, 0.3)  # nose length
    s += rng.normal(0.0, 0.8, s.shape)
    # Eye opening: scale the lids about each eye's corner line.
    for eye in (range(36, 42), range(42, 48)):
        idx = list(eye)
        axis_y = (s[idx[0], 1] + s[idx[3], 1]) / 2
        s[idx, 1] = axis_y + (s[idx, 1] - axis_y) * expr["eye_open"]
    s[17:27, 1] -= 6.0 * expr["brows"]
    # Mouth: the lower lip and the jaw drop together; corners widen and rise with a smile.
    drop = 18.0 * expr["mouth_open"]
    s[[65, 66, 67], 1] += drop
    s[55:60, 1] += 0.95 * drop
    for j, w in zip(range(4, 13), (0.15, 0.3, 0.45, 0.55, 0.6, 0.55, 0.45, 0.3, 0.15)):
        s[j, 1] += w * drop
    corners = [48, 54, 60, 64]
    s[corners, 1] += 0.3 * drop - 4.0 * expr["smile"]
    s[corners, 0] += np.sign(s[corners, 0]) * 5.0 * expr["smile"]
    return s


def _project(points3d, rotation, distance, focal, center) -> np.ndarray:
    cam = points3d @ rotation.T + np.array([0.0, 0.0, distance])
    return focal * cam[:, :2] / cam[:, 2:3] + np.asarray(center)


def _head_outline(shape: np.ndarray) -> tuple:
    """3D points (not landmarks) of the forehead and the hair, for painting only."""
    brow = shape[17:27]
    forehead = brow + np.array([0.0, -32.0, 12.0])
    temples = shape[[0, 16]] + np.array([0.0, -28.0, 10.0])
    skull = np.vstack([forehead, temples])
    hair = np.vstack([forehead * np.array([1.15, 1.0, 1.0]) + np.array([0.0, -28.0, 25.0]),
                      temples * np.array([1.12, 1.0, 1.0]) + np.array([0.0, -10.0, 20.0]),
                      shape[[0, 16]] * np.array([1.1, 1.0, 1.0]) + np.array([0.0, 10.0, 25.0])])
    return skull, hair


def _shade(img, mask, center, radius, light, strength):
    """Lambert shading of the head as an ellipsoid lit from ``light`` (unit 3-vector, camera frame)."""
    h, w = mask.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    nx = (xx - center[0]) / radius[0]
    ny = (yy - center[1]) / radius[1]
    nz = -np.sqrt(np.clip(1.0 - nx * nx - ny * ny, 0.0, 1.0))
    lam = np.clip(-(nx * light[0] + ny * light[1] + nz * light[2]), 0.0, 1.0)
    gain = (1.0 - strength) + strength * 1.3 * lam
    out = img.astype(np.float32)
    m = mask.astype(bool)
    out[m] *= gain[m][:, None]
    img[:] = np.clip(out, 0, 255).astype(np.uint8)


def _paint_face(rng, img, p, skull2d, hair2d, face_px):
    size = img.shape[0]
    skin = _SKIN[rng.integers(len(_SKIN))] * rng.uniform(0.85, 1.1)
    hair = _HAIR[rng.integers(len(_HAIR))]
    lip = skin * np.array([0.85, 0.55, 0.55]) * rng.uniform(0.8, 1.1)
    dark = np.clip(skin * 0.35, 0, 255)
    # Neck under the chin, then hair behind the head.
    neck = np.array([p[5], p[11], [p[11][0], size * 1.2], [p[5][0], size * 1.2]])
    _poly(img, neck, skin * 0.8)
    head_mask = np.zeros(img.shape[:2], np.uint8)
    if rng.random() < 0.85:
        _poly(img, cv2.convexHull(np.vstack([hair2d, p[[0, 16]]]).astype(np.float32))[:, 0], hair)
    hull = cv2.convexHull(np.vstack([p[:17], skull2d]).astype(np.float32))[:, 0]
    _poly(img, hull, skin)
    _poly(head_mask, hull, (255,))
    # Features, darker-than-skin strokes so each landmark sits on a visible edge.
    _poly(img, p[0:17], skin * 0.7, closed=False, thickness=max(1.0, face_px / 90))
    brow_t = max(1.5, face_px / 35)
    brow_c = hair * 0.8 if rng.random() < 0.7 else dark
    _poly(img, p[17:22], brow_c, closed=False, thickness=brow_t)
    _poly(img, p[22:27], brow_c, closed=False, thickness=brow_t)
    _poly(img, p[27:31], skin * 0.8, closed=False, thickness=max(1.0, face_px / 80))
    _poly(img, p[30:36].tolist() + [p[31]], skin * 0.75)  # nose tip to base: the shadowed underside
    _poly(img, p[31:36], dark, closed=False, thickness=max(1.0, face_px / 90))
    for k in (32, 34):
        _ellipse(img, (p[k] + p[33]) / 2, (face_px / 60, face_px / 110), 0.0, dark * 0.6)
    iris = rng.uniform(20, 140, 3)
    gaze = rng.uniform(-0.15, 0.15, 2)
    for eye in (p[36:42], p[42:48]):
        layer = img.copy()
        _poly(layer, eye, rng.uniform(200, 245) * np.ones(3))
        width = np.linalg.norm(eye[3] - eye[0])
        c = eye.mean(0) + gaze * width
        _ellipse(layer, c, (width * 0.22, width * 0.22), 0.0, iris)
        _ellipse(layer, c, (width * 0.09, width * 0.09), 0.0, (10, 10, 10))
        m = np.zeros(img.shape[:2], np.uint8)
        _poly(m, eye, (255,))
        img[m > 0] = layer[m > 0]
        _poly(img, eye[:4], dark * 0.7, closed=False, thickness=max(1.0, face_px / 70))
        _poly(img, np.vstack([eye[3:], eye[:1]]), dark, closed=False, thickness=1)
    _poly(img, p[48:60], lip)
    _poly(img, p[60:68], (45, 15, 20))
    _poly(img, p[60:65], lip * 0.5, closed=False, thickness=1)
    return head_mask


def _occlude(rng, img, p) -> np.ndarray:
    """Paint an occluder over part of the face; returns the occluder mask."""
    size = img.shape[0]
    mask = np.zeros(img.shape[:2], np.uint8)
    target = p[rng.integers(len(p))]
    r = rng.uniform(0.04, 0.12) * size
    kind = rng.integers(0, 3)
    if kind == 0:
        q = target + rng.uniform(-0.5, 0.5, 2) * r
        _poly(mask, np.array([[target[0] - r, target[1] - r * 0.6], [q[0] + r, target[1] - r * 0.6],
                              [q[0] + r, q[1] + r * 0.6], [target[0] - r, q[1] + r * 0.6]]), (255,))
    elif kind == 1:
        _ellipse(mask, target, (r, r * rng.uniform(0.4, 1.0)), rng.uniform(0, 180), (255,))
    else:  # a band across the face (hair strand, scarf, hand edge)
        a = rng.uniform(0, np.pi)
        d = np.array([np.cos(a), np.sin(a)]) * size
        _poly(mask, np.array([target - d, target + d]), (255,), closed=False, thickness=r * 0.6)
    tex = np.clip(rng.uniform(0, 255, 3)[None, None] + rng.normal(0, rng.uniform(0, 40), img.shape), 0, 255)
    img[mask > 0] = tex[mask > 0].astype(np.uint8)
    return mask


def _visible(mask: np.ndarray, points: np.ndarray) -> np.ndarray:
    h, w = mask.shape
    xi = np.clip(np.round(points[:, 0]).astype(int), 0, w - 1)
    yi = np.clip(np.round(points[:, 1]).astype(int), 0, h - 1)
    return (mask[yi, xi] == 0).astype(np.float32)


def _illuminate(rng, img) -> np.ndarray:
    x = img.astype(np.float32) / 255.0
    x = x ** rng.uniform(0.7, 1.4)
    x *= rng.uniform(0.85, 1.15, 3)[None, None]  # colour cast
    h, w = x.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) / max(h, w)
    a = rng.uniform(0, 2 * np.pi)
    x *= (1.0 + rng.uniform(0, 0.5) * (np.cos(a) * (xx - 0.5) + np.sin(a) * (yy - 0.5)))[..., None]
    x = x * rng.uniform(0.6, 1.2) + rng.uniform(-0.1, 0.1)
    return np.clip(x * 255.0, 0, 255).astype(np.uint8)


def _one(seed: int, index: int, size: int):
    rng = np.random.default_rng([seed, index])
    pitch, yaw, roll = np.deg2rad([rng.uniform(-25, 25), rng.uniform(-60, 60), rng.uniform(-25, 25)])
    expr = _expression(rng)
    shape = _shape(rng, expr)
    rotation = face3d.rotation_matrix(pitch, yaw, roll)
    face_px = rng.uniform(0.32, 0.55) * size  # about the jaw width
    distance = rng.uniform(400.0, 900.0)
    focal = face_px * distance / 150.0
    center = size / 2 + rng.uniform(-0.1, 0.1, 2) * size
    skull, hair = _head_outline(shape)
    proj = lambda pts: _project(pts, rotation, distance, focal, center)  # noqa: E731
    p, skull2d, hair2d = proj(shape), proj(skull), proj(hair)

    img = _background(rng, size)
    head_mask = _paint_face(rng, img, p, skull2d, hair2d, face_px)
    light = rng.normal(0, 1, 3)
    light[2] = -abs(light[2]) - 0.5  # light from the camera side
    light /= np.linalg.norm(light)
    lo, hi = p.min(0), p.max(0)
    _shade(img, head_mask, (lo + hi) / 2, np.maximum((hi - lo) * 0.75, 1.0), light, rng.uniform(0.2, 0.7))
    visibility = np.ones(68, np.float32)
    occluded = bool(rng.random() < 0.3)
    if occluded:
        visibility = _visible(_occlude(rng, img, p), p)
    img = _illuminate(rng, img)
    if rng.random() < 0.3:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 2.0))
    noise = rng.uniform(0, 8)
    img = np.clip(img + rng.normal(0, noise, img.shape), 0, 255).astype(np.uint8)
    attrs = {"pose_pyr": (float(pitch), float(yaw), float(roll)), "expression": expr, "occluded": occluded,
             "camera": (float(focal), float(center[0]), float(center[1]))}
    return img, p.astype(np.float32), visibility, attrs


def make_records(n: int, scheme: str = "300w_68", seed: int = 0, size: int = 256) -> list:
    """``n`` synthetic faces (``FaceRecord`` with ``image`` set, RGB uint8 size x size) in landmark ``scheme``."""
    if int(n) != n or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    if int(size) != size or size < 32:
        raise ValueError(f"size must be an integer >= 32, got {size!r}")
    try:
        target = schemes.get_scheme(scheme).name
        conv = schemes.conversion_matrix(face3d.SCHEME, target)
    except KeyError as exc:
        raise ValueError(f"scheme: {exc.args[0]}") from None
    contributors = conv > 0
    records = []
    for i in range(int(n)):
        img, p68, vis68, attrs = _one(int(seed), i, int(size))
        vis = np.array([vis68[row].min() for row in contributors], np.float32)
        records.append(FaceRecord(image_path="", points=conv @ p68, scheme=target, visibility=vis,
                                  attributes=attrs, source=f"synthetic:seed={seed}:{i}", image=img))
    return records
