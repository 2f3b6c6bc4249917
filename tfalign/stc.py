"""Self-training with curriculum (PIPNet §3.3): ``python -m tfalign.stc --labelled SPEC --unlabelled SPEC --val SPEC
--out DIR``.

The loop (the authors' ``train_gssl.py``):
    0. Train PIPNet with its STC heads on the labelled data (Task 3: the full PIP loss at stride S).
    1. Estimate pseudo-labels of the unlabelled faces with the current model (NRM-merged landmarks).
    2. Train a freshly initialised model on labelled (Task 3) + pseudo-labelled faces, the latter through the task
       of this round: Task 1 (score map at stride 4S, 2×2 at 256 px) → Task 2 (stride 2S) → Task 3 → Task 3 → ...
    3. Repeat 1-2 for every entry of ``--curriculum`` (paper: 1,2,3,3,3 — "converges after three iterations of
       Task 3"). Coarse tasks first, because classifying a face into few big cells is easier and so adds fewer
       pseudo-label errors for the model to reinforce.

Unlabelled faces: any dataset spec; their own annotations are never a target, they only place the crop (the role
a face detector's box plays in the paper, e.g. MTFL's 5 points → the 68-point crop through
``tfalign.data.geometry.face_box``). After the first estimate the crop follows the pseudo-labels, the same
way a labelled face's crop follows its points.

Writes DIR/config.json, DIR/history.json (validation NME of every round), DIR/round_K/best.weights.h5 and
DIR/best.weights.h5 (the last round's best model, loadable with ``tfalign.models.resolve`` + ``build``).
Bad arguments or data: one line on stderr, exit code 2.

Example::

    python -m tfalign.stc --model pipnet_mbv3 --labelled 300w:../shared/data/lfpw/trainset#train \\
        --unlabelled mtfl:../shared/data/mtfl/training.txt --val 300w:../shared/data/lfpw/trainset#val \\
        --epochs 60 --out runs/stc_mbv3
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import time

import numpy as np

EXIT_USAGE = 2
PAPER_CURRICULUM = (1, 2, 3, 3, 3)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tfalign.stc", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--labelled", action="append", default=[], metavar="SPEC", required=True,
                   help="labelled training data (repeatable): 300w:DIR#train, mtfl:LISTFILE, synthetic:N, ...")
    p.add_argument("--unlabelled", action="append", default=[], metavar="SPEC", required=True,
                   help="unlabelled faces (repeatable); their points only place the crop, never a target")
    p.add_argument("--val", action="append", default=[], metavar="SPEC", required=True,
                   help="validation data (repeatable); NME on the first picks each round's best weights")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (must not hold another STC run "
                                                               "unless --force)")
    p.add_argument("--model", default="pipnet_mbv3", help="a pipnet preset or 'pipnet' (default pipnet_mbv3); "
                                                          "its STC heads are switched on")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="change one config field, dotted key, JSON value (repeatable), e.g. --set "
                        "train.learning_rate=1e-3")
    p.add_argument("--curriculum", default=",".join(map(str, PAPER_CURRICULUM)), metavar="T,T,...",
                   help="task of the pseudo-labelled faces in each self-training round: 1 (stride 4S score "
                        "map), 2 (stride 2S), 3 (full PIP); default 1,2,3,3,3 (the paper). 3,3,3 = plain "
                        "self-training")
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs of each training round (default: the config's train.epochs, 60)")
    p.add_argument("--steps-per-epoch", type=int, default=None, metavar="K",
                   help="steps per epoch (default: training faces of the round // batch size)")
    p.add_argument("--batch-size", type=int, default=None, help="batch size (default: train.batch_size, 16)")
    p.add_argument("--seed", type=int, default=0, help="seed of initialisation, data order and augmentation")
    p.add_argument("--init", metavar="WEIGHTS", default=None,
                   help="start every round from these weights instead of a random init (the paper starts each "
                        "round from ImageNet weights): 'pretrained' (the weights shipped for --model), a training "
                        "run folder, a weights folder or a .h5 file; every weight must keep its shape")
    p.add_argument("--force", action="store_true", help="overwrite an earlier STC run in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (epoch lines are still printed)")
    return p


def parse_curriculum(text: str) -> tuple:
    from tfalign.models.pipnet import TASK_COARSE_128, TASK_PIP
    try:
        tasks = tuple(int(t) for t in text.split(","))
    except ValueError:
        raise ValueError(f"--curriculum {text!r}: expected comma-separated task numbers, e.g. 1,2,3,3,3") from None
    if not tasks or any(t < TASK_COARSE_128 or t > TASK_PIP for t in tasks):
        raise ValueError(f"--curriculum {text!r}: tasks must be 1, 2 or 3")
    return tasks


@dataclasses.dataclass
class Plan:
    model: str
    arch: object
    config: object
    config_dict: dict
    labelled: list
    unlabelled: list
    val_sets: list
    curriculum: tuple
    epochs: int
    batch_size: int
    steps_per_epoch: int | None
    seed: int
    init: str | None = None


def plan(args) -> Plan:
    """Validate every argument and load every dataset; raises ValueError before anything is trained."""
    from tfalign.training import data as data_lib
    from tfalign.training.runconfig import build_config, resolve_model
    for flag in ("epochs", "batch_size", "steps_per_epoch"):
        value = getattr(args, flag)
        if value is not None and value <= 0:
            raise ValueError(f"--{flag.replace('_', '-')}: must be > 0, got {value}")
    curriculum = parse_curriculum(args.curriculum)
    arch, _ = resolve_model(args.model)
    if arch.name != "pipnet":
        raise ValueError(f"--model {args.model}: STC needs a PIPNet model (pipnet, pipnet_r18, pipnet_mbv3), "
                         f"got architecture '{arch.name}'")
    arch, config, _ = build_config(args.model, None, list(args.set) + ["stc=true"])
    if args.init:
        from tfalign.training import check_init
        check_init(args.init, args.model)
    if os.path.exists(os.path.join(args.out, "config.json")) and not args.force:
        raise ValueError(f"--out {args.out}: already holds a run; pass --force to overwrite it")
    loaded = {flag: data_lib.load_specs(getattr(args, flag), f"--{flag}") for flag in ("labelled", "unlabelled",
                                                                                       "val")}
    for flag in ("labelled", "val"):
        data_lib.check_schemes(loaded[flag], config.input, f"--{flag}")
    labelled = [r for _, recs in loaded["labelled"] for r in recs]
    # A config without a neighbour table (the bare 'pipnet' architecture) gets the labelled data's mean face's,
    # fixed in the config so every round's model decodes alike.
    from tfalign.config import replace
    from tfalign.models.pipnet import mean_face_from_records, scheme_neighbors
    if config.num_neighbors and not config.neighbors:
        nb = scheme_neighbors(mean_face_from_records(labelled, config.input), config.input.schemes,
                              config.num_neighbors)
        config = replace(config, neighbors=tuple(tuple(int(i) for i in row) for row in nb))
    from tfalign import config as cfg_lib
    scheme = config.input.schemes[0]
    unlabelled = [crop_record(r, scheme) for _, recs in loaded["unlabelled"] for r in recs]
    return Plan(args.model, arch, config, cfg_lib.to_dict(config), labelled, unlabelled, loaded["val"], curriculum,
                args.epochs or config.train.epochs, args.batch_size or config.train.batch_size,
                args.steps_per_epoch, args.seed, args.init)


def crop_record(record, scheme: str):
    """A stand-in for an unlabelled face: the ``scheme`` mean face stretched over the face box of its own points.

    Only its box matters (it places the crop for pseudo-labelling); the annotation it came from is dropped, so
    nothing of it can leak into training.
    """
    from tfalign.data import geometry
    from tfalign.data.records import FaceRecord
    from tfalign.models.pipnet import load_mean_face
    x, y, w, h = geometry.face_box(record.points, record.scheme, scheme)
    face = load_mean_face((scheme,))
    lo, hi = face.min(0), face.max(0)
    points = (face - lo) / np.maximum(hi - lo, 1e-9) * [w, h] + [x, y]
    return FaceRecord(image_path=record.image_path, points=points, scheme=scheme, image=record.image,
                      source=record.source or record.image_path)


def pseudo_label(predict, records, input_spec, batch_size: int, task: int) -> list:
    """Records with the model's NRM-merged landmarks (image pixels) as points, tagged with their STC task.

    ``predict``: ``tfalign.training.evaluation.landmark_fn(model)``."""
    from tfalign.data.records import FaceRecord
    from tfalign.schemes import get_scheme
    from tfalign.training.evaluation import predict_keras
    scheme = input_spec.schemes[0]
    # Pseudo-labels in the first markup of the model (the one whose points define every crop).
    pred = predict_keras(predict, records, input_spec, batch_size)[:, :get_scheme(scheme).num_points]
    return [FaceRecord(image_path=r.image_path, points=pred[i], scheme=scheme, image=r.image,
                       attributes={"stc_task": task}, source=f"pseudo-label of {r.source}")
            for i, r in enumerate(records)]


def evaluate(predict, val_sets, input_spec, batch_size: int) -> dict:
    from tfalign.training.evaluation import predict_keras, score, targets
    table, primary = {}, None
    for spec, records in val_sets:
        result = score(predict_keras(predict, records, input_spec, batch_size),
                       *targets(records, input_spec.schemes), input_spec.schemes)
        table[spec] = result["summary"]
        primary = result["primary"] if primary is None else primary
    return {"primary": primary, "table": table}


def train_round(p: Plan, records: list, tasks, out_dir: str, name: str, seed: int, progress: bool) -> dict:
    """Train a freshly initialised model on ``records`` (``tasks[i]`` = STC task of record i); keep the weights
    with the best validation NME in ``out_dir/best.weights.h5``. Returns the round's history."""
    from tqdm import tqdm

    from tfalign._keras import keras, tf
    from tfalign.training.data import make_dataset
    from tfalign.training.evaluation import landmark_fn
    from tfalign.training.schedules import make_optimizer

    keras.utils.set_random_seed(seed)
    model = p.arch.build(p.config)  # a fresh start every round, as the authors do
    if p.init:
        from tfalign.training import init_weights
        init_weights(model, p.init, p.model)  # STC's heads reuse the score conv: plain PIPNet weights fit
    steps = p.steps_per_epoch or max(1, len(records) // p.batch_size)
    optimizer = make_optimizer(p.config.train, steps, p.epochs)
    # Slot variables made before tracing: otherwise the first call creates them and `step` is traced twice.
    optimizer.build(model.trainable_variables)
    task_table = tf.constant(np.asarray(tasks, np.int32))
    arch, config = p.arch, p.config
    predict = landmark_fn(model)  # traced once per round, reused by validation and pseudo-labelling

    @tf.function
    def step(batch):
        # The pipeline's ``index`` is the record's position: it looks up which task that face trains.
        batch = dict(batch, stc_task=tf.gather(task_table, batch["index"]))
        with tf.GradientTape() as tape:
            total, parts = arch.loss(config, model(batch["image"], training=True), batch)
        grads = tape.gradient(total, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return {"loss": total, **parts}

    os.makedirs(out_dir, exist_ok=True)
    history, best = [], math.inf
    stream = iter(make_dataset(records, p.config.input, training=True, batch_size=p.batch_size, seed=seed))
    for epoch in range(1, p.epochs + 1):
        t0, sums = time.time(), {}
        for _ in tqdm(range(steps), desc=f"{name} epoch {epoch}/{p.epochs}", unit="step", disable=not progress,
                      leave=False):
            for k, v in step(next(stream)).items():
                sums[k] = sums.get(k, 0.0) + float(v)
        if not math.isfinite(sums["loss"]):
            raise RuntimeError(f"{name}: the loss became {sums['loss']} at epoch {epoch}")
        val = evaluate(predict, p.val_sets, p.config.input, p.batch_size)
        improved = val["primary"] < best
        if improved:
            best = val["primary"]
            save_weights(model, os.path.join(out_dir, "best.weights.h5"))
        history.append({"epoch": epoch, "seconds": round(time.time() - t0, 2),
                        "train": {k: v / steps for k, v in sums.items()}, "val_nme": val["primary"],
                        "val": val["table"], "best": improved})
        print(f"{name} epoch {epoch}/{p.epochs}: loss {sums['loss'] / steps:.4g}, val NME {val['primary']:.4%}"
              f"{' (best)' if improved else ''}", file=sys.stderr)
    model.load_weights(os.path.join(out_dir, "best.weights.h5"))
    return {"model": model, "predict": predict, "history": history, "best_val_nme": best}


def save_weights(model, path: str) -> None:
    """Atomic ``best.weights.h5`` in the trainer's format (``tfalign.training.load_model_dir`` reads it)."""
    from tfalign.io import atomic_path
    with atomic_path(path) as tmp:
        named = tmp + ".weights.h5"  # Keras picks the format from the suffix
        try:
            model.save_weights(named)
            os.replace(named, tmp)
        finally:
            if os.path.exists(named):
                os.unlink(named)


def run(p: Plan, out: str, progress: bool = True) -> dict:
    """The whole curriculum; returns the history written to ``out/history.json``."""
    from tfalign.io import atomic_write_json
    from tfalign.models.pipnet import TASK_PIP
    os.makedirs(out, exist_ok=True)
    atomic_write_json(os.path.join(out, "config.json"), {
        "model": p.model, "architecture": p.arch.name, "config": p.config_dict, "curriculum": list(p.curriculum),
        "epochs_per_round": p.epochs, "batch_size": p.batch_size, "seed": p.seed,
        "labelled": len(p.labelled), "unlabelled": len(p.unlabelled), "init": p.init, "command": sys.argv})
    history = {"rounds": []}
    labelled_tasks = [TASK_PIP] * len(p.labelled)
    result = train_round(p, p.labelled, labelled_tasks, os.path.join(out, "round_0"), "round 0 (labelled)",
                         p.seed, progress)
    history["rounds"].append({"round": 0, "task": None, "pseudo_labelled": 0, "best_val_nme": result["best_val_nme"],
                              "epochs": result["history"]})
    atomic_write_json(os.path.join(out, "history.json"), history)
    for k, task in enumerate(p.curriculum, start=1):
        # Pseudo-labels are re-estimated from the original unlabelled crops every round.
        pseudo = pseudo_label(result["predict"], p.unlabelled, p.config.input, p.batch_size, task)
        result = train_round(p, p.labelled + pseudo, labelled_tasks + [task] * len(pseudo),
                             os.path.join(out, f"round_{k}"), f"round {k} (task {task})", p.seed + k, progress)
        history["rounds"].append({"round": k, "task": task, "pseudo_labelled": len(pseudo),
                                  "best_val_nme": result["best_val_nme"], "epochs": result["history"]})
        atomic_write_json(os.path.join(out, "history.json"), history)
    save_weights(result["model"], os.path.join(out, "best.weights.h5"))
    return history


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    from tfalign.data.records import DataError
    try:
        p = plan(args)
    except (ValueError, DataError) as exc:
        print(f"tfalign.stc: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    history = run(p, args.out, progress=not args.no_progress)
    summary = ", ".join(f"round {r['round']}" + (f" (task {r['task']})" if r["task"] else "") +
                        f" {r['best_val_nme']:.4%}" for r in history["rounds"])
    print(f"done: best val NME per round: {summary}; model: {os.path.join(args.out, 'best.weights.h5')}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
