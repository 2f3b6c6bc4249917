"""Landmarks on video: tracking, one-euro smoothing, re-detection, and the annotated video.

How a frame is processed (:class:`Tracker`), the way phone face trackers work:

1. **Box from the previous frame.** The crop is cut from the tight box of the previous frame's (raw) landmarks —
   exactly the contract's box definition, so the model sees the face as it did in training. The first frame, and
   any frame after tracking was lost, starts from the detector (the portrait prior of :mod:`tfalign.detect`, or
   the caller's box / detector) and refines like ``python -m tfalign.predict``.
2. **Confidence proxy.** The contract exposes points only, no score. A landmark model that sees a face answers
   in *image* coordinates: crop the same face a little off-centre and the points stay where they are. A model
   that sees no face answers with a face-shaped guess tied to the *crop*, which moves with it. So the model runs a
   second time on the box shifted by ``check_shift`` × its side along both axes, and
   ``confidence = 1 - mean point displacement / crop displacement`` (clipped to [0, 1]): 1 for a perfectly
   tracked face, 0 when the points just follow the crop.
3. **Lost → re-detect.** When the confidence falls under ``min_confidence`` or more than ``max_outside`` of the
   points leave the frame, the frame is re-detected; if that also fails, the frame has no face and the next
   frame starts from the detector again. The smoother restarts whenever a new track starts, so two faces are
   never blended.
4. **Smoothing.** :class:`tfalign.smoothing.LandmarkSmoother` (one-euro, speed in face sizes per second) on the
   reported points; the raw points drive the next box, so smoothing never feeds back into the crop.

``python -m tfalign.predict VIDEO`` writes ``<stem>.landmarks.mp4`` (overlay) and ``<stem>.landmarks.json``.
"""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Callable, Iterable, Iterator, Optional

import numpy as np

from tfalign.smoothing import DEFAULTS, LandmarkSmoother

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")
#: Frame rate assumed for image sequences (no container to ask).
DEFAULT_FPS = 30.0
#: Written with OpenCV's bundled MPEG-4 Part 2 encoder: the only .mp4 codec the pip OpenCV wheels ship (no H.264).
FOURCC = "mp4v"


def is_video(path) -> bool:
    return os.fspath(path).lower().endswith(VIDEO_EXTENSIONS)


@dataclasses.dataclass(frozen=True, eq=False)
class TrackedFrame:
    """One frame's result.

    Attributes:
        index: frame number (0-based).
        time: timestamp in seconds (the smoothing's clock).
        face: the smoothed face (:class:`tfalign.api.Face`), or None when no face was found in this frame.
        raw_points: the model's points before smoothing ([N, 2] float32), or None.
        confidence: the crop-consistency proxy in [0, 1] (see the module docstring); NaN when no face was run.
        redetected: True when the box came from the detector rather than the previous frame.
    """
    index: int
    time: float
    face: object
    raw_points: Optional[np.ndarray]
    confidence: float
    redetected: bool

    def to_dict(self) -> dict:
        out = {"index": self.index, "time": round(self.time, 6), "tracked": self.face is not None,
               "redetected": self.redetected,
               "confidence": None if math.isnan(self.confidence) else round(self.confidence, 4)}
        if self.face is not None:
            out["box"] = [round(float(v), 3) for v in self.face.box]
            out["points"] = np.round(np.asarray(self.face.points, np.float64), 3).tolist()
            out["raw_points"] = np.round(np.asarray(self.raw_points, np.float64), 3).tolist()
        return out


