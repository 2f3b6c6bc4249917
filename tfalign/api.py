"""Face landmarks in three lines, from any tfalign model: ``tfalign.load(name_or_path).landmarks(image)``.

``load`` takes

* a packaged model name (``"mobile_two_stage"``): the Keras model with the weights shipped in ``tfalign/weights``;
* a training run folder (``python -m tfalign.train --out DIR``): the Keras model with its best weights;
* an exported ``.tflite`` file: run with LiteRT through the contract JSON beside it (``tfalign.runtime``) — the
  same file, preprocessing and decoding as on the phone, and no TensorFlow import.

Every backend crops, normalises and decodes with the same code (``tfalign.data.geometry``), so they give the same
points up to the export's numerical tolerance: float ``.tflite`` within 1e-3 of the crop side of Keras, int8 within
NME 0.02 (``mobile_export.conformance``; checked through this API in tests/test_api.py).

Without ``boxes``, the face is found as ``python -m tfalign.predict`` finds it: the best face of tfalign's own
detector (:mod:`tfalign.detector`; ``detector="portrait"`` for the portrait prior of :mod:`tfalign.detect`), then
``refine`` re-crops on the predicted points' box. For several faces pass your detector's boxes. Videos and camera streams: :meth:`Landmarker.track` and
:meth:`Landmarker.tracker` (:mod:`tfalign.video`).

Example, with the model ``make demo`` exports (``tfalign.load("mobile_two_stage")`` or a run folder work the same):

>>> import tfalign
>>> from tfalign.data.synthetic import make_records
>>> model = tfalign.load("exports/default/mobile_two_stage_float32.tflite")
>>> model.kind, model.scheme.name, model.scheme.num_points
('tflite', '300w_68', 68)
>>> image = make_records(1, size=160, seed=0)[0].image     # any RGB uint8 array, image file or PIL image
>>> faces = model.landmarks(image, color="RGB")            # the face detector finds the face
>>> faces[0].points.shape, faces[0].points.dtype
((68, 2), dtype('float32'))
>>> bgr = image[:, :, ::-1]                                 # OpenCV order: say so
>>> faces = model.landmarks(bgr, boxes=[(40, 40, 80, 80)], color="BGR", refine=0)
>>> faces[0].box                                            # the box the crop was cut from
(40.0, 40.0, 80.0, 80.0)
>>> model.landmarks(image.astype(float))
Traceback (most recent call last):
ValueError: image: expected uint8 pixels (0-255), got dtype float64; convert with (x * 255).round().astype(np.uint8)
"""
from __future__ import annotations

import dataclasses
import os
import sys
from typing import Optional, Sequence

import numpy as np

COLORS = ("RGB", "BGR")
IMAGE_TYPES = "a uint8 NumPy array (H×W gray or H×W×3 with color='RGB' or 'BGR'), an image file path or a PIL image"


@dataclasses.dataclass(frozen=True, eq=False)  # eq on arrays is ambiguous: compare .points explicitly
class Face:
    """One face's result.

    Attributes:
        points: [N, 2] float32 (x, y) in image pixels (0-based, pixel centres at integers), the scheme's order.
        box: (x, y, w, h) face box of the last crop (the contract's box: the tight box of the points it came from).
        scheme: the landmark markup (:class:`tfalign.schemes.LandmarkScheme`: ``name``, ``point_names``, groups...).
    """
    points: np.ndarray
    box: tuple
    scheme: object

    def to_dict(self) -> dict:
        """JSON-ready: scheme name, point names, box and points."""
        return {"scheme": self.scheme.name, "point_names": list(self.scheme.point_names),
                "box": [float(v) for v in self.box], "points": [[float(x), float(y)] for x, y in self.points],
                "coordinates": "image pixels, 0-based, pixel centres at integers"}


# --------------------------------------------------------------------------------------------------------------
# Inputs


def to_rgb(image, color: str = "RGB", name: str = "image") -> np.ndarray:
    """An image as a uint8 H×W×3 RGB array (a copy only when needed).

    ``color`` says what channel order a NumPy array has: nothing is guessed. Files and PIL images know theirs.
    TypeError for an unsupported type, ValueError for a bad array, color or file — each naming ``name``.
    """
    if color not in COLORS:
        raise ValueError(f"color: expected 'RGB' or 'BGR', got {color!r}")
    if isinstance(image, (str, os.PathLike)):
        return read_image(image, name)
    pil = sys.modules.get("PIL.Image")  # a PIL image can only exist when PIL is imported
    if pil is not None and isinstance(image, pil.Image):
        return np.asarray(image.convert("RGB"))
    if not isinstance(image, np.ndarray):
        raise TypeError(f"{name}: expected {IMAGE_TYPES}; got {type(image).__module__}.{type(image).__qualname__}")
    if image.dtype != np.uint8:
        raise ValueError(f"{name}: expected uint8 pixels (0-255), got dtype {image.dtype}"
                         + ("; convert with (x * 255).round().astype(np.uint8)" if image.dtype.kind == "f" else ""))
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        if image.size == 0:
            raise ValueError(f"{name}: empty image of shape {image.shape}")
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        hint = " (drop the alpha channel: image[..., :3])" if image.ndim == 3 and image.shape[2] == 4 else ""
        raise ValueError(f"{name}: expected an H×W×3 color or H×W gray array, got shape {image.shape}{hint}")
    return np.ascontiguousarray(image[:, :, ::-1]) if color == "BGR" else image


