"""Head pose from 68 landmarks: ``cv2.solvePnP`` of the 2D points against the 3D mean face of ``face3d``.

Used where a dataset carries no pose label (LFPW, 300-W) but a model is trained with one (Pose-Tree-MoE gates its
experts on head pose). The angles are in the convention of :func:`tfalign.data.face3d.rotation_matrix` (the
synthetic faces' ``pose_pyr``). AFLW2000-3D's ``Pose_Para`` (stored raw by the reader) uses the 3DDFA convention
(R = Rx·Ry·Rz in a y-up frame): its pitch has the opposite sign and large poses decompose differently;
:func:`pose_para_to_pyr` converts it.

Camera: a pinhole with focal length = the larger image side and the principal point at the image centre, the usual
guess for uncalibrated photos; the angles are insensitive to it at face distances (the error on the AFLW2000-3D
fixtures is measured by tests/test_pose.py).
"""
from __future__ import annotations

import cv2
import numpy as np

from tfalign.data import face3d


def _image_wh(image_size) -> tuple:
    if np.isscalar(image_size):
        w = h = float(image_size)
    else:
        size = tuple(image_size)
        if len(size) != 2:
            raise ValueError(f"image_size must be a side or (width, height), got {image_size!r}")
        w, h = float(size[0]), float(size[1])
    if not (np.isfinite(w) and np.isfinite(h)) or w <= 0 or h <= 0:
        raise ValueError(f"image_size must be positive, got {image_size!r}")
    return w, h


def estimate_pose(points68, image_size) -> tuple:
    """(pitch, yaw, roll) in radians of a face from its 68 (300-W markup) points.

    Args:
        points68: [68, 2] 0-based pixel coordinates in the image.
        image_size: the image's side, or (width, height) in pixels (sets the guessed camera intrinsics).

    Raises:
        ValueError: wrong point count, non-finite points, a bad image size, or a degenerate point set.
    """
    pts = np.asarray(points68, np.float64)
    if pts.shape != (len(face3d.MEAN_FACE_68), 2):
        raise ValueError(f"points68 must have shape [68, 2] ({face3d.SCHEME} markup), got {pts.shape}")
    if not np.all(np.isfinite(pts)):
        raise ValueError("points68 contain NaN or infinite values")
    if np.ptp(pts[:, 0]) <= 0 or np.ptp(pts[:, 1]) <= 0:
        raise ValueError("points68 are degenerate (zero width or height): no pose can be estimated")
    w, h = _image_wh(image_size)
    f = max(w, h)
    camera = np.array([[f, 0.0, w / 2.0], [0.0, f, h / 2.0], [0.0, 0.0, 1.0]])
    model = face3d.MEAN_FACE_68.astype(np.float64)
    # EPnP needs no initial guess, then Levenberg-Marquardt refines it (the ITERATIVE default alone can land in a
    # mirrored local minimum for profile faces).
    ok, rvec, tvec = cv2.solvePnP(model, pts, camera, None, flags=cv2.SOLVEPNP_EPNP)
    if not ok:
        raise ValueError("points68: solvePnP found no pose")
    ok, rvec, tvec = cv2.solvePnP(model, pts, camera, None, rvec, tvec, useExtrinsicGuess=True,
                                  flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok:
        raise ValueError("points68: solvePnP found no pose")
    rotation, _ = cv2.Rodrigues(rvec)
    return face3d.rotation_to_pyr(rotation)


def pose_para_to_pyr(pose_para) -> tuple:
    """AFLW2000-3D / 3DDFA ``Pose_Para[:3]`` (pitch, yaw, roll) → (pitch, yaw, roll) of ``face3d.rotation_matrix``.

    3DDFA builds R = Rx(pitch)·Ry(yaw)·Rz(roll) with transposed elementary rotations in a y-up, z-towards-the-camera
    model frame; ``face3d`` is y-down, z-away. The same rotation in our frame is F·R·F with F = diag(1, -1, -1).
    """
    x, y, z = (float(v) for v in np.asarray(pose_para, np.float64).reshape(-1)[:3])
    rx = np.array([[1, 0, 0], [0, np.cos(x), np.sin(x)], [0, -np.sin(x), np.cos(x)]])
    ry = np.array([[np.cos(y), 0, -np.sin(y)], [0, 1, 0], [np.sin(y), 0, np.cos(y)]])
    rz = np.array([[np.cos(z), np.sin(z), 0], [-np.sin(z), np.cos(z), 0], [0, 0, 1]])
    flip = np.diag([1.0, -1.0, -1.0])
    return face3d.rotation_to_pyr(flip @ (rx @ ry @ rz) @ flip)
