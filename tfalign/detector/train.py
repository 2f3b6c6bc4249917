"""Train the face detector on LFPW (68 points) + MTFL (5 points) and write the shipped folder.

    python -m tfalign.detector train --lfpw ../shared/data/lfpw/trainset --mtfl ../shared/data/mtfl/training.txt \
        --out tfalign/weights/face_detector

Data: LFPW ``#train`` (box = tight box of the 68 points) and MTFL ``#train`` (box = :class:`FivePointBox` of the
5 points, fitted first on LFPW ``#train``). LFPW ``#val`` is never trained on: the calibration and every figure
of the model card are measured on it. Both sets are portrait crops with one annotated face, so the detector must
be shown faces at other sizes and places: each training canvas is one of

* ``letterbox``: the whole image letterboxed as at inference (the framing of the evaluation images);
* ``single``: one image warped so its face is 14–110 px wide, anywhere, slightly rotated, gray/colour border;
* ``mosaic``: a 2×2 or 3×3 grid of such warps with 8–56 px faces (several faces, small faces).

Unannotated bystanders in the images are unlabelled (treated as background); the warps keep them rare (they are
usually at the image edges, and the crops are face-centred).

Writes ``face_detector.tflite`` (float16 weights), ``calibration.json`` (input size, score threshold, detector
box → contract box calibration, the 5-point box map, training record with the command, figures on LFPW #val).
"""
from __future__ import annotations

import json
import os
import queue
import sys
import threading
import time

import numpy as np

from tfalign import detector as det

MAX_FACE = 110  # largest face (px) a training canvas shows; images are stored downscaled to this


def _load_faces(lfpw: str, mtfl: str, five: "det.FivePointBox", max_mtfl: int = 0, log=print) -> list:
    """[(RGB uint8 image, tight box (x, y, w, h)), ...] of the #train faces, stored at most MAX_FACE px wide."""
    import cv2

    from tfalign.data import geometry
    from tfalign.data.spec import load_records

    items = [(r.image_path, geometry.points_box(r.points)) for r in load_records(f"300w:{lfpw}#train")]
    n_lfpw = len(items)
    if mtfl:
        recs = load_records(f"mtfl:{mtfl}#train")
        if max_mtfl:
            recs = recs[:max_mtfl]
        items += [(r.image_path, five(r.points)) for r in recs]
    faces = []
    for path, box in items:
        bgr = cv2.imread(path, cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"{path}: cannot read the image")
        k = min(1.0, MAX_FACE * 1.25 / max(box[2], box[3]))
        if k < 1.0:
            bgr = cv2.resize(bgr, None, fx=k, fy=k, interpolation=cv2.INTER_AREA)
        faces.append((cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), np.asarray(box, np.float64) * k))
    log(f"faces: {n_lfpw} LFPW #train + {len(faces) - n_lfpw} MTFL #train")
    return faces


def _background(rng, faces, out_size):
    """A face-free texture: the widest strip of a random image beside its face box, stretched to the canvas.

    Real photos surround faces with clutter, not flat colour; a face-free strip gives clutter without adding an
    unlabelled face (those strips are rarely wide enough to hold another person's whole face).
    """
    import cv2

    image, box = faces[rng.integers(len(faces))]
    h, w = image.shape[:2]
    x0, y0 = int(max(0, box[0])), int(max(0, box[1]))
    x1, y1 = int(min(w, box[0] + box[2])), int(min(h, box[1] + box[3]))
    strips = [image[:, :x0], image[:, x1:], image[:y0, :], image[y1:, :]]
    strip = max(strips, key=lambda a: min(a.shape[:2]) if a.size else -1)
    if min(strip.shape[:2]) < 8:
        return None
    return cv2.resize(np.ascontiguousarray(strip), (out_size, out_size), interpolation=cv2.INTER_LINEAR)


