"""What the compression command lines share: model loading, fine-tuning settings, run folders, error handling.

``python -m quantization.prune`` and ``python -m quantization.qat`` start from a trained model (``--model NAME``:
the shipped weights in ``tfalign/weights/NAME``; ``--model-dir RUN``: a ``python -m tfalign.train`` run), fine-tune
the compressed copy through the package trainer (cosine learning-rate decay) and write a folder that
``python -m tfalign.export --model-dir`` accepts where the architecture can rebuild the model from its config.
No TensorFlow import at module level: ``--help`` stays instant.
"""
from __future__ import annotations

import json
import os
import sys
import time

from tfalign.cli import EXIT_USAGE, OneLineParser

SPEC_NOTE = "dataset spec, e.g. 300w:../shared/data/lfpw/trainset#train (see python -m tfalign.data --help)"


def parser(prog: str, description: str, epochs: int, lr: float) -> OneLineParser:
    import argparse
    p = OneLineParser(prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", metavar="NAME",
                     help="start from the shipped trained weights of NAME (tfalign/weights/NAME); a model without "
                          "shipped weights starts from a random initialisation (said on stderr)")
    src.add_argument("--model-dir", metavar="RUN", help="start from a training run (the --out of tfalign.train)")
    p.add_argument("--data", metavar="SPEC", help=f"fine-tuning faces: {SPEC_NOTE}; needed when --epochs > 0")
    p.add_argument("--val", metavar="SPEC", help="validation faces (the best epoch is kept by the trainer); "
                                                 "needed when --epochs > 0")
    p.add_argument("--epochs", type=int, default=epochs, help=f"fine-tuning epochs (default {epochs})")
    p.add_argument("--steps", type=int, default=None, metavar="N",
                   help="steps per epoch (default: one pass over --data)")
    p.add_argument("--batch-size", type=int, default=16, help="fine-tuning batch size (default 16)")
    p.add_argument("--lr", type=float, default=lr,
                   help=f"peak learning rate, decayed to 0 along a cosine (default {lr:g})")
    p.add_argument("--seed", type=int, default=0, help="data order and augmentation seed (default 0)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (must not hold a training run)")
    return p


def add_distill(p, student: str = "magnitude and channel: fine-tune with the unpruned model as teacher, adding W x "
                               "the distance between the pruned and the unpruned model's outputs") -> None:
    """``--distill W`` and ``--distill-outputs``, shared by ``quantization.prune``, ``quantization.qat`` and
    ``bench/compression.py``; read the outputs back with :func:`distill_outputs`. ``student``: the help's opening,
    saying which fine-tune gets the teacher."""
    p.add_argument("--distill", type=float, default=0.0, metavar="W",
                   help=f"{student} (points, or --distill-outputs) to the loss (quantization.distill; default 0: off; "
                        "for mobile_two_stage its l2_weight, 300, is a natural scale)")
    p.add_argument("--distill-outputs", default="", metavar="NAME,...",
                   help="with --distill: the model outputs to distil (default: its point outputs, [B, N, 2]); for "
                        "models whose points come from an argmax, which passes no gradient, name the maps, e.g. "
                        "heatmaps1,heatmaps2 for dense_unet (compared as the architecture's distill_loss says: for "
                        "dense_unet the KL divergence between the per-cell heatmap probabilities; otherwise mean "
                        "squared error)")


def distill_outputs(p, args, weight=None) -> list:
    """``--distill-outputs NAME,...`` as a list of output names; it means nothing without a teacher: ``weight``,
    by default ``--distill W`` (``bench/compression.py`` also counts ``--qat-distill``)."""
    names = [k.strip() for k in args.distill_outputs.split(",") if k.strip()]
    if names and not (args.distill if weight is None else weight):
        p.error("--distill-outputs: needs --distill W > 0")
    return names


def check_distill(p, args) -> None:
    """``--distill W`` and ``--distill-outputs`` of a command line that fine-tunes ``--epochs`` (prune, qat):
    one-line usage errors, and ``args.distill_outputs`` parsed into a list."""
    if args.distill and args.epochs == 0:
        p.error("--distill: needs --epochs > 0 (the teacher acts while the compressed model fine-tunes)")
    if args.distill < 0:
        p.error(f"--distill: must be >= 0, got {args.distill}")
    args.distill_outputs = distill_outputs(p, args)


