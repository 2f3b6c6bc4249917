"""The 3D 68-point mean face (iBUG/300-W markup), written once here.

Used to draw synthetic faces (`tfalign.data.synthetic`) and, with `cv2.solvePnP`, to estimate head pose from 68
predicted points. Frame: OpenCV camera frame of a frontal face: x to the image right, y down, z away from the camera
(so the nose tip has the smallest z); millimetres, origin at the centroid of the 68 points, outer eye corners 90 mm
apart (adult average outer canthal width). Exactly symmetric under the 300-W flip permutation.

Provenance: generalised Procrustes mean of the `pt3d_68` of the 16 AFLW2000-3D faces in
`../shared/data/fixtures/aflw2000_3d_16`, put in the frame above, symmetrised and scaled by
`bench/face3d_from_aflw2000.py`. Only these averaged numbers are shipped, no image or per-face annotation.
"""
from __future__ import annotations

import numpy as np

MEAN_FACE_68 = np.array([
    [-75.3, -31.7, 73.7], [-73.2, -10.8, 71.4], [-69.2, 8.3, 69.8],
    [-65.0, 25.2, 66.0], [-59.0, 43.0, 56.5], [-49.0, 57.3, 39.9],
    [-37.5, 66.1, 20.2], [-22.5, 73.9, 2.7], [0.0, 78.6, -4.5],
    [22.5, 73.9, 2.7], [37.5, 66.1, 20.2], [49.0, 57.3, 39.9],
    [59.0, 43.0, 56.5], [65.0, 25.2, 66.0], [69.2, 8.3, 69.8],
    [73.2, -10.8, 71.4], [75.3, -31.7, 73.7], [-58.6, -54.1, 8.7],
    [-50.0, -59.9, -3.8], [-39.1, -62.0, -12.0], [-28.6, -61.2, -16.9],
    [-19.3, -58.8, -19.2], [19.3, -58.8, -19.2], [28.6, -61.2, -16.9],
    [39.1, -62.0, -12.0], [50.0, -59.9, -3.8], [58.6, -54.1, 8.7],
    [0.0, -39.7, -22.9], [0.0, -27.4, -31.8], [0.0, -15.2, -41.4],
    [0.0, -4.8, -43.9], [-12.7, 3.9, -20.9], [-7.3, 5.0, -25.4],
    [0.0, 6.3, -27.6], [7.3, 5.0, -25.4], [12.7, 3.9, -20.9],
    [-45.0, -39.6, 1.7], [-38.2, -44.0, -6.6], [-28.7, -44.3, -6.9],
    [-19.8, -39.1, -4.1], [-27.9, -36.9, -6.7], [-38.0, -36.4, -4.3],
    [19.8, -39.1, -4.1], [28.7, -44.3, -6.9], [38.2, -44.0, -6.6],
    [45.0, -39.6, 1.7], [38.0, -36.4, -4.3], [27.9, -36.9, -6.7],
    [-26.8, 29.9, -8.1], [-17.7, 22.9, -20.8], [-6.1, 18.8, -27.5],
    [0.0, 20.1, -28.2], [6.1, 18.8, -27.5], [17.7, 22.9, -20.8],
    [26.8, 29.9, -8.1], [16.8, 36.8, -17.8], [8.7, 40.7, -22.5],
    [0.0, 41.4, -23.6], [-8.7, 40.7, -22.5], [-16.8, 36.8, -17.8],
    [-24.7, 29.5, -8.7], [-7.7, 26.2, -22.0], [0.0, 26.0, -23.9],
    [7.7, 26.2, -22.0], [24.7, 29.5, -8.7], [7.6, 32.2, -21.2],
    [0.0, 32.8, -22.4], [-7.6, 32.2, -21.2],
], dtype=np.float32)
MEAN_FACE_68.setflags(write=False)

#: Scheme of :data:`MEAN_FACE_68` (row i is point i of this markup).
SCHEME = "300w_68"


def rotation_matrix(pitch: float, yaw: float, roll: float) -> np.ndarray:
    """3x3 rotation (radians) in the camera frame above: R = Rz(roll) @ Ry(yaw) @ Rx(pitch).

    Applied to a frontal face (nose towards the camera, z < 0): positive pitch moves the nose down (looking down),
    positive yaw moves the nose to the image left, positive roll turns the face clockwise on screen (y is down).
    """
    cp, sp = np.cos(pitch), np.sin(pitch)
    cy, sy = np.cos(yaw), np.sin(yaw)
    cr, sr = np.cos(roll), np.sin(roll)
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return rz @ ry @ rx


def rotation_to_pyr(rotation: np.ndarray) -> tuple:
    """Inverse of :func:`rotation_matrix`: (pitch, yaw, roll) in radians, yaw in [-pi/2, pi/2]."""
    r = np.asarray(rotation, dtype=np.float64)
    yaw = float(np.arcsin(np.clip(-r[2, 0], -1.0, 1.0)))
    pitch = float(np.arctan2(r[2, 1], r[2, 2]))
    roll = float(np.arctan2(r[1, 0], r[0, 0]))
    return pitch, yaw, roll
