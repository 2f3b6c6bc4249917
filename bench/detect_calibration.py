"""Fit and measure tfalign.detect's PORTRAIT calibration (whole image → tight landmark box) on LFPW.

    python bench/detect_calibration.py --data ../shared/data/lfpw/trainset [--model exports/default/X.tflite]

Fits on ``#train``, reports box IoU and centre/size errors on ``#val`` for the fitted mapping and for the
mapping currently stored in tfalign/detect.py; with ``--model``, also the end-to-end inter-ocular NME of
``predict`` on ``#val`` (portrait prior, 0 and 2 refinements) against the ground-truth box. Writes
bench/results/detect_calibration.json.
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _boxes(records):
    from tfalign.data import geometry
    from tfalign.data.readers import image_size
    det, tight = [], []
    for r in records:
        w, h = image_size(r.image_path)
        det.append((0.0, 0.0, float(w), float(h)))
        tight.append(geometry.points_box(r.points))
    return np.array(det), np.array(tight)


def _measure(cal, det, tight):
    from tfalign.detect import box_iou
    mapped = np.array([cal.apply(d) for d in det])
    iou = np.array([box_iou(m, t) for m, t in zip(mapped, tight)])
    size = np.maximum(tight[:, 2], tight[:, 3])
    centre = np.hypot(*((mapped[:, :2] + mapped[:, 2:] / 2) - (tight[:, :2] + tight[:, 2:] / 2)).T) / size
    scale = np.maximum(mapped[:, 2], mapped[:, 3]) / size
    return {"faces": int(len(det)), "iou_median": float(np.median(iou)), "iou_p10": float(np.percentile(iou, 10)),
            "centre_error_median": float(np.median(centre)), "centre_error_p90": float(np.percentile(centre, 90)),
            "scale_ratio_median": float(np.median(scale)), "scale_ratio_p10_p90":
                [float(np.percentile(scale, 10)), float(np.percentile(scale, 90))]}


def _end_to_end(model_path, records):
    import cv2

    from tfalign import detect, metrics
    from tfalign.data import geometry
    from tfalign.predict import predict_image
    from tfalign.runtime import LandmarkModel
    runner = LandmarkModel(model_path)
    nmes = {"portrait_refine0": [], "portrait_refine2": [], "ground_truth_box": []}
    for r in records:
        img = cv2.cvtColor(cv2.imread(r.image_path), cv2.COLOR_BGR2RGB)
        for k in (0, 2):
            pts = predict_image(runner, img, detect.portrait_box(img.shape), k)[0]
            nmes[f"portrait_refine{k}"].append(metrics.nme(pts, r.points, r.scheme)[0])
        pts = runner.predict(img, geometry.points_box(r.points))
        nmes["ground_truth_box"].append(metrics.nme(pts, r.points, r.scheme)[0])
    return {k: float(np.mean(v)) for k, v in nmes.items()}


def main(argv=None):
    from tfalign import detect
    from tfalign.data.spec import load_records
    from tfalign.io import atomic_write_json
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="LFPW trainset folder (300-W .pts + images)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "detect_calibration.json"))
    p.add_argument("--model", help="exported .tflite (contract beside it) for the end-to-end NME")
    args = p.parse_args(argv)
    train = load_records(f"300w:{args.data}#train")
    val = load_records(f"300w:{args.data}#val")
    cal = detect.fit_calibration(*_boxes(train), fitted_on=f"LFPW {args.data} #train")
    result = {"fitted": {k: getattr(cal, k) for k in ("dx", "dy", "sw", "sh")},
              "train": _measure(cal, *_boxes(train)), "val": _measure(cal, *_boxes(val)),
              "stored_in_detect_py": {k: getattr(detect.PORTRAIT, k) for k in ("dx", "dy", "sw", "sh")},
              "stored_val": _measure(detect.PORTRAIT, *_boxes(val)),
              "command": "python bench/detect_calibration.py --data " + args.data}
    if args.model:
        result["predict_val_nme"] = _end_to_end(args.model, val)
        print("predict NME on #val:", {k: round(v, 4) for k, v in result["predict_val_nme"].items()})
        result["command"] += " --model " + args.model
    print(f"fitted: dx={cal.dx:.4f} dy={cal.dy:.4f} sw={cal.sw:.4f} sh={cal.sh:.4f}")
    for split in ("train", "val", "stored_val"):
        r = result[split]
        print(f"{split:10s} faces {r['faces']:4d}  IoU median {r['iou_median']:.3f} (p10 {r['iou_p10']:.3f})  "
              f"centre err {r['centre_error_median']:.3f} of face size (p90 {r['centre_error_p90']:.3f})  "
              f"scale ratio {r['scale_ratio_median']:.3f}")
    atomic_write_json(args.out, result)


if __name__ == "__main__":
    main()