def check(p: OneLineParser, args) -> None:
    """Argument errors the parser cannot see, as one-line usage errors (exit 2)."""
    if not (args.model or args.model_dir):
        p.error("give --model NAME or --model-dir RUN (the trained model to compress)")
    if args.epochs < 0:
        p.error(f"--epochs: must be >= 0, got {args.epochs}")
    if args.steps is not None and args.steps <= 0:
        p.error(f"--steps: must be > 0, got {args.steps}")
    if args.batch_size <= 0:
        p.error(f"--batch-size: must be > 0, got {args.batch_size}")
    if not args.lr > 0:
        p.error(f"--lr: must be > 0, got {args.lr}")
    if args.epochs > 0 and not (args.data and args.val):
        p.error("--data and --val are needed to fine-tune (--epochs > 0); --epochs 0 compresses without training")
    if os.path.isfile(os.path.join(args.out, "config.json")):
        p.error(f"--out {args.out}: already holds a run; choose another folder")


def load(args):
    """``(arch, config, keras model, source)`` for ``--model`` / ``--model-dir`` (ValueError naming the flag)."""
    if args.model_dir:
        from tfalign.training import load_model_dir
        arch, config, model = load_model_dir(args.model_dir)
        return arch, config, model, f"run:{args.model_dir}"
    from tfalign.models.base import load_pretrained, pretrained_folder
    from tfalign.training.runconfig import resolve_model
    try:
        arch, config = resolve_model(args.model)
    except (KeyError, ValueError) as exc:
        raise ValueError(f"--model: {exc.args[0] if exc.args else exc}") from None
    if pretrained_folder(args.model):
        arch, config, model = load_pretrained(args.model)
        return arch, config, model, f"pretrained:tfalign/weights/{args.model}"
    from tfalign._keras import keras
    print(f"warning: no shipped weights for '{args.model}': starting from a random initialisation",
          file=sys.stderr)
    keras.utils.set_random_seed(args.seed)
    return arch, config, arch.build(config), "random-init"


def run_settings(args, arch, config):
    """The trainer's run description: the model's own config with a cosine schedule from ``--lr``."""
    from tfalign import config as cfg_lib
    from tfalign.training.runconfig import RunSettings
    data = json.loads(json.dumps(cfg_lib.to_dict(config)))
    data["train"].update({"learning_rate": args.lr, "schedule": "cosine", "batch_size": args.batch_size})
    return RunSettings(model=args.model or arch.name, config=data, data=[args.data] if args.data else [],
                       val=[args.val] if args.val else [], epochs=args.epochs, batch_size=args.batch_size,
                       seed=args.seed, steps_per_epoch=args.steps)


def write_run(out_dir: str, run, arch, model, extra: dict, keras_file: str = "") -> None:
    """Make ``out_dir`` a run folder ``tfalign.export --model-dir`` loads: ``best.weights.h5`` holds ``model``'s
    weights (a plain model of the architecture: pruning/QAT wrappers removed); ``config.json`` is the trainer's
    (kept, with ``extra`` added) or written here when nothing was trained. ``keras_file``: the model's layer
    widths differ from its config (channel pruning), so the whole Keras model is saved under that name instead,
    and ``config.json`` points the loader (``tfalign.training.load_model_dir``) at it."""
    from tfalign.io import atomic_path, atomic_write_json
    from tfalign.training.runconfig import versions
    os.makedirs(out_dir, exist_ok=True)
    if keras_file:
        with atomic_path(os.path.join(out_dir, keras_file)) as tmp:
            model.save(tmp + ".keras")
            os.replace(tmp + ".keras", tmp)
        extra = {**extra, "keras_model": keras_file}
    else:
        path = os.path.join(out_dir, "best.weights.h5")
        with atomic_path(path) as tmp:
            named = tmp + ".weights.h5"  # Keras picks the format from the suffix
            model.save_weights(named)
            os.replace(named, tmp)
    cfg_path = os.path.join(out_dir, "config.json")
    if os.path.isfile(cfg_path):
        with open(cfg_path, encoding="utf-8") as fh:
            doc = json.load(fh)
    else:
        doc = {"format": "tfalign-run/1", "architecture": arch.name, **run.to_json(), "versions": versions(),
               "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    doc["compression"] = extra
    doc["command"] = doc.get("command") or list(sys.argv)
    atomic_write_json(cfg_path, doc)


def main_guard(fn, prog: str, argv) -> int:
    """Run ``fn(argv)``; bad data or arguments found later (ValueError, DataError) → one line on stderr, exit 2."""
    from tfalign.data.records import DataError
    try:
        return fn(argv)
    except (ValueError, DataError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