class Tracker:
    """Landmarks of one face across frames: ``tracker.update(frame)`` → :class:`TrackedFrame`.

    Args:
        landmarker: a :class:`tfalign.api.Landmarker` (``tfalign.load(...)``).
        min_cutoff, beta, d_cutoff: one-euro parameters (:data:`tfalign.smoothing.DEFAULTS`).
        smooth: False reports the raw points.
        color: channel order of NumPy frames, ``"RGB"`` or ``"BGR"``.
        fps: frame rate used for timestamps when ``update`` gets none.
        box: the face box (x, y, w, h) to start from and to re-detect with; None = ``detector``.
        detector: callable(image_rgb) → box or None (no face); default: the portrait prior.
        refine: refinement steps after a detection (as ``python -m tfalign.predict``).
        min_confidence: below this crop-consistency confidence the face counts as lost.
        max_outside: the face counts as lost when more than this fraction of its points is outside the frame.
        check_shift: offset of the consistency crop, as a fraction of the box side.

    Example (``model = tfalign.load(...)``; ``frames`` from a camera or ``cv2.VideoCapture``):

    >>> import numpy as np, tfalign
    >>> from tfalign.data.synthetic import make_records
    >>> model = tfalign.load("exports/default/mobile_two_stage_float32.tflite")
    >>> tracker = model.tracker(beta=40.0, fps=25.0)
    >>> image = make_records(1, size=160, seed=0)[0].image
    >>> first = tracker.update(image)
    >>> first.index, first.time, first.redetected          # the first frame always starts from the detector
    (0, 0.0, True)
    >>> second = tracker.update(image)
    >>> second.time                                        # index / fps unless update(frame, t=seconds)
    0.04
    >>> second.face is None or second.face.points.shape == (68, 2)   # None: no face (confidence too low)
    True
    """

    def __init__(self, landmarker, min_cutoff: float = DEFAULTS["min_cutoff"], beta: float = DEFAULTS["beta"],
                 d_cutoff: float = DEFAULTS["d_cutoff"], smooth: bool = True, color: str = "RGB",
                 fps: float = DEFAULT_FPS, box=None, detector: Optional[Callable] = None, refine: int = 2,
                 min_confidence: float = 0.5, max_outside: float = 0.5, check_shift: float = 0.1):
        from tfalign import detect
        from tfalign.api import COLORS, parse_boxes

        if color not in COLORS:
            raise ValueError(f"color: expected 'RGB' or 'BGR', got {color!r}")
        checks = {"fps": (fps, fps is not None and fps > 0, "> 0"),
                  "min_confidence": (min_confidence, 0 <= min_confidence <= 1, "in [0, 1]"),
                  "max_outside": (max_outside, 0 <= max_outside <= 1, "in [0, 1]"),
                  "check_shift": (check_shift, 0 < check_shift <= 1, "in (0, 1]"),
                  "refine": (refine, isinstance(refine, int) and refine >= 0, "an integer >= 0")}
        for key, (value, ok, what) in checks.items():
            if not ok:
                raise ValueError(f"{key}: expected {what}, got {value!r}")
        if detector is not None and not callable(detector):
            raise TypeError(f"detector: expected a callable image -> box, got {type(detector).__name__}")
        self.landmarker = landmarker
        self.smoother = LandmarkSmoother(min_cutoff, beta, d_cutoff)
        self.smooth, self.color, self.fps, self.refine = smooth, color, float(fps), refine
        self.min_confidence, self.max_outside, self.check_shift = min_confidence, max_outside, check_shift
        if box is not None:
            start = parse_boxes(box, "box")
            if len(start) != 1:
                raise ValueError(f"box: expected one (x, y, w, h), got {len(start)} boxes")
            self.detector = lambda image: start[0]
        else:
            self.detector = detector or (lambda image: detect.portrait_box(image.shape))
        self.index = 0
        self._box = None  # next frame's crop box; None = detect

    @property
    def params(self) -> dict:
        """The smoothing and tracking settings (written into the CLI's JSON)."""
        return {**self.smoother.params, "smooth": self.smooth, "min_confidence": self.min_confidence,
                "max_outside": self.max_outside, "check_shift": self.check_shift, "refine": self.refine}

    def reset(self) -> None:
        """Drop the track: the next frame is detected afresh."""
        self._box = None
        self.smoother.reset()

    def confidence(self, image: np.ndarray, box, points: np.ndarray) -> float:
        """Crop-consistency confidence of ``points`` predicted from ``box`` (see the module docstring)."""
        x, y, w, h = box
        d = self.check_shift * max(w, h)
        moved = self.landmarker.runner.predict(image, (x + d, y + d, w, h))
        drift = float(np.mean(np.linalg.norm(np.asarray(moved, np.float64) - points, axis=1)))
        return float(np.clip(1.0 - drift / (d * math.sqrt(2.0)), 0.0, 1.0))

    def _outside(self, image: np.ndarray, points: np.ndarray) -> float:
        h, w = image.shape[:2]
        out = (points[:, 0] < -0.5) | (points[:, 0] > w - 0.5) | (points[:, 1] < -0.5) | (points[:, 1] > h - 0.5)
        return float(out.mean())

    def _run(self, image: np.ndarray, detect_first: bool):
        """(points, box, confidence, redetected, ok) for one frame."""
        from tfalign.data import geometry
        from tfalign.predict import predict_image

        if detect_first:
            start = self.detector(image)
            if start is None:
                return None, None, float("nan"), True, False
            points, box, _ = predict_image(self.landmarker.runner, image, start, self.refine)
        else:
            box = self._box
            points = self.landmarker.runner.predict(image, box)
        points = np.asarray(points, np.float64)
        conf = self.confidence(image, box, points)
        ok = conf >= self.min_confidence and self._outside(image, points) <= self.max_outside
        if ok:
            new = geometry.points_box(points)
            ok = new[2] > 0 and new[3] > 0  # all points on a line cannot seed the next crop
        return points, box, conf, detect_first, ok

    def update(self, frame, t: Optional[float] = None) -> TrackedFrame:
        """Track one frame (array in ``color`` order, file path or PIL image) at time ``t`` seconds
        (default: ``index / fps``)."""
        from tfalign.api import Face, to_rgb
        from tfalign.data import geometry

        image = to_rgb(frame, self.color, f"frame {self.index}")
        t = self.index / self.fps if t is None else float(t)
        index, self.index = self.index, self.index + 1
        result = self._run(image, detect_first=self._box is None)
        if not result[-1] and not result[3]:  # lost while tracking: one more chance from the detector
            result = self._run(image, detect_first=True)
        points, box, conf, redetected, ok = result
        if not ok:
            self.reset()
            return TrackedFrame(index, t, None, None, conf, redetected)
        if redetected:
            self.smoother.reset()  # a new track: never blend with the face of the old one
        self._box = geometry.points_box(points)
        shown = self.smoother(t, points) if self.smooth else points
        face = Face(np.asarray(shown, np.float32), tuple(float(v) for v in box), self.landmarker.scheme)
        return TrackedFrame(index, t, face, np.asarray(points, np.float32), conf, redetected)


