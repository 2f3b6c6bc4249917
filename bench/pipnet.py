"""PIPNet benchmark: ResNet-18 and MobileNetV3 on the LFPW validation split → table + bench/results/pipnet.json.

Per variant: validation NME / AUC@0.1 / FR@0.1 (inter-ocular) of a trained run folder (``python -m tfalign.train``
output), parameters, multiply-accumulates at the input size (the paper's Table 9 "GFLOPs" are MACs: ResNet-18 at
256 px = 2.4 G), and seconds per training epoch on this machine (``--timing-steps`` real training steps, batch
16, extrapolated to an epoch of the training split). A variant without a run folder is reported as not trained.
With ``--int8``, the shipped model is also converted to full-int8 TFLite and its decoded points are compared with
the float Keras model on the validation faces.

Usage::

    python bench/pipnet.py --run pipnet_mbv3=runs/pipnet_mbv3_lfpw --run pipnet_r18=runs/pipnet_r18_lfpw --int8
    python bench/pipnet.py --ship runs/pipnet_mbv3_lfpw          # float16 weights → tfalign/weights/pipnet_mbv3
    python bench/pipnet.py --mean-face 300w:../shared/data/lfpw/trainset#train   # regenerate the packaged mean face
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
DATA = os.environ.get("TFALIGN_DATA", os.path.join(os.path.dirname(REPO), "shared", "data"))
LFPW = os.path.join(DATA, "lfpw", "trainset")
VARIANTS = ("pipnet_r18", "pipnet_mbv3")
RESULTS = os.path.join(REPO, "bench", "results", "pipnet.json")


def macs(model) -> int:
    """Multiply-accumulates of one forward pass (convolutions and dense layers; the rest is negligible)."""
    from tfalign._keras import keras
    total = 0
    for layer in model.layers:
        if not isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)):
            continue
        for i in range(len(layer._inbound_nodes)):  # noqa: SLF001 - shared layers count once per call
            out = layer.get_output_shape_at(i)
            inp = layer.get_input_shape_at(i)
            if isinstance(layer, keras.layers.Dense):
                total += int(inp[-1]) * int(out[-1])
            elif isinstance(layer, keras.layers.DepthwiseConv2D):
                kh, kw = layer.kernel_size
                total += out[1] * out[2] * kh * kw * int(inp[-1]) * layer.depth_multiplier
            elif isinstance(layer, keras.layers.Conv2DTranspose):
                kh, kw = layer.kernel_size
                total += inp[1] * inp[2] * kh * kw * int(inp[-1]) * layer.filters
            else:
                kh, kw = layer.kernel_size
                total += out[1] * out[2] * kh * kw * int(inp[-1]) // layer.groups * layer.filters
    return int(total)


def seconds_per_epoch(arch, config, records, steps: int, batch_size: int) -> dict:
    """Time ``steps`` training steps (after one warm-up step that traces) with the trainer's pipeline."""
    from tfalign._keras import tf
    from tfalign.training.data import make_dataset
    from tfalign.training.schedules import make_optimizer
    model = arch.build(config)
    per_epoch = max(1, len(records) // batch_size)
    opt = make_optimizer(config.train, per_epoch)

    @tf.function
    def step(batch):
        with tf.GradientTape() as tape:
            total, _ = arch.loss(config, model(batch["image"], training=True), batch)
        opt.apply_gradients(zip(tape.gradient(total, model.trainable_variables), model.trainable_variables))
        return total

    stream = iter(make_dataset(records, config.input, training=True, batch_size=batch_size, seed=0))
    step(next(stream))
    t0 = time.time()
    for _ in range(steps):
        float(step(next(stream)))
    per_step = (time.time() - t0) / steps
    return {"seconds_per_step": round(per_step, 3), "steps_per_epoch": per_epoch,
            "seconds_per_epoch": round(per_step * per_epoch, 1), "timed_steps": steps, "batch_size": batch_size}


def validate(arch, config, model, val_records) -> dict:
    from tfalign.training.evaluation import landmark_fn, predict_keras, score, targets
    pred = predict_keras(landmark_fn(model), val_records, config.input, 16)
    result = score(pred, *targets(val_records, config.input.schemes), config.input.schemes)
    io = result["summary"][config.input.schemes[0]]["inter_ocular"]
    return {"nme": io["nme"], "auc@0.1": io["auc@0.1"], "fr@0.1": io["fr@0.1"], "faces": io["faces"]}


def int8_check(arch, config, model, val_records) -> dict:
    """Full-int8 TFLite of the inference model vs the float Keras model on the validation crops."""
    import numpy as np

    from mobile_export import tflite as tfl
    from tfalign.training.data import make_dataset
    inference = arch.inference_model(config, model)
    from tfalign.schemes import get_scheme
    batches = list(make_dataset(val_records, config.input, training=False, batch_size=16, seed=0))
    crops = np.concatenate([b["image"].numpy() for b in batches])
    truth = np.concatenate([b["points"].numpy() for b in batches])  # normalised crop coordinates
    scheme = get_scheme(config.input.schemes[0])
    blob = tfl.convert(inference, "int8", representative=lambda: [c[None] for c in crops[:32]])
    report = tfl.inspect(blob)
    runner = tfl.Runner(blob, num_threads=None)
    errs, nme_int8, nme_float = [], [], []
    for crop, gt in zip(crops, truth):
        y = runner(crop[None])
        ref = inference.predict(crop[None], verbose=0)
        errs.append(np.linalg.norm((y - ref)[0] * [config.input.width, config.input.height], axis=-1))
        # NME in the crop (a similarity of the image, so the same ratio as in image pixels).
        norm = scheme.norm_distance(gt[:scheme.num_points], "inter_ocular")
        for pred, acc in ((y[0], nme_int8), (ref[0], nme_float)):
            acc.append(np.linalg.norm(pred[:scheme.num_points] - gt[:scheme.num_points], axis=-1).mean() / norm)
    errs = np.stack(errs)
    return {"builtin_ops_only": True, "int8_coverage": report.get("int8_coverage"), "size_bytes": len(blob),
            "float_ops": report.get("float_ops"),
            "decoded_vs_float_px_mean": float(errs.mean()), "decoded_vs_float_px_median": float(np.median(errs)),
            "decoded_vs_float_px_p95": float(np.percentile(errs, 95)), "faces": len(crops),
            "val_nme_int8": float(np.mean(nme_int8)), "val_nme_float_same_crops": float(np.mean(nme_float))}


def _by_preset(items) -> dict:
    """``["PRESET=DIR", ...]`` → {preset: [dirs in the given order]}."""
    out = {}
    for item in items:
        preset, _, folder = item.partition("=")
        out.setdefault(preset, []).append(folder)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", action="append", default=[], metavar="PRESET=DIR",
                   help="trained run folder of a variant (pipnet_r18=DIR, pipnet_mbv3=DIR)")
    p.add_argument("--data", default=f"300w:{LFPW}#train", help="training spec timed for seconds/epoch")
    p.add_argument("--val", default=f"300w:{LFPW}#val", help="validation spec (default: LFPW #val)")
    p.add_argument("--timing-steps", type=int, default=5, help="training steps timed per variant (0: skip)")
    p.add_argument("--int8", action="store_true", help="check full-int8 TFLite of every shipped variant")
    p.add_argument("--base-run", action="append", default=[], metavar="PRESET=DIR",
                   help="for a --run fine-tuned from earlier weights (--init): the run those weights came from, so "
                        "every run's command is recorded; repeat it, oldest first, for a chain of runs")
    p.add_argument("--ship", metavar="[PRESET=]DIR",
                   help="write DIR's best model as float16 to tfalign/weights/PRESET (default pipnet_mbv3)")
    p.add_argument("--also", action="append", default=[], metavar="PRESET=DIR",
                   help="another run of a variant (e.g. another seed or recipe): validated and listed as a "
                        "replicate next to the --run one")
    p.add_argument("--keep", action="store_true",
                   help="variants without a --run keep their row of the existing --out file instead of 'not trained'")
    p.add_argument("--mean-face", metavar="SPEC", help="regenerate the packaged mean face from SPEC and exit")
    p.add_argument("--notes", default="", help="free text stored with the results (e.g. how long runs trained)")
    p.add_argument("--out", default=RESULTS, help="results JSON (default bench/results/pipnet.json)")
    args = p.parse_args(argv)

    from tfalign.data.spec import load_records
    from tfalign.io import atomic_write_json
    from tfalign.models import pipnet as P
    from tfalign.models.base import resolve
    from tfalign.training import load_model_dir

    if args.mean_face:
        records = load_records(args.mean_face)
        _, cfg = resolve("pipnet_mbv3")
        face = P.mean_face_from_records(records, cfg.input)
        P.write_mean_face(P.MEAN_FACE_FILE, face, cfg.input.schemes[0],
                          f"{args.mean_face} ({len(records)} faces), crop_scale {cfg.input.crop_scale}")
        print(f"wrote {P.MEAN_FACE_FILE}")
        return 0
    if args.ship:
        preset, _, run_dir = args.ship.rpartition("=")
        preset = preset or "pipnet_mbv3"
        if preset not in VARIANTS:
            print(f"bench/pipnet.py: error: --ship: unknown preset {preset!r} (use {', '.join(VARIANTS)})",
                  file=sys.stderr)
            return 2
        _, config, model = load_model_dir(run_dir)
        folder = os.path.join(REPO, "tfalign", "weights", preset)
        P.save_pretrained(model, config, folder, "float16")
        print(f"wrote {folder}/{P.WEIGHTS_FILE} and {P.CONFIG_FILE}")
        return 0

    runs = dict(item.split("=", 1) for item in args.run)
    also, bases = _by_preset(args.also), _by_preset(args.base_run)
    unknown = sorted((set(runs) | set(bases) | set(also)) - set(VARIANTS))
    if unknown:
        print(f"bench/pipnet.py: error: --run: unknown variant(s) {unknown} (use {', '.join(VARIANTS)})",
              file=sys.stderr)
        return 2
    val_records = load_records(args.val)
    train_records = load_records(args.data) if args.timing_steps else []
    results = {"val": args.val, "notes": args.notes, "variants": {}}
    previous = {}
    if args.keep and os.path.isfile(args.out):
        with open(args.out, encoding="utf-8") as fh:
            previous = json.load(fh)
        results["notes_kept"] = {k: previous.get("notes", "") for k in VARIANTS if k not in runs}
    for name in VARIANTS:
        if name not in runs and name in previous.get("variants", {}):
            results["variants"][name] = {**previous["variants"][name], "kept_from_previous_run": True}
            continue
        arch, config = resolve(name)
        model = arch.build(config)
        inference = arch.inference_model(config, model)
        row = {"backbone": config.backbone, "input": f"{config.input.height}x{config.input.width}",
               "params": int(inference.count_params()), "gmacs": round(macs(inference) / 1e9, 3)}
        if args.timing_steps:
            row["timing"] = seconds_per_epoch(arch, config, train_records, args.timing_steps,
                                              config.train.batch_size)
        if name in runs:
            run_arch, run_config, trained = load_model_dir(runs[name])
            history = json.load(open(os.path.join(runs[name], "history.json"), encoding="utf-8"))
            epochs = history["epochs"]
            row["trained"] = {"run": runs[name], "epochs": epochs[-1]["epoch"],
                              "best_epoch": min(epochs, key=lambda e: e["val_nme"])["epoch"],
                              "mean_epoch_seconds_in_run": round(sum(e["seconds"] for e in epochs) / len(epochs), 1),
                              "commands": [s["command"] for s in history.get("sessions", [])],
                              "learning_rate": run_config.train.learning_rate,
                              "milestones": list(run_config.train.milestones)}
            with open(os.path.join(runs[name], "config.json"), encoding="utf-8") as fh:
                run_meta = json.load(fh)
            row["trained"].update(init=run_meta.get("init"), steps_per_epoch=run_meta.get("steps_per_epoch_effective"),
                                  optimizer=run_config.train.optimizer, schedule=run_config.train.schedule,
                                  weight_decay=run_config.train.weight_decay)
            if run_meta.get("trained_with"):  # bench/pipnet_gpu.py: trained by the PyTorch mirror on a GPU
                row["trained"]["trained_with"] = run_meta["trained_with"]
            chain = []
            for folder in bases.get(name, []):
                with open(os.path.join(folder, "history.json"), encoding="utf-8") as fh:
                    base = json.load(fh)
                with open(os.path.join(folder, "config.json"), encoding="utf-8") as fh:
                    meta = json.load(fh)
                chain.append({"run": folder, "epochs": len(base["epochs"]),
                              "steps_per_epoch": meta.get("steps_per_epoch_effective"),
                              "best_val_nme": min(e["val_nme"] for e in base["epochs"]),
                              "commands": [s["command"] for s in base.get("sessions", [])]})
            if chain:
                row["trained"]["base_run"] = chain[0]  # the from-scratch run
                row["trained"]["base_runs"] = chain
            row["val"] = validate(run_arch, run_config, trained, val_records)
            reps = []
            for folder in also.get(name, []):
                rep_arch, rep_config, rep_model = load_model_dir(folder)
                with open(os.path.join(folder, "config.json"), encoding="utf-8") as fh:
                    rep_meta = json.load(fh)
                reps.append({"run": folder, "val": validate(rep_arch, rep_config, rep_model, val_records),
                             "train": {k: getattr(rep_config.train, k) for k in
                                       ("optimizer", "learning_rate", "weight_decay", "epochs", "batch_size")},
                             "trained_with": rep_meta.get("trained_with")})
            if reps:
                row["replicates"] = reps
                all_nme = [row["val"]["nme"]] + [r["val"]["nme"] for r in reps]
                row["val_nme_all_runs"] = {"mean": float(sum(all_nme) / len(all_nme)), "min": min(all_nme),
                                           "max": max(all_nme), "runs": len(all_nme)}
        else:
            row["trained"] = None
            row["val"] = None
        results["variants"][name] = row
    for name in VARIANTS:
        shipped = os.path.join(REPO, "tfalign", "weights", name)
        if not os.path.isfile(os.path.join(shipped, P.WEIGHTS_FILE)):
            continue
        key = f"shipped_{name}_float16"
        if name not in runs and key in previous:  # --keep: a variant not re-run keeps its shipped check too
            results[key] = previous[key]
            continue
        model, config = P.load_pretrained(shipped)
        arch, _ = resolve(name)
        results[key] = {"val": validate(arch, config, model, val_records)}
        if args.int8:
            results[key]["int8_tflite"] = int8_check(arch, config, model, val_records)
    atomic_write_json(args.out, results)

    print(f"{'variant':<14}{'params':>10}{'GMACs':>8}{'s/epoch':>9}{'NME %':>8}{'AUC@0.1':>9}{'FR@0.1':>8}  trained")
    for name, row in results["variants"].items():
        v = row["val"] or {}
        t = row.get("timing", {}).get("seconds_per_epoch", float("nan"))
        trained = f"{row['trained']['epochs']} epochs" if row["trained"] else "not trained"
        for base in (row["trained"] or {}).get("base_runs", []):
            trained += f" after {base['epochs']} epochs of {base['run']}"
        if (row["trained"] or {}).get("trained_with"):
            trained += f" ({row['trained']['trained_with']['framework']} mirror on {row['trained']['trained_with']['device']})"
        if row.get("val_nme_all_runs"):
            a = row["val_nme_all_runs"]
            trained += f"; all {a['runs']} runs: mean {a['mean']:.2%}, {a['min']:.2%}-{a['max']:.2%}"
        if row.get("kept_from_previous_run"):
            trained += " [kept from the previous results]"
        print(f"{name:<14}{row['params']:>10,}{row['gmacs']:>8.2f}{t:>9.0f}"
              f"{v.get('nme', float('nan')) * 100:>8.2f}{v.get('auc@0.1', float('nan')):>9.3f}"
              f"{v.get('fr@0.1', float('nan')):>8.3f}  {trained}")
    for name in VARIANTS:
        s = results.get(f"shipped_{name}_float16")
        if not s:
            continue
        print(f"shipped {name} (float16 weights): NME {s['val']['nme']:.2%}", end="")
        if "int8_tflite" in s:
            q = s["int8_tflite"]
            print(f"; full-int8 TFLite NME {q['val_nme_int8']:.2%} (float {q['val_nme_float_same_crops']:.2%}), "
                  f"decoded vs float: mean {q['decoded_vs_float_px_mean']:.2f} px, "
                  f"p95 {q['decoded_vs_float_px_p95']:.2f} px at 256 px", end="")
        print()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
