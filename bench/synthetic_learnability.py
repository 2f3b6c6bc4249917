"""Do the procedural synthetic faces teach a model anything? Train a small CNN on them, compare with the mean shape.

Trains a 4-block CNN (68-point regression, L1 on the pipeline's masked points) on ``--train`` synthetic faces through
``make_dataset`` (default augmentation), then reports the inter-ocular NME of the model and of the mean-shape
baseline (every face predicted as the training mean shape in crop coordinates) on held-out synthetic faces and,
where ../shared/data is present, on real LFPW faces (zero-shot transfer). Prints a table and writes
bench/results/synthetic_learnability.json.

    .venv/bin/python bench/synthetic_learnability.py [--train 3000] [--steps 2500] [--size 64]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


def _parser():
    p = argparse.ArgumentParser(prog="bench/synthetic_learnability.py", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--train", type=int, default=3000, help="synthetic training faces")
    p.add_argument("--test", type=int, default=200, help="held-out synthetic faces (another seed)")
    p.add_argument("--steps", type=int, default=2500, help="training steps")
    p.add_argument("--batch", type=int, default=32, help="batch size")
    p.add_argument("--size", type=int, default=64, help="model input side in pixels")
    p.add_argument("--lfpw", default=os.path.join(HERE, "..", "..", "shared", "data", "lfpw", "trainset"),
                   help="real 300-W faces for the zero-shot check (skipped when the folder is missing)")
    p.add_argument("--real", type=int, default=200, help="real faces evaluated")
    p.add_argument("--out", default=os.path.join(HERE, "results", "synthetic_learnability.json"),
                   help="JSON results file")
    return p


def _model(size):
    from tfalign._keras import keras, layers
    x = inp = keras.Input((size, size, 3))
    for filters in (24, 48, 96, 160):
        x = layers.Conv2D(filters, 3, strides=2, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(136)(x)
    out = layers.Reshape((68, 2))(x)
    return keras.Model(inp, out)


def _evaluate(model, records, spec, mean):
    import numpy as np

    from tfalign import metrics
    from tfalign.data.pipeline import make_dataset

    preds, gts = [], []
    for b in make_dataset(records, spec, training=False, batch_size=64):
        preds.append(model(b["image"], training=False).numpy())
        gts.append(b["points"].numpy())
    pred, gt = np.concatenate(preds), np.concatenate(gts)
    model_nme = metrics.nme(pred, gt, "300w_68", "inter_ocular")
    base_nme = metrics.nme(np.broadcast_to(mean, gt.shape), gt, "300w_68", "inter_ocular")
    return float(model_nme.mean()), float(base_nme.mean()), metrics.auc_fr(model_nme, 0.1)


def main(argv=None):
    args = _parser().parse_args(argv)
    if min(args.train, args.test, args.steps, args.batch, args.real) <= 0 or args.size < 32:
        print("error: counts must be > 0 and --size >= 32", file=sys.stderr)
        return 2
    import numpy as np
    from tqdm import tqdm

    from tfalign._keras import keras, tf
    from tfalign.data.pipeline import make_dataset
    from tfalign.data.synthetic import make_records
    from tfalign.io import atomic_write_json
    from tfalign.losses import masked_point_loss
    from tfalign.models.base import InputSpec

    tf.random.set_seed(0)
    t0 = time.perf_counter()
    train = make_records(args.train, seed=0, size=2 * args.size)
    test = make_records(args.test, seed=1, size=2 * args.size)
    spec = InputSpec(height=args.size, width=args.size)
    mean = np.mean([b["points"].numpy() for b in make_dataset(train, spec, training=False, batch_size=len(train))][0],
                   axis=0)
    model = _model(args.size)
    opt = keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(2e-3, args.steps))

    @tf.function
    def step(batch):
        with tf.GradientTape() as tape:
            loss = masked_point_loss(model(batch["image"], training=True), batch["points"], batch["mask"])
        opt.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return loss

    stream = iter(make_dataset(train, spec, training=True, batch_size=args.batch, repeat=True, seed=0, cache=True))
    bar = tqdm(range(args.steps), desc="training on synthetic faces", unit="step")
    for _ in bar:
        loss = step(next(stream))
        bar.set_postfix(loss=f"{float(loss):.4f}")
    result = {"benchmark": "synthetic_learnability", "train_faces": args.train, "steps": args.steps,
              "batch": args.batch, "input": [args.size, args.size, 3], "params": int(model.count_params())}
    m, b, (auc, fr) = _evaluate(model, test, spec, mean)
    result["synthetic_test"] = {"faces": args.test, "nme_model": round(m, 4), "nme_mean_shape": round(b, 4),
                                "auc@0.1": round(auc, 4), "fr@0.1": round(fr, 4)}
    if os.path.isdir(args.lfpw):
        from tfalign.data.spec import load_records
        real = load_records(f"300w:{args.lfpw}")[:args.real]
        m, b, (auc, fr) = _evaluate(model, real, spec, mean)
        result["lfpw_zero_shot"] = {"faces": len(real), "nme_model": round(m, 4), "nme_mean_shape": round(b, 4),
                                    "auc@0.1": round(auc, 4), "fr@0.1": round(fr, 4)}
    result["seconds"] = round(time.perf_counter() - t0, 1)
    result["command"] = "python bench/synthetic_learnability.py " + " ".join(argv if argv is not None
                                                                             else sys.argv[1:])
    print(f"{'evaluated on':<22}{'faces':>7}{'NME model':>11}{'NME mean shape':>16}{'AUC@0.1':>9}{'FR@0.1':>8}")
    for key in ("synthetic_test", "lfpw_zero_shot"):
        if key in result:
            r = result[key]
            print(f"{key:<22}{r['faces']:>7}{r['nme_model']:>11.4f}{r['nme_mean_shape']:>16.4f}"
                  f"{r['auc@0.1']:>9.3f}{r['fr@0.1']:>8.3f}")
    atomic_write_json(args.out, result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
