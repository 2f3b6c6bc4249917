"""Derive the 3D 68-point mean face in ``tfalign/data/face3d.py`` from the AFLW2000-3D fixtures.

Run once (the constants are written into face3d.py by hand, rounded to 0.1 mm):

    .venv/bin/python bench/face3d_from_aflw2000.py [../shared/data/fixtures/aflw2000_3d_16]

Generalised Procrustes (rotation + scale + translation) of the ``pt3d_68`` of every face, then the mean is put in
the OpenCV camera frame of a frontal face (x right, y down, z away from the camera), mirrored-and-averaged with the
300-W flip permutation so it is exactly symmetric, centred on its centroid and scaled so that the outer eye corners
are 90 mm apart (adult average outer canthal width).
"""
from __future__ import annotations

import glob
import os
import sys

import numpy as np
import scipy.io as sio

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tfalign.schemes import get_scheme  # noqa: E402


def _procrustes(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """src [N,3] similarity-aligned onto dst."""
    ms, md = src.mean(0), dst.mean(0)
    a, b = src - ms, dst - md
    u, s, vt = np.linalg.svd(a.T @ b)
    d = np.sign(np.linalg.det(u @ vt))
    corr = np.diag([1.0, 1.0, d])
    r = u @ corr @ vt
    scale = np.trace(np.diag(s) @ corr) / np.sum(a * a)
    return scale * a @ r + md


def main(folder: str) -> np.ndarray:
    shapes, yaws = [], []
    for path in sorted(glob.glob(os.path.join(folder, "*.mat"))):
        m = sio.loadmat(path)
        shapes.append(m["pt3d_68"].T.astype(np.float64))
        yaws.append(abs(float(m["Pose_Para"][0, 1])))
    if not shapes:
        raise SystemExit(f"{folder}: no .mat files")
    ref = shapes[int(np.argmin(yaws))]
    for _ in range(10):
        aligned = [_procrustes(s, ref) for s in shapes]
        ref = np.mean(aligned, axis=0)
    perm = list(get_scheme("300w_68").flip_permutation)
    p = ref - ref.mean(0)
    # Axes from the shape itself: x across the face (left point -> its mirror), y from the eyes to the chin.
    x = np.mean([p[perm[i]] - p[i] for i in range(68) if p[perm[i]][0] != p[i][0] and perm[i] > i], axis=0)
    x /= np.linalg.norm(x)
    y = p[8] - p[36:48].mean(0)
    y -= x * (y @ x)
    y /= np.linalg.norm(y)
    z = np.cross(x, y)
    q = p @ np.stack([x, y, z], axis=1)
    if q[30, 2] > q[:, 2].mean():  # the nose tip must be the point closest to the camera
        q[:, 2] *= -1
    mirrored = q[perm] * np.array([-1.0, 1.0, 1.0])
    q = (q + mirrored) / 2
    q -= q.mean(0)
    q *= 90.0 / np.linalg.norm(q[45] - q[36])
    return q


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    folder = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "..", "shared", "data", "fixtures",
                                                                "aflw2000_3d_16")
    q = main(folder)
    print("MEAN_FACE_68 = np.array([")
    for i in range(0, 68, 3):
        print("    " + " ".join(f"[{a:.1f}, {b:.1f}, {c:.1f}]," for a, b, c in q[i:i + 3]))
    print("], dtype=np.float32)")