def _warp_face(rng, faces, image, box, face_px, centre, out_size, angle_max=12.0):
    """Warp ``image`` so its face box is ``face_px`` wide (max side) and centred at ``centre`` in an
    ``out_size`` canvas over a flat or textured background; → (canvas, box in canvas pixels)."""
    import cv2

    k = face_px / max(box[2], box[3])
    a = np.deg2rad(rng.uniform(-angle_max, angle_max))
    c = np.array([box[0] + box[2] / 2, box[1] + box[3] / 2])
    rot = k * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    m = np.hstack([rot, (np.asarray(centre) - rot @ c)[:, None]])
    interp = cv2.INTER_AREA if k < 0.7 else cv2.INTER_LINEAR
    back = _background(rng, faces, out_size) if rng.random() < 0.5 else None
    if back is not None:
        out = cv2.warpAffine(image, m, (out_size, out_size), dst=back, flags=interp,
                             borderMode=cv2.BORDER_TRANSPARENT)
    else:
        fill = tuple(int(v) for v in rng.integers(0, 256, 3)) if rng.random() < 0.7 else (det.PAD_VALUE,) * 3
        out = cv2.warpAffine(image, m, (out_size, out_size), flags=interp, borderMode=cv2.BORDER_CONSTANT,
                             borderValue=fill)
    w, h = box[2] * k, box[3] * k
    return out, (centre[0] - w / 2, centre[1] - h / 2, w, h)


def make_canvas(rng, faces, size: int) -> tuple:
    """One augmented training canvas: (uint8 [size, size, 3], [(x, y, w, h), ...] face boxes)."""
    import cv2

    mode = rng.choice(["letterbox", "single", "mosaic"], p=[0.15, 0.45, 0.40])
    boxes = []
    if mode == "letterbox":
        image, box = faces[rng.integers(len(faces))]
        h, w = image.shape[:2]
        k = size / max(h, w) * rng.uniform(0.85, 1.0)
        m = np.array([[k, 0, 0], [0, k, 0]], np.float64)
        canvas = cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_CONSTANT,
                                borderValue=(det.PAD_VALUE,) * 3)
        boxes.append(tuple(np.asarray(box) * k))
    elif mode == "single":
        image, box = faces[rng.integers(len(faces))]
        f = float(np.exp(rng.uniform(np.log(14), np.log(MAX_FACE))))
        lo, hi = min(f / 3, size / 2), max(size - f / 3, size / 2)
        canvas, b = _warp_face(rng, faces, image, box, f, rng.uniform(lo, hi, 2), size)
        boxes.append(b)
    else:
        g = 2 if rng.random() < 0.7 else 3
        cell = size // g
        canvas = np.empty((size, size, 3), np.uint8)
        for gy in range(g):
            for gx in range(g):
                image, box = faces[rng.integers(len(faces))]
                f = float(np.exp(rng.uniform(np.log(8), np.log(min(56, cell * 0.85)))))
                patch, b = _warp_face(rng, faces, image, box, f, rng.uniform(cell * 0.3, cell * 0.7, 2), cell)
                canvas[gy * cell:(gy + 1) * cell, gx * cell:(gx + 1) * cell] = patch
                boxes.append((b[0] + gx * cell, b[1] + gy * cell, b[2], b[3]))
        if g * cell < size:  # 3 × 42 < 128: fill the strip the grid leaves
            canvas[g * cell:, :] = det.PAD_VALUE
            canvas[:, g * cell:] = det.PAD_VALUE
    if rng.random() < 0.5:
        canvas = canvas[:, ::-1]
        boxes = [(size - 1 - x - w, y, w, h) for x, y, w, h in boxes]
    x = canvas.astype(np.float32)
    x = (x - 128.0) * rng.uniform(0.7, 1.3) + 128.0 + rng.uniform(-30, 30)
    if rng.random() < 0.1:
        x = np.repeat(x.mean(axis=2, keepdims=True), 3, axis=2)
    return np.clip(x, 0, 255).astype(np.uint8), boxes


def targets(boxes, size: int, stride: int = det.STRIDE) -> tuple:
    """CenterNet targets for one canvas: heat [Ho, Wo] (1 at centre cells), reg [Ho, Wo, 4], mask [Ho, Wo]."""
    ho = size // stride
    heat = np.zeros((ho, ho), np.float32)
    reg = np.zeros((ho, ho, 4), np.float32)
    mask = np.zeros((ho, ho), np.float32)
    yy, xx = np.mgrid[0:ho, 0:ho]
    for x, y, w, h in boxes:
        cx, cy = (x + w / 2) / stride, (y + h / 2) / stride
        ix, iy = int(np.floor(cx)), int(np.floor(cy))
        if not (0 <= ix < ho and 0 <= iy < ho) or w <= 1 or h <= 1:
            continue
        radius = max(0, int(0.2 * max(w, h) / stride))
        sigma = (2 * radius + 1) / 6
        heat = np.maximum(heat, np.exp(-((xx - ix) ** 2 + (yy - iy) ** 2) / (2 * sigma ** 2)).astype(np.float32))
        heat[iy, ix] = 1.0
        reg[iy, ix] = (np.log(w / stride), np.log(h / stride), cx - ix, cy - iy)
        mask[iy, ix] = 1.0
    return heat, reg, mask


