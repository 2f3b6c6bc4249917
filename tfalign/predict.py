"""``python -m tfalign.predict IMAGE...``: face landmarks on photos with an exported model, through its contract.

For each image: a face box — ``--box``, else ``--detector``: tfalign's trained face detector (default; the best
face, see :mod:`tfalign.detector`) or the ``portrait`` prior of :mod:`tfalign.detect` — mapped to the contract's
box; the model runs through :class:`tfalign.runtime.LandmarkModel` (contract JSON only); ``--refine``
times the crop is re-centred on the tight box of the predicted points and the model runs again. Writes
``<out>/<image stem>.landmarks.png`` (points and box drawn) and ``<out>/<image stem>.landmarks.json``.

Video files (``.mp4``, ``.avi``, ...) are tracked instead (:mod:`tfalign.video`: box from the previous frame,
one-euro smoothing, re-detection when lost): ``<out>/<stem>.landmarks.mp4`` (overlay) and ``.landmarks.json``
(points per frame).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

DEFAULT_MODEL = os.path.join("exports", "default", "mobile_two_stage_float32.tflite")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tfalign.predict",
                                description="Face landmarks on images with an exported .tflite model and its "
                                            "contract; writes an annotated PNG and a JSON of points per image.")
    p.add_argument("images", nargs="+", metavar="IMAGE",
                   help="image files (anything OpenCV reads) and/or video files (tracked, see the video flags)")
    p.add_argument("--model", default=DEFAULT_MODEL, metavar="FILE.tflite",
                   help=f"exported model; its FILE.contract.json must sit beside it (default: {DEFAULT_MODEL}, "
                        "written by `make demo` or `python -m tfalign.export --out exports/default`)")
    p.add_argument("--out", default="predictions", metavar="DIR", help="output folder (default: predictions)")
    p.add_argument("--box", metavar="X,Y,W,H",
                   help="face box in pixels from your own detector (applies to every image); overrides "
                        "--detector")
    p.add_argument("--detector", choices=("detector", "portrait"), default="detector",
                   help="how the face is found without --box: 'detector' (default) = tfalign's own face detector "
                        "(a small CenterNet trained on LFPW + MTFL, shipped in tfalign/weights/face_detector; the "
                        "highest-scoring face, its box mapped to the landmark model's box by a calibration "
                        "measured on LFPW; falls back to 'portrait' when it finds no face); 'portrait' = assume "
                        "one face framed like a portrait (the image's centre half). See tfalign/detect.py")
    p.add_argument("--refine", type=int, default=2, metavar="N",
                   help="re-crop on the predicted points' box and run again N times (default: 2)")
    p.add_argument("--threads", type=int, default=1, metavar="N", help="LiteRT CPU threads (default: 1)")
    from tfalign import video
    video.add_arguments(p)
    return p


def predict_image(runner, image, box, refine: int = 2) -> tuple:
    """(points [N, 2] image pixels, the contract box used last, refinement steps run) for one RGB uint8 image.

    Refinement stops early when the predicted points' box is less than a quarter or more than four times the
    size of the box they came from: the prediction is not a face then, and re-cropping on it would only drift.
    """
    from tfalign.data import geometry

    points = runner.predict(image, box)
    steps = 0
    for _ in range(refine):
        new = geometry.points_box(points)
        ratio = max(new[2], new[3]) / max(box[2], box[3])
        if not 0.25 <= ratio <= 4.0:
            break
        box = new
        points = runner.predict(image, box)
        steps += 1
    return points, box, steps


def draw(image_rgb, points, box):
    """BGR copy of the image with the box and points drawn, sized to the face."""
    import cv2
    import numpy as np

    out = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR)
    x, y, w, h = box
    radius = max(1, int(round(max(w, h) / 80)))
    cv2.rectangle(out, (int(round(x)), int(round(y))), (int(round(x + w)), int(round(y + h))), (255, 160, 0),
                  max(1, radius // 2), cv2.LINE_AA)
    for px, py in np.asarray(points):
        cv2.circle(out, (int(round(px)), int(round(py))), radius, (0, 255, 0), -1, cv2.LINE_AA)
    return out


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except (ValueError, FileExistsError) as exc:
        print("tfalign.predict: error: " + "; ".join(l.strip() for l in str(exc).splitlines() if l.strip()),
              file=sys.stderr)
        return 2
    return 0


def run(args) -> list:
    import cv2
    from tqdm import tqdm

    from tfalign import detect
    from tfalign.io import atomic_path, atomic_write_json
    from tfalign.runtime import LandmarkModel

    if args.refine < 0:
        raise ValueError(f"--refine: must be >= 0, got {args.refine}")
    if args.threads <= 0:
        raise ValueError(f"--threads: must be > 0, got {args.threads}")
    user_box = detect.parse_box(args.box) if args.box else None
    if not os.path.isfile(args.model):
        hint = " (run `make demo` to export the default model)" if args.model == DEFAULT_MODEL else ""
        raise ValueError(f"--model {args.model}: model file not found{hint}")
    from tfalign import video
    video.check_arguments(args)
    runner = LandmarkModel(args.model, num_threads=args.threads)
    stems = [os.path.splitext(os.path.basename(p))[0] for p in args.images]
    if len(set(stems)) != len(stems):
        raise ValueError("IMAGE: two inputs share a file name; their outputs would overwrite each other")
    videos = [p for p in args.images if video.is_video(p)]
    for path in videos:  # fail on an unreadable video before any output is written
        video.read_video(path)
    images = []
    # read everything first: a bad file fails before any output is written
    for path in [p for p in args.images if not video.is_video(p)]:
        bgr = cv2.imread(path, cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"{path}: cannot read the image (missing, unreadable or not an image)")
        images.append((path, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
    stems = [os.path.splitext(os.path.basename(p))[0] for p, _ in images]
    if len(set(stems)) != len(stems):
        raise ValueError("IMAGE: two images share a file name; their outputs would overwrite each other")
    contract = runner.contract
    results = []
    for (path, image), stem in tqdm(list(zip(images, stems)), desc="predict", unit="image",
                                    disable=len(images) < 2):
        if user_box is not None:
            start, how, score = user_box, "box", None
        else:
            start, how, score = detect.find_face(image, args.detector, args.threads)
        points, box, steps = predict_image(runner, image, start, args.refine)
        record = {"image": path, "model": args.model, "scheme": contract["scheme"]["name"],
                  "detector": how, "detector_score": score, "start_box": [float(v) for v in start],
                  "refine": steps, "box": [float(v) for v in box],
                  "point_names": contract["scheme"]["point_names"],
                  "points": [[float(x), float(y)] for x, y in points],
                  "coordinates": "image pixels, 0-based, pixel centres at integers"}
        base = os.path.join(args.out, stem + ".landmarks")
        ok, png = cv2.imencode(".png", draw(image, points, box))
        if not ok:
            raise ValueError(f"{path}: could not encode the annotated image")
        with atomic_path(base + ".png") as tmp:
            with open(tmp, "wb") as fh:
                fh.write(png.tobytes())
        atomic_write_json(base + ".json", record)
        results.append(record)
        print(f"{path}: {len(points)} points → {base}.png, {base}.json")
    if videos:
        from tfalign.api import Landmarker, TFLiteRunner
        landmarker = Landmarker(TFLiteRunner(runner), f"tflite:{args.model}")
        results += [video.predict_video(landmarker, path, args.out, args, user_box) for path in videos]
    return results


if __name__ == "__main__":
    sys.exit(main())
