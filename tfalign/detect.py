"""Offline face boxes for ``python -m tfalign.predict``, mapped to the box the model contract crops on.

Why a detector of our own: the brief's first choice was OpenCV's bundled cascades (``cv2.data.haarcascades``).
Measured on the pinned wheel (opencv-python-headless 5.0.0.93): ``cv2.data`` holds only ``__init__.py`` (no
cascade XML) and ``cv2.CascadeClassifier`` no longer exists in OpenCV 5. ``cv2.FaceDetectorYN`` (YuNet) exists but
needs an ONNX weights file that nothing may download at run time. So tfalign trains and ships its own and offers:

* ``detector`` (default): :mod:`tfalign.detector`, a small CenterNet trained on LFPW + MTFL
  (``tfalign/weights/face_detector``, model card there), run with LiteRT on the whole image. Its box is mapped to
  the contract box by the calibration stored beside its weights (measured on LFPW ``#val``). When it finds no
  face above its score threshold, the portrait prior below is used instead, and the output says so.
* ``portrait``: one face per image, framed like a portrait (LFPW/300-W style, the face about half the frame). The
  detector box is the whole image, mapped to the contract's box by :data:`PORTRAIT`, a calibration fitted on the
  LFPW training faces.
* ``box``: the caller's own box (``--box x,y,w,h``, e.g. from any detector) mapped with a calibration of the
  same form, identity by default.

Whatever the start, ``predict`` then *refines*: it re-crops on the tight box of the predicted points (the
contract's own box definition) and runs again — the way phone trackers seed a frame from the previous one.

A calibration maps a detector box (x, y, w, h) to the tight landmark box:
``(x + dx * w, y + dy * h, sw * w, sh * h)``; :func:`fit_calibration` takes the median of each ratio over faces.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class BoxCalibration:
    """Detector box → contract box (tight box of the scheme's points): see the module docstring."""
    dx: float = 0.0
    dy: float = 0.0
    sw: float = 1.0
    sh: float = 1.0
    fitted_on: str = ""
    command: str = ""

    def apply(self, box: Sequence[float]) -> tuple:
        x, y, w, h = (float(v) for v in box)
        if not (w > 0 and h > 0):
            raise ValueError(f"box: width and height must be > 0, got {tuple(box)}")
        return (x + self.dx * w, y + self.dy * h, self.sw * w, self.sh * h)


IDENTITY = BoxCalibration(fitted_on="none: the box is used as given")

#: Whole image → tight 68-point box on portrait-framed faces. Fitted with the command below on the 733 faces of
#: LFPW ``#train``; on the 72 ``#val`` faces the mapped box has IoU 0.883 with the true box (median; 10th
#: percentile 0.506), centre error 0.027 of the face size (median; p90 0.225), scale ratio 0.999
#: (bench/results/detect_calibration.json). The refinement in ``predict`` corrects the rest: with the shipped
#: mobile_two_stage (float32 export), inter-ocular NME on those faces is 0.0498 from this box, 0.0431 after two
#: refinements, 0.0415 from the ground-truth box (same command with ``--model``).
PORTRAIT = BoxCalibration(dx=0.2514, dy=0.2556, sw=0.4984, sh=0.4975,
                          fitted_on="LFPW trainset #train (300w_68 tight boxes), whole-image detector box",
                          command="python bench/detect_calibration.py --data ../shared/data/lfpw/trainset")

METHODS = ("detector", "portrait", "box")
DEFAULT_METHOD = "detector"


def fit_calibration(detector_boxes: np.ndarray, tight_boxes: np.ndarray, fitted_on: str = "",
                    command: str = "") -> BoxCalibration:
    """Median-ratio fit of :class:`BoxCalibration` from paired boxes [F, 4] (x, y, w, h)."""
    d = np.asarray(detector_boxes, np.float64).reshape(-1, 4)
    t = np.asarray(tight_boxes, np.float64).reshape(-1, 4)
    if d.shape != t.shape or not len(d):
        raise ValueError(f"need as many detector boxes as tight boxes (> 0), got {d.shape} and {t.shape}")
    if np.any(d[:, 2:] <= 0):
        raise ValueError("detector boxes must have positive width and height")
    return BoxCalibration(dx=float(np.median((t[:, 0] - d[:, 0]) / d[:, 2])),
                          dy=float(np.median((t[:, 1] - d[:, 1]) / d[:, 3])),
                          sw=float(np.median(t[:, 2] / d[:, 2])), sh=float(np.median(t[:, 3] / d[:, 3])),
                          fitted_on=fitted_on, command=command)


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = iw * ih
    union = aw * ah + bw * bh - inter
    return float(inter / union) if union > 0 else 0.0


def portrait_box(image_shape: Sequence[int], calibration: BoxCalibration = PORTRAIT) -> tuple:
    """Contract box of the one face of a portrait-framed image of shape (H, W[, C])."""
    h, w = int(image_shape[0]), int(image_shape[1])
    if h <= 0 or w <= 0:
        raise ValueError(f"image: empty image of shape {tuple(image_shape)}")
    return calibration.apply((0.0, 0.0, float(w), float(h)))


def parse_box(text: str) -> tuple:
    """``"x,y,w,h"`` → floats (ValueError naming --box)."""
    try:
        vals = tuple(float(v) for v in text.split(","))
    except ValueError:
        vals = ()
    if len(vals) != 4 or not all(np.isfinite(vals)) or vals[2] <= 0 or vals[3] <= 0:
        raise ValueError(f"--box: expected x,y,w,h with w, h > 0, got '{text}'")
    return vals


def find_face(image_rgb: np.ndarray, method: str = DEFAULT_METHOD, num_threads: int = 1) -> tuple:
    """(contract box, how it was found, detector score or None) of the one face to start from.

    ``method`` is ``detector`` (the best face of the shipped detector, the portrait prior when it finds none:
    ``how`` then says so) or ``portrait``.
    """
    if method == "portrait":
        return portrait_box(np.shape(image_rgb)), "portrait", None
    if method != "detector":
        raise ValueError(f"detector (--detector): expected one of detector, portrait, got {method!r}")
    from tfalign.detector import default_detector

    found = default_detector(num_threads).detect(image_rgb, max_faces=1)
    if found:
        return tuple(found[0].box), "detector", float(found[0].score)
    return portrait_box(np.shape(image_rgb)), "portrait (the detector found no face)", None