def read_video(path) -> tuple:
    """(frame iterator of BGR uint8 arrays, fps, frame count or 0) of a video file (ValueError naming it)."""
    import cv2

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"{path}: video not found")
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        raise ValueError(f"{path}: cannot open the video (unsupported container or codec)")
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    ok, first = cap.read()
    if not ok:
        cap.release()
        raise ValueError(f"{path}: no frame could be decoded")

    def frames() -> Iterator[np.ndarray]:
        try:
            yield first
            while True:
                ok, frame = cap.read()
                if not ok:
                    return
                yield frame
        finally:
            cap.release()

    return frames(), (fps if math.isfinite(fps) and fps > 0 else 0.0), max(count, 0)


def track(landmarker, frames, fps: Optional[float] = None, **options) -> Iterator[TrackedFrame]:
    """Yield a :class:`TrackedFrame` per frame of a video file or an iterable of images (lazily)."""
    if isinstance(frames, (str, os.PathLike)):
        it, file_fps, _ = read_video(frames)
        options["color"] = "BGR"
        fps = fps or file_fps or DEFAULT_FPS
    elif isinstance(frames, Iterable) and not isinstance(frames, np.ndarray):
        it = iter(frames)
        fps = fps or DEFAULT_FPS
    else:
        raise TypeError(f"frames: expected a video file path or an iterable of images, got {type(frames).__name__}")
    tracker = Tracker(landmarker, fps=fps, **options)
    for frame in it:
        yield tracker.update(frame)


class VideoWriter:
    """An .mp4 written atomically: frames go to a temporary file beside it, renamed into place on ``close``."""

    def __init__(self, path: str, fps: float, size: tuple):
        import cv2

        from tfalign.io import atomic_path

        self.path = os.fspath(path)
        self._ctx = atomic_path(self.path)
        tmp = self._ctx.__enter__()
        self._tmp = tmp + os.path.splitext(self.path)[1]  # OpenCV picks the container from the extension
        self._final_tmp = tmp
        self._writer = cv2.VideoWriter(self._tmp, cv2.VideoWriter_fourcc(*FOURCC), float(fps), tuple(size))
        if not self._writer.isOpened():
            self.abort()
            raise ValueError(f"{self.path}: OpenCV cannot write this video ({FOURCC} at {fps} fps, size {size})")

    def write(self, frame_bgr: np.ndarray) -> None:
        self._writer.write(frame_bgr)

    def close(self) -> None:
        self._writer.release()
        os.replace(self._tmp, self._final_tmp)
        self._ctx.__exit__(None, None, None)

    def abort(self) -> None:
        self._writer.release()
        if os.path.exists(self._tmp):
            os.unlink(self._tmp)
        try:
            self._ctx.__exit__(RuntimeError, RuntimeError("aborted"), None)
        except RuntimeError:
            pass


def render(frame_bgr: np.ndarray, result: TrackedFrame) -> np.ndarray:
    """The frame with the smoothed points and the crop box drawn (``tfalign.predict.draw``); untouched when lost."""
    import cv2

    from tfalign.predict import draw

    if result.face is None:
        return frame_bgr
    return draw(cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB), result.face.points, result.face.box)


