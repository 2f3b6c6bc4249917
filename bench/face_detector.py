"""Measure the shipped face detector (tfalign/weights/face_detector) on held-out faces.

    python bench/face_detector.py --lfpw ../shared/data/lfpw/trainset --mtfl ../shared/data/mtfl/training.txt \
        --model /tmp/fd/m2s/mobile_two_stage_float32.tflite

* LFPW ``#val`` (never trained on; the box calibration was fitted on it): recall at IoU >= 0.5 and mean IoU of the
  highest-scoring detection (calibrated) vs the tight 68-point box, next to the portrait prior's.
* MTFL ``#val`` (never trained on): the same against the 5-point → 68-point box map (itself ~0.90 IoU on LFPW).
* Group pictures: LFPW ``#val`` faces pasted 4 to a 320×240 canvas at 20–90 px (face-free texture between
  them): recall at IoU >= 0.5 over all detections, and false detections per canvas.
* With ``--model`` (an exported landmark ``.tflite``, contract beside it): inter-ocular NME on LFPW ``#val`` of
  ``predict`` started from the ground-truth box, the detector's box and the portrait prior (0 and 2 refinements).
* Size of the ``.tflite`` and LiteRT latency (1 thread, median of 50 after 5 warm-ups; network + decode).

Prints a table and writes bench/results/face_detector.json.
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _rgb(path):
    import cv2
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"{path}: cannot read the image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _boxes_eval(fd, items):
    """items: [(rgb, truth box)] → recall@0.5 / mean IoU of the top detection, and of the best of all."""
    from tfalign import detector as det
    top, best, found = [], [], 0
    for img, gt in items:
        dets = fd.detect(img)
        ious = det.box_iou_matrix([d.box for d in dets], [gt])[:, 0] if dets else np.zeros(0)
        found += bool(dets)
        top.append(float(ious[0]) if len(ious) else 0.0)
        best.append(float(ious.max()) if len(ious) else 0.0)
    top, best = np.array(top), np.array(best)
    return {"faces": len(items), "images_with_a_detection": found,
            "recall_iou50_top1": float(np.mean(top >= 0.5)), "mean_iou_top1": float(np.mean(top)),
            "median_iou_top1": float(np.median(top)), "recall_iou50_any": float(np.mean(best >= 0.5)),
            "mean_iou_best": float(np.mean(best))}


def _portrait_eval(items):
    from tfalign import detect
    ious = np.array([detect.box_iou(detect.portrait_box(img.shape), gt) for img, gt in items])
    return {"faces": len(items), "recall_iou50": float(np.mean(ious >= 0.5)), "mean_iou": float(np.mean(ious)),
            "median_iou": float(np.median(ious))}


def _groups(fd, items, canvases, seed=0):
    """LFPW faces pasted 4 per 320×240 canvas; recall over all detections and false detections per canvas."""
    import cv2

    from tfalign import detector as det
    from tfalign.detector.train import _background
    rng = np.random.default_rng(seed)
    faces = [(img, np.asarray(gt)) for img, gt in items]
    hit, total, false = 0, 0, 0
    sizes = []
    for _ in range(canvases):
        back = _background(rng, faces, 320)
        canvas = (back[:240] if back is not None else np.full((240, 320, 3), 128, np.uint8)).copy()
        truths = []
        for q in range(4):
            img, gt = faces[rng.integers(len(faces))]
            f = float(np.exp(rng.uniform(np.log(20), np.log(90))))
            k = f / max(gt[2], gt[3])
            cell_x, cell_y = (q % 2) * 160, (q // 2) * 120
            cx, cy = cell_x + rng.uniform(0.35, 0.65) * 160, cell_y + rng.uniform(0.35, 0.65) * 120
            m = np.array([[k, 0, cx - k * (gt[0] + gt[2] / 2)], [0, k, cy - k * (gt[1] + gt[3] / 2)]])
            patch = cv2.warpAffine(img, m, (320, 240), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_CONSTANT,
                                   borderValue=(0, 0, 0))
            inside = cv2.warpAffine(np.ones(img.shape[:2], np.uint8), m, (320, 240), flags=cv2.INTER_NEAREST)
            cell = np.zeros((240, 320), bool)
            cell[cell_y:cell_y + 120, cell_x:cell_x + 160] = True
            sel = (inside > 0) & cell
            canvas[sel] = patch[sel]
            truths.append((cx - gt[2] * k / 2, cy - gt[3] * k / 2, gt[2] * k, gt[3] * k))
            sizes.append(f)
        dets = fd.detect(canvas)
        if dets:
            iou = det.box_iou_matrix([d.box for d in dets], truths)
            hit += int(np.sum(iou.max(0) >= 0.5))
            false += int(np.sum(iou.max(1) < 0.3))
        total += len(truths)
    return {"canvases": canvases, "faces": total, "face_px_range": [20, 90], "recall_iou50": hit / max(total, 1),
            "false_detections_per_canvas": false / max(canvases, 1)}


def _nme(model_path, records, images, fd):
    from tfalign import detect, metrics
    from tfalign.data import geometry
    from tfalign.predict import predict_image
    from tfalign.runtime import LandmarkModel
    runner = LandmarkModel(model_path)
    out = {k: [] for k in ("ground_truth_box", "detector_refine0", "detector_refine2", "portrait_refine0",
                           "portrait_refine2")}
    fallbacks = 0
    for r, img in zip(records, images):
        pts = runner.predict(img, geometry.points_box(r.points))
        out["ground_truth_box"].append(metrics.nme(pts, r.points, r.scheme)[0])
        found = fd.detect(img, max_faces=1)
        start = found[0].box if found else detect.portrait_box(img.shape)
        fallbacks += not found
        for k in (0, 2):
            pts = predict_image(runner, img, start, k)[0]
            out[f"detector_refine{k}"].append(metrics.nme(pts, r.points, r.scheme)[0])
            pts = predict_image(runner, img, detect.portrait_box(img.shape), k)[0]
            out[f"portrait_refine{k}"].append(metrics.nme(pts, r.points, r.scheme)[0])
    res = {k: float(np.mean(v)) for k, v in out.items()}
    # The mean is dominated by the few faces where the detector's best box is another face or a face part.
    res["median"] = {k: float(np.median(v)) for k, v in out.items()}
    res["faces_over_0.1"] = {k: int(np.sum(np.array(v) > 0.1)) for k, v in out.items()}
    res["detector_fell_back_to_portrait"] = fallbacks
    return res


def _latency(fd, images, runs=50, warmup=5):
    from tfalign import detector as det
    img = images[0]
    times_net, times_all = [], []
    for i in range(warmup + runs):
        t0 = time.perf_counter()
        out, scale = fd.raw(img)
        t1 = time.perf_counter()
        det.decode(out, scale, fd.score_threshold)
        t2 = time.perf_counter()
        if i >= warmup:
            times_net.append((t1 - t0) * 1e3)
            times_all.append((t2 - t0) * 1e3)
    return {"threads": 1, "runs": runs, "image_shape": list(img.shape),
            "median_ms_letterbox_and_network": float(np.median(times_net)),
            "median_ms_with_decode": float(np.median(times_all))}


def main(argv=None):
    import json

    from tfalign import detector as det
    from tfalign.data import geometry
    from tfalign.data.spec import load_records
    from tfalign.io import atomic_write_json

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lfpw", required=True, help="LFPW trainset folder (its #val split is measured)")
    p.add_argument("--mtfl", default="", help="MTFL training.txt (its #val split is measured)")
    p.add_argument("--model", help="exported landmark .tflite (contract beside it) for the end-to-end NME")
    p.add_argument("--detector", default=str(det.WEIGHTS_DIR), help="detector folder (default: the shipped one)")
    p.add_argument("--groups", type=int, default=50, help="group canvases (4 faces each)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "face_detector.json"))
    args = p.parse_args(argv)

    fd = det.FaceDetector(args.detector, num_threads=1)
    with open(os.path.join(args.detector, det.CALIBRATION_FILE), encoding="utf-8") as fh:
        meta = json.load(fh)
    val = load_records(f"300w:{args.lfpw}#val")
    images = [_rgb(r.image_path) for r in val]
    items = [(img, geometry.points_box(r.points)) for img, r in zip(images, val)]
    result = {"detector": os.path.relpath(args.detector), "tflite_bytes": os.path.getsize(
        os.path.join(args.detector, det.MODEL_FILE)), "input_size": fd.input_size,
        "score_threshold": fd.score_threshold, "calibration": meta["calibration"],
        "training": {k: meta.get("training", {}).get(k) for k in ("command", "steps", "train_seconds", "params",
                                                                   "train_faces")},
        "lfpw_val": _boxes_eval(fd, items), "lfpw_val_portrait_prior": _portrait_eval(items),
        "lfpw_val_groups": _groups(fd, items, args.groups), "latency": _latency(fd, images)}
    if args.mtfl:
        five = det.FivePointBox(tuple(meta["five_point_box"]["coef"]))
        mval = load_records(f"mtfl:{args.mtfl}#val")
        mitems = [(_rgb(r.image_path), five(r.points)) for r in mval]
        result["mtfl_val"] = _boxes_eval(fd, mitems)
        result["mtfl_val_portrait_prior"] = _portrait_eval(mitems)
    command = "python bench/face_detector.py --lfpw " + args.lfpw
    if args.mtfl:
        command += " --mtfl " + args.mtfl
    if args.model:
        import hashlib
        result["landmark_model"] = args.model
        with open(args.model, "rb") as fh:
            result["landmark_model_sha256"] = hashlib.sha256(fh.read()).hexdigest()
        result["lfpw_val_nme"] = _nme(args.model, val, images, fd)
        command += " --model " + args.model
    result["command"] = command

    print(f"detector {result['detector']}: {result['tflite_bytes'] / 1024:.0f} KiB, input {fd.input_size}, "
          f"LiteRT 1 thread {result['latency']['median_ms_with_decode']:.2f} ms (network "
          f"{result['latency']['median_ms_letterbox_and_network']:.2f} ms)")
    print(f"{'set':28s} {'faces':>6s} {'recall@.5':>10s} {'mean IoU':>9s}")
    rows = [("LFPW #val detector", result["lfpw_val"]["faces"], result["lfpw_val"]["recall_iou50_top1"],
             result["lfpw_val"]["mean_iou_top1"]),
            ("LFPW #val portrait prior", result["lfpw_val_portrait_prior"]["faces"],
             result["lfpw_val_portrait_prior"]["recall_iou50"], result["lfpw_val_portrait_prior"]["mean_iou"])]
    if args.mtfl:
        rows += [("MTFL #val detector", result["mtfl_val"]["faces"], result["mtfl_val"]["recall_iou50_top1"],
                  result["mtfl_val"]["mean_iou_top1"]),
                 ("MTFL #val portrait prior", result["mtfl_val_portrait_prior"]["faces"],
                  result["mtfl_val_portrait_prior"]["recall_iou50"], result["mtfl_val_portrait_prior"]["mean_iou"])]
    for name, n, rec, iou in rows:
        print(f"{name:28s} {n:6d} {rec:10.3f} {iou:9.3f}")
    g = result["lfpw_val_groups"]
    print(f"{'LFPW #val groups (4/canvas)':28s} {g['faces']:6d} {g['recall_iou50']:10.3f} {'-':>9s}   "
          f"false detections / canvas {g['false_detections_per_canvas']:.2f}")
    if args.model:
        print("landmark NME on LFPW #val (inter-ocular): " +
              ", ".join(f"{k} {v:.4f}" for k, v in result["lfpw_val_nme"].items() if isinstance(v, float)))
        print("  median: " + ", ".join(f"{k} {v:.4f}" for k, v in result["lfpw_val_nme"]["median"].items()))
        print("  faces with NME > 0.1: " + ", ".join(f"{k} {v}" for k, v in
                                                    result["lfpw_val_nme"]["faces_over_0.1"].items()))
    atomic_write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
