"""Tracking through the Python API on videos made from real faces → table + bench/results/api_video.json.

Each face of the LFPW validation split becomes a 30 fps clip whose ground truth is known exactly: the photo at rest (``still``), moving
on a 1 Hz sine of 6 % of the image side (``moving``), replaced by a face-free frame (``gone``: gray noise), then
back at rest (``back``); every frame gets Gaussian pixel noise (σ = 4 levels), as a camera would.
``tfalign.load(MODEL).tracker()`` runs it; per segment the table gives

* NME (mean point error / inter-ocular distance of the truth) of the raw and the one-euro smoothed points;
* jitter: on still segments, the frame-to-frame standard deviation of each point around its mean, / inter-ocular;
* the crop-consistency confidence (tfalign/video.py), the share of frames tracked and the re-detections;
* ms per frame of ``Tracker.update`` (two model runs: the crop and the consistency crop).

    python bench/api_video.py --model runs/pipnet_mbv3_lfpw --faces 4
    python bench/api_video.py --model exports/default/mobile_two_stage_float32.tflite
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

DEFAULT_DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data",
                            "lfpw", "trainset")
FPS = 30.0
NOISE = 4.0  # gray levels, per pixel and frame
SEGMENTS = (("still", 20), ("moving", 30), ("gone", 10), ("back", 15))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="mobile_two_stage",
                   help="anything tfalign.load takes: a packaged name, a run folder or a .tflite "
                        "(default: %(default)s)")
    p.add_argument("--data", default=os.path.normpath(DEFAULT_DATA),
                   help="300-W style folder; its fixed #val split is used (default: LFPW)")
    p.add_argument("--faces", type=int, default=4, help="faces (clips), evenly spread over #val (default 4)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                                 "api_video.json"))
    args = p.parse_args(argv)
    if args.faces <= 0:
        p.error("--faces: must be > 0")
    return args


def weights_sha256(name_or_path: str) -> str:
    """sha256 of the weights file behind a tfalign.load argument (run folders change while they train)."""
    import hashlib

    from tfalign.models.base import WEIGHTS_ROOT
    if os.path.isdir(name_or_path):
        path = os.path.join(name_or_path, "best.weights.h5")
    elif os.path.isfile(name_or_path):
        path = name_or_path
    else:
        path = os.path.join(WEIGHTS_ROOT, name_or_path, "weights.npz")
    if not os.path.isfile(path):
        return "unknown"
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def clip(image: np.ndarray, points: np.ndarray, seed: int):
    """(frames, true points or None per frame, segment name per frame) for one face photo."""
    import cv2

    rng = np.random.default_rng(seed)
    h, w = image.shape[:2]
    amp = 0.06 * max(h, w)
    frames, truth, names = [], [], []
    for name, n in SEGMENTS:
        for k in range(n):
            if name == "gone":
                frames.append(rng.normal(110, 25, image.shape).clip(0, 255).astype(np.uint8))
                truth.append(None)
            else:
                dx = amp * np.sin(2 * np.pi * k / FPS) if name == "moving" else 0.0
                m = np.float64([[1, 0, dx], [0, 1, 0.3 * dx]])
                moved = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                # sensor noise: identical frames would hide the jitter a camera gives the model
                frames.append((moved + rng.normal(0, NOISE, moved.shape)).clip(0, 255).astype(np.uint8))
                truth.append(points + [dx, 0.3 * dx])
            names.append(name)
    return frames, truth, names


def main(argv=None) -> int:
    args = parse_args(argv)
    from tqdm import tqdm

    import tfalign
    from tfalign.data.pipeline import load_image
    from tfalign.data.records import DataError
    from tfalign.data.spec import load_records
    from tfalign.io import atomic_write_json

    try:
        records = load_records(f"300w:{args.data}#val")
    except (ValueError, DataError) as exc:
        print(f"api_video: error: --data {args.data}: {exc}".splitlines()[0], file=sys.stderr)
        return 2
    records = [records[i] for i in np.linspace(0, len(records) - 1, min(args.faces, len(records))).astype(int)]
    files = [r.source or r.image_path for r in records]
    sha = weights_sha256(args.model)
    model = tfalign.load(args.model)
    rows = {name: {"nme_raw": [], "nme_smooth": [], "jitter_raw": [], "jitter_smooth": [], "confidence": [],
                   "tracked": [], "redetected": [], "ms": []} for name, _ in SEGMENTS}
    for i, rec in enumerate(tqdm(records, desc="clips", unit="clip")):
        image, gt = load_image(rec), np.asarray(rec.points, np.float64)
        iod = float(model.scheme.norm_distance(gt, "inter_ocular"))
        frames, truth, names = clip(image, gt, i)
        tracker = model.tracker()
        seg_points = {}
        for frame, t, name in zip(frames, truth, names):
            start = time.perf_counter()
            r = tracker.update(frame)
            row = rows[name]
            row["ms"].append(1000 * (time.perf_counter() - start))
            row["tracked"].append(r.face is not None)
            row["redetected"].append(r.redetected)
            if not np.isnan(r.confidence):
                row["confidence"].append(r.confidence)
            if r.face is not None and t is not None:
                row["nme_raw"].append(np.linalg.norm(r.raw_points - t, axis=1).mean() / iod)
                row["nme_smooth"].append(np.linalg.norm(r.face.points - t, axis=1).mean() / iod)
                seg_points.setdefault(name, []).append((r.raw_points, r.face.points))
        for name in ("still", "back"):
            pairs = seg_points.get(name, [])[5:]  # after the smoother settles
            if len(pairs) >= 3:
                for key, idx in (("jitter_raw", 0), ("jitter_smooth", 1)):
                    stack = np.stack([p[idx] for p in pairs])
                    rows[name][key].append(float(np.linalg.norm(stack - stack.mean(0), axis=2).mean() / iod))

    def mean(v):
        return float(np.mean(v)) if len(v) else None

    table = {name: {k: mean(v) for k, v in row.items()} | {"frames": len(row["ms"])} for name, row in rows.items()}
    result = {"model": args.model, "model_repr": repr(model), "weights_sha256": sha, "data": args.data, "faces": files, "fps": FPS,
              "segments": dict(SEGMENTS), "tracking": model.tracker().params, "results": table,
              "command": "python bench/api_video.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    atomic_write_json(args.out, result)

    def fmt(v, spec):
        return format("—", f">{spec.split('.')[0]}") if v is None else format(v, spec)

    print(f"{repr(model)}; {len(files)} clips of {sum(n for _, n in SEGMENTS)} frames")
    print(f"{'segment':8} {'tracked':>7} {'redet':>6} {'conf':>5} {'NME raw':>8} {'NME 1€':>7} "
          f"{'jit raw':>8} {'jit 1€':>7} {'ms/frame':>8}")
    for name, r in table.items():
        print(f"{name:8} {fmt(r['tracked'], '7.2f')} {fmt(r['redetected'], '6.2f')} {fmt(r['confidence'], '5.2f')} "
              f"{fmt(r['nme_raw'], '8.4f')} {fmt(r['nme_smooth'], '7.4f')} {fmt(r['jitter_raw'], '8.4f')} "
              f"{fmt(r['jitter_smooth'], '7.4f')} {fmt(r['ms'], '8.1f')}")
    print(f"→ {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