def read_image(path, name: str = "image") -> np.ndarray:
    """Image file → uint8 RGB (ValueError naming the file when it cannot be read)."""
    import cv2

    path = os.fspath(path)
    bgr = cv2.imread(path, cv2.IMREAD_COLOR) if os.path.isfile(path) else None
    if bgr is None:
        why = "not found" if not os.path.exists(path) else "unreadable or not an image OpenCV can decode"
        raise ValueError(f"{name} {path}: cannot read the image ({why})")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def parse_boxes(boxes, name: str = "boxes") -> list:
    """``(x, y, w, h)`` or a sequence / [F, 4] array of them → list of float tuples (ValueError naming ``name``)."""
    try:
        arr = np.asarray(boxes, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected (x, y, w, h) or a list of them, got {boxes!r}") from None
    if arr.shape == (4,):
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{name}: expected (x, y, w, h) or a list of them, got an array of shape {arr.shape}")
    for i, b in enumerate(arr):
        if not np.all(np.isfinite(b)) or b[2] <= 0 or b[3] <= 0:
            raise ValueError(f"{name}[{i}]: expected finite (x, y, w, h) with w, h > 0, got {tuple(b.tolist())}")
    return [tuple(float(v) for v in b) for b in arr]


# --------------------------------------------------------------------------------------------------------------
# Backends: each has ``kind``, ``spec`` (input/crop attributes, see tfalign.data.geometry), ``scheme_name`` and
# ``predict(image_rgb, box) -> [N, 2] image pixels``, the interface tfalign.predict.predict_image drives.


class KerasRunner:
    """A Keras landmark model run with the contract's crop math (``geometry.preprocess`` / ``points_to_image``)."""

    kind = "keras"

    def __init__(self, arch, config, model):
        from tfalign._keras import tf
        from tfalign.schemes import get_scheme

        self.spec = config.input
        self.scheme_name = config.input.schemes[0]
        self._n = get_scheme(self.scheme_name).num_points
        inference = arch.inference_model(config, model)
        shape = [1, self.spec.height, self.spec.width, self.spec.channels]
        # One trace for every call: eager calls of a functional model cost several times the model itself.
        self._fn = tf.function(lambda x: inference(x, training=False),
                               input_signature=[tf.TensorSpec(shape, tf.float32)])

    def run_normalized(self, x: np.ndarray) -> np.ndarray:
        out = self._fn(np.asarray(x, np.float32)[None])
        return np.asarray(out, np.float32)[0, :self._n]

    def predict(self, image: np.ndarray, box: Sequence[float]) -> np.ndarray:
        from tfalign.data import geometry

        x, affine = geometry.preprocess(image, box, self.spec)
        return geometry.points_to_image(self.run_normalized(x), affine, self.spec)


class TFLiteRunner:
    """An exported ``.tflite`` through its contract (:class:`tfalign.runtime.LandmarkModel`)."""

    kind = "tflite"

    def __init__(self, model):
        self.model = model
        self.spec = model.spec
        self.scheme_name = model.contract["scheme"]["name"]

    def predict(self, image: np.ndarray, box: Sequence[float]) -> np.ndarray:
        return self.model.predict(image, box)


# --------------------------------------------------------------------------------------------------------------


class Landmarker:
    """A loaded model: :meth:`landmarks` for images, :meth:`track` / :meth:`tracker` for video.

    Made by :func:`load` (or :meth:`from_keras` for a model in memory). ``kind`` is ``keras`` or ``tflite``;
    ``source`` says where the weights came from.
    """

    def __init__(self, runner, source: str):
        from tfalign.schemes import get_scheme

        self.runner = runner
        self.source = source
        try:
            self.scheme = get_scheme(runner.scheme_name)
        except KeyError as exc:
            raise ValueError(f"{source}: {exc.args[0]}") from None

    @classmethod
    def from_keras(cls, model, config, arch=None, source: str = "keras model in memory") -> "Landmarker":
        """Wrap a Keras model (training or inference) with its architecture config (``config.input`` crops).

        ``arch`` defaults to the base behaviour: the ``landmarks`` output of a dict-output model.
        """
        from tfalign.models.base import Architecture

        return cls(KerasRunner(arch or Architecture(), config, model), source)

    @property
    def kind(self) -> str:
        return self.runner.kind

    @property
    def input_spec(self):
        """Crop size, normalisation and crop definition (``height``, ``width``, ``crop_scale``, ``shift_x``...)."""
        return self.runner.spec

    def __repr__(self) -> str:
        s = self.runner.spec
        return (f"Landmarker({self.kind}, {self.scheme.name}: {self.scheme.num_points} points, "
                f"{s.height}x{s.width} input, source={self.source!r})")

    def landmarks(self, image, boxes=None, color: str = "RGB", refine: int = 2, detector: str = "detector") -> list:
        """Landmarks of each face in ``image`` → list of :class:`Face` (one per box; one face without boxes).

        Args:
            image: a uint8 NumPy array (H×W×3 in the order ``color`` names, or H×W gray), an image file path, or a
                PIL image.
            boxes: face boxes ``(x, y, w, h)`` in pixels (one, or a list), tight around the face like the
                contract's box; None = one face found as ``python -m tfalign.predict`` finds it (``detector``).
            color: channel order of a NumPy ``image``: ``"RGB"`` or ``"BGR"`` (OpenCV). Ignored for files / PIL.
            refine: re-crop on the predicted points' box and run again up to this many times (stops early when
                the prediction is no face); 0 = one run on the given box.
            detector: without ``boxes``: ``"detector"`` (tfalign's face detector, the best face; the portrait
                prior when it finds none) or ``"portrait"`` (one face framed like a portrait).
        """
        from tfalign import detect
        from tfalign.predict import predict_image

        if isinstance(refine, bool) or not isinstance(refine, (int, np.integer)) or refine < 0:
            raise ValueError(f"refine: expected an integer >= 0, got {refine!r}")
        rgb = to_rgb(image, color)
        starts = [detect.find_face(rgb, detector)[0]] if boxes is None else parse_boxes(boxes)
        faces = []
        for start in starts:
            points, box, _ = predict_image(self.runner, rgb, start, int(refine))
            faces.append(Face(np.asarray(points, np.float32), tuple(float(v) for v in box), self.scheme))
        return faces

    def tracker(self, **options):
        """A :class:`tfalign.video.Tracker` for frames arriving one by one (camera): ``tracker.update(frame)``.

        Options (smoothing parameters, ``box``, ``detector``, ``min_confidence``...): see ``Tracker``.
        """
        from tfalign.video import Tracker

        return Tracker(self, **options)

    def track(self, frames, fps: Optional[float] = None, **options) -> list:
        """Landmarks per frame of a video file or a sequence of images, smoothed and tracked.

        Args:
            frames: a video file path, or an iterable of images (anything :meth:`landmarks` takes).
            fps: frame rate for the smoothing's timestamps; None = the video file's rate (30 for image sequences).
            options: :class:`tfalign.video.Tracker` options (``min_cutoff``, ``beta``, ``d_cutoff``,
                ``smooth``, ``color``, ``box``, ``detector``, ``min_confidence``, ...).

        Returns a list of :class:`tfalign.video.TrackedFrame` (``face`` is None on frames without a face).
        """
        from tfalign.video import track

        return list(track(self, frames, fps=fps, **options))


def load(name_or_path, num_threads: int = 1, which: str = "best") -> Landmarker:
    """Load a model for inference: a packaged name, a training run folder or an exported ``.tflite``.

    Args:
        name_or_path: ``"mobile_two_stage"`` (or another preset with shipped weights), a run folder written by
            ``python -m tfalign.train``, or a ``.tflite`` with its ``.contract.json`` beside it.
        num_threads: LiteRT CPU threads (``.tflite`` only).
        which: for a run folder, ``best`` (lowest validation NME) or ``last`` checkpoint.

    TypeError when ``name_or_path`` is not a str / path; ValueError naming it when it is neither an existing
    file or folder of the right kind nor a model with shipped weights.
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(f"name_or_path: expected a model name or a path, got {type(name_or_path).__name__}")
    if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads <= 0:
        raise ValueError(f"num_threads: expected an integer > 0, got {num_threads!r}")
    path = os.fspath(name_or_path)
    if os.path.isfile(path):
        if path.endswith(".tflite"):
            from tfalign.runtime import LandmarkModel

            return Landmarker(TFLiteRunner(LandmarkModel(path, num_threads=num_threads)), f"tflite:{path}")
        hint = (" (CoreML runs only on Apple devices; load the .tflite exported beside it)"
                if path.endswith((".mlmodel", ".mlpackage")) else "")
        raise ValueError(f"name_or_path {path}: not a .tflite model{hint}")
    if os.path.isdir(path):
        if path.rstrip("/").endswith(".mlpackage"):
            raise ValueError(f"name_or_path {path}: CoreML runs only on Apple devices; load the exported .tflite")
        from tfalign.training import load_model_dir

        arch, config, model = load_model_dir(path, which)
        return Landmarker(KerasRunner(arch, config, model), f"run:{path}")
    from tfalign.models.base import list_models, load_pretrained

    if os.sep in path or path.endswith((".tflite", ".json")):
        raise ValueError(f"name_or_path {path}: no such file or folder")
    try:
        arch, config, model = load_pretrained(path)
    except KeyError:
        raise ValueError(f"name_or_path '{path}': neither a file, a folder nor a known model "
                         f"(known: {', '.join(list_models())})") from None
    return Landmarker(KerasRunner(arch, config, model), f"pretrained:{path}")


__all__ = ["load", "Landmarker", "Face", "to_rgb", "read_image", "parse_boxes", "KerasRunner", "TFLiteRunner"]
