"""tfalign's own face detector: a small single-shot CenterNet trained on LFPW + MTFL, shipped as a ``.tflite``.

Why a trained detector: the pinned OpenCV (5.x headless) has neither ``CascadeClassifier`` nor cascade files, and
YuNet needs ONNX weights nothing may download (see :mod:`tfalign.detect`). So the package trains and ships one.

Pipeline (NumPy + LiteRT only, no TensorFlow at run time):

1. **Letterbox** the RGB image to ``input_size`` × ``input_size``: scale = input_size / max(H, W), top-left
   aligned, padded with gray 128 (:func:`letterbox`).
2. **Network** (:mod:`tfalign.detector.model`): one output [1, S/4, S/4, 5] = centre heatmap (sigmoid), then
   log(w / stride), log(h / stride) and the sub-cell centre offset (x, y) at stride 4.
3. **Decode** (:func:`decode`): 3×3 max-pool peak NMS on the heatmap, top-k peaks above ``score_threshold``,
   box = ((cell + offset) * stride ∓ size / 2) / scale in image pixels, then overlapping boxes (IoU > 0.5)
   and boxes nested in a face box suppressed.
4. **Calibrate**: the network was trained to predict the tight box of the 68 points (300-W markup); the
   measured residual mapping onto that box (:class:`tfalign.detect.BoxCalibration`, fitted on LFPW ``#val``) is
   stored in ``calibration.json`` beside the weights and applied by :meth:`FaceDetector.detect`, so the boxes it
   returns are the contract's box (what the landmark model's crop is defined on).

MTFL faces have only 5 points; their training box is the 68-point tight box predicted from the 5 points by
:class:`FivePointBox`, a linear map fitted on LFPW ``#train`` (where both are computed from the same 68 points).
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from typing import Optional, Sequence

import numpy as np

WEIGHTS_DIR = pathlib.Path(__file__).resolve().parents[1] / "weights" / "face_detector"
MODEL_FILE = "face_detector.tflite"
CALIBRATION_FILE = "calibration.json"
STRIDE = 4
PAD_VALUE = 128
DEFAULT_SCORE_THRESHOLD = 0.3


@dataclasses.dataclass(frozen=True)
class Detection:
    """One face: ``box`` (x, y, w, h) image pixels (calibrated to the contract box) and the heatmap ``score``."""
    box: tuple
    score: float


def letterbox(image: np.ndarray, size: int) -> tuple:
    """RGB uint8 [H, W, 3] → (float32 [size, size, 3] in 0..255, scale); image pixel p maps to p * scale.

    Top-left aligned so that the mapping is a pure scale (a centred pad would add an offset to undo).
    """
    import cv2

    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image: expected an H×W×3 RGB array, got shape {image.shape}")
    h, w = image.shape[:2]
    scale = size / max(h, w)
    nw, nh = max(1, int(round(w * scale))), max(1, int(round(h * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    out = np.full((size, size, 3), PAD_VALUE, np.uint8)
    out[:nh, :nw] = cv2.resize(np.ascontiguousarray(image, np.uint8), (nw, nh), interpolation=interp)
    return out.astype(np.float32), float(scale)


def box_iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` [N, 4] with every box of ``b`` [M, 4] (x, y, w, h) → [N, M]."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 0] + a[:, None, 2], b[None, :, 0] + b[None, :, 2])
    y2 = np.minimum(a[:, None, 1] + a[:, None, 3], b[None, :, 1] + b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def decode(output: np.ndarray, scale: float = 1.0, score_threshold: float = DEFAULT_SCORE_THRESHOLD,
           top_k: int = 20, stride: int = STRIDE, nms_iou: float = 0.5, nest: float = 0.7) -> list:
    """Network output [Ho, Wo, 5] (or [1, Ho, Wo, 5]) → list of (box (x, y, w, h) in image pixels, score).

    Peaks are cells equal to the 3×3 maximum of the heatmap (CenterNet's max-pool NMS); best first. Overlapping
    peaks of one face (IoU > ``nms_iou``) are then dropped so each face is reported once, and of two boxes one of
    which lies inside the other (``nest`` of the smaller's area), the larger is kept unless its score is under
    half the smaller's.
    """
    out = np.asarray(output, np.float32)
    if out.ndim == 4:
        out = out[0]
    if out.ndim != 3 or out.shape[-1] != 5:
        raise ValueError(f"output: expected [H, W, 5] (heatmap, log w, log h, dx, dy), got shape {out.shape}")
    if not scale > 0:
        raise ValueError(f"scale: must be > 0, got {scale}")
    heat = out[..., 0]
    padded = np.pad(heat, 1, constant_values=-np.inf)
    hh, ww = heat.shape
    pooled = np.max(np.stack([padded[i:i + hh, j:j + ww] for i in range(3) for j in range(3)]), axis=0)
    peaks = np.argwhere((heat >= pooled) & (heat >= score_threshold))
    order = np.argsort(-heat[peaks[:, 0], peaks[:, 1]], kind="stable")[:top_k]
    boxes, scores = [], []
    for cy, cx in peaks[order]:
        lw, lh, ox, oy = out[cy, cx, 1:]
        w, h = np.exp(np.clip([lw, lh], -10, 10)) * stride
        x, y = (cx + ox) * stride, (cy + oy) * stride
        boxes.append(((x - w / 2) / scale, (y - h / 2) / scale, w / scale, h / scale))
        scores.append(float(heat[cy, cx]))
    keep = []
    for i, b in enumerate(boxes):
        if all(box_iou_matrix([b], [boxes[k]])[0, 0] <= nms_iou for k in keep):
            keep.append(i)
    # Faces do not nest: a box mostly inside another is a part of that face (an eye, a nose) seen as a small
    # face, or the face seen as part of a bigger one. The larger box wins unless it is much less sure.
    drop = set()
    for i in keep:
        for j in keep:
            if i == j or i in drop or j in drop or boxes[i][2] * boxes[i][3] > boxes[j][2] * boxes[j][3]:
                continue
            small, big = boxes[i], boxes[j]
            iw = max(0.0, min(small[0] + small[2], big[0] + big[2]) - max(small[0], big[0]))
            ih = max(0.0, min(small[1] + small[3], big[1] + big[3]) - max(small[1], big[1]))
            if iw * ih >= nest * small[2] * small[3]:
                drop.add(i if scores[j] >= 0.5 * scores[i] else j)
    keep = [i for i in keep if i not in drop]
    return [(tuple(float(v) for v in boxes[i]), scores[i]) for i in keep]


@dataclasses.dataclass(frozen=True)
class FivePointBox:
    """5 MTFL points (left eye, right eye, nose, left/right mouth corner) → tight 68-point box (x, y, w, h).

    With centroid c and scale s = hypot(inter-ocular, eye-to-mouth) of the 5 points, the features are the 10
    coordinates (p - c) / s plus 1; ``coef`` [11, 4] maps them linearly to the box centre offset / s and
    log(w / s), log(h / s). Linear rather than a fixed ratio because yaw moves the jaw (and so the box centre)
    against the inner points, which the nose-to-eyes offsets reveal. Fitted by :func:`fit_five_point_box`.
    """
    coef: tuple

    @staticmethod
    def _frame(points5: np.ndarray) -> tuple:
        p = np.asarray(points5, np.float64).reshape(5, 2)
        c = p.mean(0)
        eye, mouth = (p[0] + p[1]) / 2, (p[3] + p[4]) / 2
        s = float(np.hypot(np.linalg.norm(p[1] - p[0]), np.linalg.norm(mouth - eye)))
        if not s > 0:
            raise ValueError(f"points5: degenerate 5-point face {p.tolist()}")
        return np.concatenate([((p - c) / s).ravel(), [1.0]]), c, s

    def __call__(self, points5: np.ndarray) -> tuple:
        f, c, s = self._frame(points5)
        dx, dy, lw, lh = f @ np.asarray(self.coef, np.float64).reshape(11, 4)
        w, h = np.exp(lw) * s, np.exp(lh) * s
        return (float(c[0] + dx * s - w / 2), float(c[1] + dy * s - h / 2), float(w), float(h))


def fit_five_point_box(points5: np.ndarray, tight_boxes: np.ndarray, ridge: float = 0.01) -> FivePointBox:
    """Ridge least-squares fit of :class:`FivePointBox` from faces' 5 points [F, 5, 2] and tight boxes [F, 4]."""
    pts = np.asarray(points5, np.float64)
    boxes = np.asarray(tight_boxes, np.float64).reshape(-1, 4)
    if pts.ndim != 3 or pts.shape[1:] != (5, 2) or len(pts) != len(boxes) or len(pts) < 11:
        raise ValueError(f"need [F, 5, 2] points and [F, 4] boxes with F >= 11, got {pts.shape} and {boxes.shape}")
    xs, ys = [], []
    for p, b in zip(pts, boxes):
        f, c, s = FivePointBox._frame(p)
        xs.append(f)
        ys.append([(b[0] + b[2] / 2 - c[0]) / s, (b[1] + b[3] / 2 - c[1]) / s, np.log(b[2] / s), np.log(b[3] / s)])
    x, y = np.array(xs), np.array(ys)
    coef = np.linalg.solve(x.T @ x + ridge * np.eye(11), x.T @ y)
    return FivePointBox(coef=tuple(float(v) for v in coef.ravel()))


class FaceDetector:
    """The shipped detector (or another ``.tflite`` + ``calibration.json`` pair) run with LiteRT.

    ``detect(image_rgb)`` → list of :class:`Detection`, best first, boxes already calibrated to the contract box.
    """

    def __init__(self, folder=None, num_threads: int = 1, score_threshold: Optional[float] = None):
        from ai_edge_litert.interpreter import Interpreter

        folder = pathlib.Path(folder) if folder is not None else WEIGHTS_DIR
        model, cal = folder / MODEL_FILE, folder / CALIBRATION_FILE
        for path in (model, cal):
            if not path.is_file():
                raise ValueError(f"face detector {folder}: {path.name} not found (train one with "
                                 "`python -m tfalign.detector train`)")
        try:
            with open(cal, encoding="utf-8") as fh:
                meta = json.load(fh)
            from tfalign.detect import BoxCalibration
            self.calibration = BoxCalibration(**{k: meta["calibration"][k] for k in ("dx", "dy", "sw", "sh")},
                                              fitted_on=meta["calibration"].get("fitted_on", ""),
                                              command=meta["calibration"].get("command", ""))
            self.input_size = int(meta["input_size"])
            default_threshold = float(meta.get("score_threshold", DEFAULT_SCORE_THRESHOLD))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"face detector {cal}: bad calibration file ({exc})") from None
        self.score_threshold = default_threshold if score_threshold is None else float(score_threshold)
        self.folder = folder
        self.interpreter = Interpreter(model_path=str(model), num_threads=num_threads)
        self.interpreter.allocate_tensors()
        self._in = self.interpreter.get_input_details()[0]
        self._out = self.interpreter.get_output_details()[0]
        if tuple(self._in["shape"][1:3]) != (self.input_size, self.input_size):
            raise ValueError(f"face detector {folder}: model input {tuple(self._in['shape'])} does not match "
                             f"input_size {self.input_size} in {CALIBRATION_FILE}")

    def raw(self, image_rgb: np.ndarray) -> tuple:
        """(network output [Ho, Wo, 5], letterbox scale) for one RGB uint8 image."""
        x, scale = letterbox(image_rgb, self.input_size)
        self.interpreter.set_tensor(self._in["index"], x[None])
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self._out["index"])[0], scale

    def detect_raw(self, image_rgb: np.ndarray, max_faces: Optional[int] = None) -> list:
        """Uncalibrated detections: boxes as the network predicts them (the 68-point tight box it was taught).

        ``max_faces`` cuts the list after decoding: the suppression of nested boxes needs all the peaks.
        """
        out, scale = self.raw(image_rgb)
        return [Detection(b, s) for b, s in decode(out, scale, self.score_threshold)][:max_faces]

    def detect(self, image_rgb: np.ndarray, max_faces: Optional[int] = None) -> list:
        """Faces in ``image_rgb`` (RGB uint8 H×W×3), best first; boxes mapped to the contract's box."""
        return [Detection(tuple(self.calibration.apply(d.box)), d.score)
                for d in self.detect_raw(image_rgb, max_faces)]

    def best_box(self, image_rgb: np.ndarray) -> Optional[tuple]:
        """The highest-scoring face's contract box, or None when no peak reaches the score threshold."""
        found = self.detect(image_rgb, max_faces=1)
        return found[0].box if found else None


_DEFAULT: dict = {}


def default_detector(num_threads: int = 1) -> FaceDetector:
    """The shipped detector, loaded once per thread count."""
    if num_threads not in _DEFAULT:
        _DEFAULT[num_threads] = FaceDetector(num_threads=num_threads)
    return _DEFAULT[num_threads]


__all__ = ["FaceDetector", "Detection", "FivePointBox", "fit_five_point_box", "letterbox", "decode",
           "box_iou_matrix", "default_detector", "WEIGHTS_DIR", "STRIDE"]