# --------------------------------------------------------------------------------------------------------------
# python -m tfalign.predict VIDEO


def add_arguments(parser) -> None:
    """The video flags of ``python -m tfalign.predict``."""
    g = parser.add_argument_group("video (VIDEO files: " + ", ".join(VIDEO_EXTENSIONS) + ")")
    g.add_argument("--min-cutoff", type=float, default=DEFAULTS["min_cutoff"], metavar="HZ",
                   help="one-euro cutoff at rest: lower = steadier still face, more lag (default: %(default)s)")
    g.add_argument("--beta", type=float, default=DEFAULTS["beta"], metavar="B",
                   help="one-euro speed coefficient, speed in face sizes per second: higher = less lag in fast "
                        "motion, more jitter (default: %(default)s)")
    g.add_argument("--d-cutoff", type=float, default=DEFAULTS["d_cutoff"], metavar="HZ",
                   help="one-euro cutoff of the speed estimate (default: %(default)s)")
    g.add_argument("--no-smooth", action="store_true", help="report the raw points of every frame")
    g.add_argument("--min-confidence", type=float, default=0.5, metavar="C",
                   help="re-detect when the crop-consistency confidence (0..1, see tfalign/video.py) falls under "
                        "C (default: %(default)s)")
    g.add_argument("--fps", type=float, default=None, metavar="FPS",
                   help="frame rate for smoothing and the output video (default: the video's own, else 30)")
    g.add_argument("--no-video", action="store_true", help="write only the JSON, not the annotated .mp4")


def check_arguments(args) -> None:
    """ValueError naming the first bad video flag (before any video is read)."""
    rules = [("--min-cutoff", args.min_cutoff, args.min_cutoff > 0, "> 0"),
             ("--beta", args.beta, args.beta >= 0, ">= 0"),
             ("--d-cutoff", args.d_cutoff, args.d_cutoff > 0, "> 0"),
             ("--min-confidence", args.min_confidence, 0 <= args.min_confidence <= 1, "in [0, 1]"),
             ("--fps", args.fps, args.fps is None or args.fps > 0, "> 0")]
    for flag, value, ok, what in rules:
        if not ok or (value is not None and not math.isfinite(value)):
            raise ValueError(f"{flag}: must be {what}, got {value}")


def predict_video(landmarker, path: str, out: str, args, box=None) -> dict:
    """Track ``path`` (starting from ``box`` or the portrait prior), write ``<out>/<stem>.landmarks.json`` and
    (unless ``--no-video``) ``<out>/<stem>.landmarks.mp4``."""
    from tqdm import tqdm

    from tfalign.io import atomic_write_json

    check_arguments(args)
    frames, file_fps, count = read_video(path)
    fps = args.fps or file_fps or DEFAULT_FPS
    tracker = Tracker(landmarker, min_cutoff=args.min_cutoff, beta=args.beta, d_cutoff=args.d_cutoff,
                      smooth=not args.no_smooth, color="BGR", fps=fps, refine=args.refine, box=box,
                      min_confidence=args.min_confidence)
    stem = os.path.join(out, os.path.splitext(os.path.basename(path))[0] + ".landmarks")
    writer = None
    records = []
    try:
        for frame in tqdm(frames, total=count or None, desc=os.path.basename(path), unit="frame"):
            result = tracker.update(frame)
            records.append(result.to_dict())
            if not args.no_video:
                if writer is None:
                    writer = VideoWriter(stem + ".mp4", fps, (frame.shape[1], frame.shape[0]))
                writer.write(render(frame, result))
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    if writer is not None:
        writer.close()
    scheme = landmarker.scheme
    summary = {"video": path, "model": landmarker.source, "fps": fps, "frames": len(records),
               "tracked_frames": sum(r["tracked"] for r in records),
               "redetections": sum(r["redetected"] for r in records),
               "scheme": scheme.name, "point_names": list(scheme.point_names), "tracking": tracker.params,
               "coordinates": "image pixels, 0-based, pixel centres at integers; points smoothed, raw_points not",
               "video_out": None if args.no_video else stem + ".mp4", "per_frame": records}
    atomic_write_json(stem + ".json", summary)
    print(f"{path}: {summary['tracked_frames']}/{len(records)} frames tracked, {summary['redetections']} "
          f"detections → {stem}.json" + ("" if args.no_video else f", {stem}.mp4"))
    return summary


__all__ = ["Tracker", "TrackedFrame", "track", "read_video", "VideoWriter", "render", "is_video", "add_arguments",
           "predict_video", "check_arguments", "VIDEO_EXTENSIONS"]