def _batches(faces, size, batch, seed, stop):
    q = queue.Queue(maxsize=6)

    def work():
        rng = np.random.default_rng(seed)
        while not stop.is_set():
            xs, hs, rs, ms = [], [], [], []
            for _ in range(batch):
                c, b = make_canvas(rng, faces, size)
                h, r, m = targets(b, size)
                xs.append(c)
                hs.append(h)
                rs.append(r)
                ms.append(m)
            item = (np.stack(xs).astype(np.float32), np.stack(hs), np.stack(rs), np.stack(ms))
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.5)
                    break
                except queue.Full:
                    pass

    threading.Thread(target=work, daemon=True).start()
    return q


def evaluate(detect_fn, records, iou_threshold: float = 0.5) -> dict:
    """Recall at IoU >= ``iou_threshold`` and IoU of the best-matching detection vs the tight 68-point box.

    ``detect_fn(image_rgb)`` → list of (box, score); the detection matched is the one of highest IoU among all
    returned (the annotated face is one of possibly several people), and ``top1`` the highest-scoring one.
    """
    import cv2

    from tfalign.data import geometry

    ious, top1 = [], []
    for r in records:
        img = cv2.cvtColor(cv2.imread(r.image_path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        gt = geometry.points_box(r.points)
        found = detect_fn(img)
        m = det.box_iou_matrix([b for b, _ in found], [gt])[:, 0] if found else np.zeros(0)
        ious.append(float(m.max()) if len(m) else 0.0)
        top1.append(float(m[0]) if len(m) else 0.0)
    ious, top1 = np.array(ious), np.array(top1)
    return {"faces": int(len(ious)), "recall_iou50_any": float(np.mean(ious >= iou_threshold)),
            "recall_iou50_top1": float(np.mean(top1 >= iou_threshold)), "mean_iou_best": float(np.mean(ious)),
            "mean_iou_top1": float(np.mean(top1))}


def learning_rate(peak: float, warmup: int, progress: float, step: int) -> float:
    """Linear warm-up to ``peak`` over ``warmup`` steps, then cosine decay to 2 % of it as ``progress`` → 1.

    ``progress`` is the larger of steps done / ``--steps`` and time spent / ``--max-minutes``: on a shared CPU
    the step rate varies several-fold with the other jobs, and a schedule in steps alone would be cut off by the
    time limit before it had decayed.
    """
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * (0.02 + 0.98 * 0.5 * (1.0 + np.cos(np.pi * min(1.0, max(0.0, progress)))))


def train(args, log=print) -> dict:
    from tfalign._keras import keras, tf
    from tfalign.data import geometry
    from tfalign.data.spec import load_records
    from tfalign.detect import fit_calibration
    from tfalign.detector import model as dm
    from tfalign.io import atomic_write, atomic_write_json
    from tfalign import schemes
    from mobile_export import tflite

    t0 = time.time()
    tf.random.set_seed(args.seed)
    lfpw_train = load_records(f"300w:{args.lfpw}#train")
    lfpw_val = load_records(f"300w:{args.lfpw}#val")
    to5 = schemes.conversion_matrix("300w_68", "mtfl_5")
    five = det.fit_five_point_box(np.stack([to5 @ r.points for r in lfpw_train]),
                                  np.stack([geometry.points_box(r.points) for r in lfpw_train]))
    five_iou = [det.box_iou_matrix([five(to5 @ r.points)], [geometry.points_box(r.points)])[0, 0]
                for r in lfpw_val]
    log(f"5-point box map: LFPW #val IoU with the 68-point tight box mean {np.mean(five_iou):.3f}")
    faces = _load_faces(args.lfpw, args.mtfl, five, args.max_mtfl, log)

    model = dm.build(args.input_size)
    opt = keras.optimizers.Adam(learning_rate=args.lr)
    opt.build(model.trainable_variables)  # slot variables before tracing: `step` is traced once, not twice

    @tf.function
    def step(x, h, r, m):
        with tf.GradientTape() as tape:
            pred = model(x, training=True)
            total, focal, l1 = dm.loss(pred, h, r, m)
            total_reg = total + tf.add_n(model.losses) if model.losses else total
        grads = tape.gradient(total_reg, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        return total, focal, l1

    stop = threading.Event()
    q = _batches(faces, args.input_size, args.batch, args.seed, stop)
    hist = []
    t_train = time.time()
    acc = np.zeros(3)
    steps_run = 0
    try:
        for i in range(args.steps):
            elapsed = time.time() - t_train
            progress = max(i / args.steps, elapsed / (args.max_minutes * 60) if args.max_minutes else 0.0)
            if progress >= 1.0:
                log(f"stopping at step {i}: --max-minutes {args.max_minutes} reached")
                break
            opt.learning_rate.assign(learning_rate(args.lr, args.warmup, progress, i))
            vals = step(*q.get())
            acc += [float(v) for v in vals]
            steps_run += 1
            if (i + 1) % args.log_every == 0:
                mean = acc / args.log_every
                acc[:] = 0
                el = time.time() - t_train
                hist.append({"step": i + 1, "loss": mean[0], "focal": mean[1], "l1": mean[2], "seconds": el,
                             "lr": float(opt.learning_rate.numpy())})
                log(f"step {i + 1}/{args.steps} loss {mean[0]:.3f} (focal {mean[1]:.3f}, l1 {mean[2]:.3f}) "
                    f"lr {float(opt.learning_rate.numpy()):.2e}, {el:.0f}s")
    finally:
        stop.set()
    train_seconds = time.time() - t_train

    os.makedirs(args.out, exist_ok=True)
    model_bytes = tflite.convert(model, "float16")
    tflite.check_builtin(model_bytes, model)
    atomic_write(os.path.join(args.out, det.MODEL_FILE), model_bytes)
    # A provisional calibration file (identity) lets FaceDetector load the fresh model to measure it.
    meta = {"input_size": args.input_size, "stride": det.STRIDE, "score_threshold": args.score_threshold,
            "calibration": {"dx": 0.0, "dy": 0.0, "sw": 1.0, "sh": 1.0, "fitted_on": "none yet"}}
    atomic_write_json(os.path.join(args.out, det.CALIBRATION_FILE), meta)
    fd = det.FaceDetector(args.out)

    import cv2
    raw, tight = [], []
    for r in lfpw_val:
        img = cv2.cvtColor(cv2.imread(r.image_path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        gt = geometry.points_box(r.points)
        found = fd.detect_raw(img)
        if found:
            ious = det.box_iou_matrix([d.box for d in found], [gt])[:, 0]
            if ious.max() >= 0.5:
                raw.append(found[int(np.argmax(ious))].box)
                tight.append(gt)
    command = "python -m tfalign.detector train " + " ".join(sys.argv[2:] if args.argv is None else args.argv)
    if len(raw) < 10:  # too few matches to measure a mapping (an undertrained smoke run): keep the identity
        log(f"calibration: only {len(raw)} LFPW #val faces matched; keeping the identity mapping")
        cal = fit_calibration(np.array(tight), np.array(tight), fitted_on="identity: too few matches",
                              command=command) if tight else None
    else:
        cal = fit_calibration(np.array(raw), np.array(tight),
                              fitted_on=f"LFPW #val: {len(raw)} of {len(lfpw_val)} faces matched at IoU >= 0.5",
                              command=command)
    if cal is None:
        from tfalign.detect import IDENTITY as cal
    meta["calibration"] = {k: getattr(cal, k) for k in ("dx", "dy", "sw", "sh", "fitted_on", "command")}
    meta["five_point_box"] = {"coef": list(five.coef), "fitted_on": f"LFPW #train ({len(lfpw_train)} faces)",
                              "lfpw_val_iou_mean": float(np.mean(five_iou))}
    atomic_write_json(os.path.join(args.out, det.CALIBRATION_FILE), meta)
    fd = det.FaceDetector(args.out)
    val = evaluate(lambda im: [(d.box, d.score) for d in fd.detect(im)], lfpw_val)
    log("LFPW #val: " + json.dumps({k: round(v, 4) for k, v in val.items()}))
    meta["training"] = {"command": command, "steps": steps_run, "batch": args.batch, "lr": args.lr,
                        "seed": args.seed, "input_size": args.input_size, "params": int(model.count_params()),
                        "train_faces": len(faces), "train_seconds": round(train_seconds, 1),
                        "total_seconds": round(time.time() - t0, 1), "history": hist,
                        "data": {"lfpw": f"300w:{args.lfpw}#train", "mtfl": f"mtfl:{args.mtfl}#train"},
                        "tflite_bytes": len(model_bytes), "lfpw_val": val}
    atomic_write_json(os.path.join(args.out, det.CALIBRATION_FILE), meta)
    return meta
