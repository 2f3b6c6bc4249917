"""How many augmented 256x256 faces per second the input pipeline delivers, against what training consumes.

In one run, on the same LFPW faces and the same per-sample work (decode → crop + random affine + flip in one warp →
occlusion, blur, colour jitter, grayscale → normalise):
    * a plain Python/OpenCV loop, one sample after another;
    * ``tfalign.data.pipeline.make_dataset`` (parallel map, prefetch), order-free and deterministic;
    * the same with decoded images cached in memory;
and the training step of a small MobileNetV2-like model (alpha 0.35, batch 16, 256 px, Adam), to compare the
pipeline's rate with the rate a fast model consumes faces. Prints a table and writes bench/results/data_pipeline.json.

    .venv/bin/python bench/data_pipeline.py [--data ../shared/data/lfpw/trainset] [--faces 400] [--batch 16]
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


def _parser():
    p = argparse.ArgumentParser(prog="bench/data_pipeline.py", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", default=os.path.join(HERE, "..", "..", "shared", "data", "lfpw", "trainset"),
                   help="folder of 300-W .pts/.jpg faces (the LFPW train set)")
    p.add_argument("--faces", type=int, default=400, help="faces timed per pipeline variant (after a warm-up)")
    p.add_argument("--batch", type=int, default=16, help="batch size of the pipeline and of the training step")
    p.add_argument("--size", type=int, default=256, help="model input side in pixels")
    p.add_argument("--steps", type=int, default=8, help="timed training steps (after 2 warm-up steps)")
    p.add_argument("--repeats", type=int, default=2,
                   help="time each variant this many times (interleaved) and keep the best: the machine is shared")
    p.add_argument("--out", default=os.path.join(HERE, "results", "data_pipeline.json"), help="JSON results file")
    return p


def _python_loop(records, spec, n, seed=0):
    """The same per-sample work as the pipeline, called sequentially without tf.data."""
    import numpy as np
    from tqdm import tqdm

    from tfalign.data import geometry
    from tfalign.data.pipeline import AugmentConfig, _Source, augment_matrix, photometric

    src = _Source(records, spec, AugmentConfig(), True, seed, cache=False)
    start, cpu = time.perf_counter(), time.process_time()
    for k in tqdm(range(n), desc="python loop", unit="face", leave=False):
        i = k % len(records)
        rng = np.random.default_rng([seed, k])
        img = src.image(i)
        m, _, _ = augment_matrix(rng, src.boxes[i], spec, src.aug)
        crop = photometric(rng, geometry.warp(img, m, spec.height, spec.width), src.aug)
        geometry.normalize(crop, spec)
        geometry.points_to_crop(src.points[i], m, spec)
    return n / (time.perf_counter() - start), (time.process_time() - cpu) / n


def _tf_data(records, spec, n, batch, warm_faces=160, **kwargs):
    from tqdm import tqdm

    from tfalign.data.pipeline import make_dataset

    ds = make_dataset(records, spec, training=True, batch_size=batch, repeat=True, seed=0, **kwargs)
    it = iter(ds)
    for _ in range(max(4, warm_faces // batch)):  # warm-up: thread pools and AUTOTUNE ramp up over the first batches
        next(it)
    steps = max(1, n // batch)
    start, cpu = time.perf_counter(), time.process_time()
    for _ in tqdm(range(steps), desc=f"tf.data {kwargs or ''}", unit="batch", leave=False):
        next(it)
    return steps * batch / (time.perf_counter() - start), (time.process_time() - cpu) / (steps * batch)


def _train_step_rate(size, batch, steps):
    """Faces per second consumed by a small MobileNetV2 (alpha 0.35) regressing 68 points, Adam."""
    import numpy as np
    from tqdm import tqdm

    from tfalign._keras import keras, tf

    base = keras.applications.MobileNetV2(input_shape=(size, size, 3), alpha=0.35, include_top=False, weights=None)
    x = keras.layers.GlobalAveragePooling2D()(base.output)
    out = keras.layers.Dense(136)(x)
    model = keras.Model(base.input, out)
    opt = keras.optimizers.Adam(1e-3)

    @tf.function
    def step(images, target):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.abs(model(images, training=True) - target))
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    rng = np.random.default_rng(0)
    images = tf.constant(rng.normal(size=(batch, size, size, 3)).astype(np.float32))
    target = tf.constant(rng.uniform(size=(batch, 136)).astype(np.float32))
    for _ in range(2):
        step(images, target).numpy()
    times = []
    cpu = time.process_time()
    for _ in tqdm(range(steps), desc="train step", unit="step", leave=False):
        t = time.perf_counter()
        step(images, target).numpy()
        times.append(time.perf_counter() - t)
    cpu_per_face = (time.process_time() - cpu) / (steps * batch)
    med = float(np.median(times))
    return batch / med, med, int(model.count_params()), cpu_per_face


def main(argv=None):
    args = _parser().parse_args(argv)
    if args.faces <= 0 or args.batch <= 0 or args.size < 32 or args.steps <= 0 or args.repeats <= 0:
        print("error: --faces, --batch, --steps, --repeats must be > 0 and --size >= 32", file=sys.stderr)
        return 2
    from tfalign.data.records import DataError
    from tfalign.data.spec import load_records
    from tfalign.io import atomic_write_json
    from tfalign.models.base import InputSpec

    try:
        records = load_records(f"300w:{args.data}")
    except (DataError, ValueError) as exc:
        print(f"error: --data: {exc}", file=sys.stderr)
        return 2
    spec = InputSpec(height=args.size, width=args.size)
    # Read every file once so that no variant pays (or dodges) cold-disk reads the others do not.
    from tqdm import tqdm
    for r in tqdm(records, desc="warming the file cache", unit="file", leave=False):
        with open(r.image_path, "rb") as fh:
            fh.read()
    variants = {
        "python_loop": lambda: _python_loop(records, spec, args.faces),
        "tf_data": lambda: _tf_data(records, spec, args.faces, args.batch),
        "tf_data_deterministic": lambda: _tf_data(records, spec, args.faces, args.batch, deterministic=True),
        # Timed after one full epoch, once every image is decoded in memory.
        "tf_data_cache": lambda: _tf_data(records, spec, args.faces, args.batch, warm_faces=len(records) + 160,
                                          cache=True),
    }
    rows, cpu = {}, {}
    for _ in range(args.repeats):
        for name, run in variants.items():
            rate, cpu_s = run()
            if rate > rows.get(name, 0.0):
                rows[name], cpu[name] = rate, cpu_s
    consumed, step_s, params, train_cpu = _train_step_rate(args.size, args.batch, args.steps * args.repeats)
    from tfalign.training.runconfig import cpu_info
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    result = {
        "benchmark": "data_pipeline",
        "data": os.path.abspath(args.data),
        "faces_in_dataset": len(records),
        "input": [args.size, args.size, 3],
        "batch": args.batch,
        "faces_timed": args.faces,
        "repeats": args.repeats,
        "faces_per_second": {k: round(v, 1) for k, v in rows.items()},
        # CPU time is what the pipeline takes away from training on a shared machine; it is also far less noisy
        # than wall time when other jobs load the cores.
        "cpu_ms_per_face": {k: round(v * 1000, 2) for k, v in cpu.items()},
        "speedup_vs_python_loop": round(rows["tf_data"] / rows["python_loop"], 2),
        "train_step": {"model": "MobileNetV2 alpha=0.35 + GAP + Dense(136), Adam", "params": params,
                       "seconds_per_step": round(step_s, 4), "faces_per_second": round(consumed, 1),
                       "cpu_ms_per_face": round(train_cpu * 1000, 2)},
        "ratio_pipeline_to_training": round(rows["tf_data"] / consumed, 1),
        "ratio_cpu_training_to_pipeline": round(train_cpu / cpu["tf_data"], 1),
        "goal_ratio": 10.0,
        "machine": {"cpus": os.cpu_count(), "cpu": cpu_info(), "load_average_1min": load,
                    "platform": platform.platform(), "python": platform.python_version()},
        "command": "python bench/data_pipeline.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "note": "pipeline and training step timed separately; during training they share the CPU cores",
    }
    print(f"{'variant':<28}{'faces/s':>10}{'cpu ms/face':>14}")
    for k, v in rows.items():
        print(f"{k:<28}{v:>10.1f}{cpu[k] * 1000:>14.2f}")
    print(f"{'train step consumes':<28}{consumed:>10.1f}{train_cpu * 1000:>14.2f}   ({step_s * 1000:.0f} ms per "
          f"batch of {args.batch}, {params} params)")
    print(f"wall-clock ratio tf.data / training: {result['ratio_pipeline_to_training']}x; CPU-time ratio "
          f"training / tf.data: {result['ratio_cpu_training_to_pipeline']}x (goal >= 10x); tf.data / python loop: "
          f"{result['speedup_vs_python_loop']}x; load average {load}")
    atomic_write_json(args.out, result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
