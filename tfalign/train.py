"""Train any tfalign architecture: ``python -m tfalign.train --model NAME --data SPEC --val SPEC --epochs N --out DIR``.

Examples::

    python -m tfalign.train --model mobile_two_stage --data 300w:../shared/data/lfpw/trainset --val synthetic:64 \\
        --epochs 60 --out runs/m2s
    python -m tfalign.train --out runs/m2s --resume                 # after a crash / kill -9 / preemption
    python -m tfalign.train --model mobile_two_stage --init pretrained --data ... --val ... --epochs 20 --out runs/ft
    TF_CONFIG=... python -m tfalign.train ... --strategy multiworker  # on every worker (docs/training.md)

Writes DIR/config.json, history.json, best.weights.h5, checkpoints/ and tensorboard/ (see tfalign.training).
Bad arguments or data stop the run before training starts: one line on stderr, exit code 2.
"""
from __future__ import annotations

import argparse
import os
import sys

from tfalign.training.cli import EXIT_USAGE, OneLineParser


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m tfalign.train", description=__doc__.split("\n\n")[0].replace("``", ""),
                      formatter_class=argparse.RawDescriptionHelpFormatter,
                      epilog="Model names: python -c 'import tfalign.models as m; print(m.list_models())' (plus tiny_test, "
                             "the trainer's 32x32 test model). Guide: docs/training.md")
    p.add_argument("--model", help="preset or architecture name (e.g. mobile_two_stage, pipnet_r18, tiny_test); "
                                   "its config carries the paper's defaults. Optional with --resume.")
    p.add_argument("--config", metavar="FILE", help="JSON file with config fields to change (partial: nested "
                                                    "objects like {\"train\": {\"learning_rate\": 0.001}})")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="change one config field, dotted key, JSON value (repeatable): --set train.optimizer=sgd "
                        "--set input.schemes='[\"300w_68\"]'")
    p.add_argument("--data", action="append", default=[], metavar="SPEC",
                   help="training dataset spec (repeatable; several are mixed in one stream, e.g. 300w:DIR and "
                        "mtfl:LISTFILE with per-sample masks): 300w:DIR, mtfl:LISTFILE, synthetic:N, ...")
    p.add_argument("--val", action="append", default=[], metavar="SPEC",
                   help="validation dataset spec (repeatable); NME on the first picks the best checkpoint")
    p.add_argument("--epochs", type=int, help="number of epochs (overrides train.epochs of the config)")
    p.add_argument("--out", required=True, metavar="DIR", help="run folder (created; must not hold another run "
                                                               "unless --resume)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last complete checkpoint (epoch counter, optimizer, "
                        "schedule, data order); other flags may be left out, and must match the run if given")
    p.add_argument("--seed", type=int, default=None, help="seed of the data order, augmentation and init (default 0)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="global batch size, split over all replicas (overrides train.batch_size)")
    p.add_argument("--strategy", default=None, choices=("default", "mirrored", "multiworker", "tpu"),
                   help="tf.distribute strategy: default (one device), mirrored (all local GPUs), multiworker "
                        "(machines from TF_CONFIG), tpu (TPU_NAME). Default: default")
    p.add_argument("--steps-per-epoch", type=int, default=None, metavar="K",
                   help="steps per epoch (default: training faces // batch size)")
    p.add_argument("--init", metavar="WEIGHTS",
                   help="start from these weights instead of a random init (fine-tuning): 'pretrained' (the "
                        "weights shipped for --model), a training run folder (its best.weights.h5), a weights "
                        "folder (config.json + weights.npz) or a .h5 file; every weight must keep its shape")
    p.add_argument("--skip-bad", action="store_true",
                   help="go on past unreadable records (each is listed in DIR/config.json) instead of stopping")
    p.add_argument("--log-every", type=int, default=10, metavar="STEPS",
                   help="write step losses to TensorBoard every STEPS steps (default 10)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (epoch lines are still printed)")
    return p


def plan(args, argv) -> tuple:
    """Validate every argument and build the RunSettings; raises ValueError before anything is trained."""
    from tfalign.training.distribute import check_strategy_args, is_chief_from_env
    from tfalign.training.loop import prepare_out_dir
    from tfalign.training.runconfig import RunSettings, build_config

    for flag in ("epochs", "batch_size", "steps_per_epoch"):
        value = getattr(args, flag)
        if value is not None and value <= 0:
            raise ValueError(f"--{flag.replace('_', '-')}: must be > 0, got {value}")
    if args.resume:
        from tfalign.training import read_run
        try:
            stored = RunSettings.from_json(read_run(args.out), os.path.join(args.out, "config.json"))
        except ValueError as exc:
            raise ValueError(f"--resume: {exc}") from None
        given = {"model": args.model, "data": args.data or None, "val": args.val or None, "epochs": args.epochs,
                 "seed": args.seed, "batch_size": args.batch_size, "strategy": args.strategy,
                 "steps_per_epoch": args.steps_per_epoch, "skip_bad": args.skip_bad or None,
                 "init": os.path.abspath(args.init) if args.init and args.init != "pretrained" else args.init}
        for key, value in given.items():
            if value is not None and value != getattr(stored, key):
                raise ValueError(f"--{key.replace('_', '-')} {value!r} differs from the run being resumed "
                                 f"({getattr(stored, key)!r} in {args.out}/config.json); leave it out or start a "
                                 "new run")
        if args.config or args.set:
            raise ValueError("--config/--set cannot change a run being resumed; start a new run instead")
        check_strategy_args(stored.strategy)
        if is_chief_from_env(stored.strategy):
            prepare_out_dir(args.out, resume=True)
        return stored, True
    missing = [f for f in ("model", "data", "val", "epochs") if not getattr(args, f)]
    if missing:
        raise ValueError(f"missing {', '.join('--' + m for m in missing)} (needed unless --resume)")
    repeated = sorted({v for v in args.val if args.val.count(v) > 1})
    if repeated:  # (--data may repeat a spec on purpose, to weight a dataset twice)
        raise ValueError(f"--val {repeated[0]}: given more than once")
    check_strategy_args(args.strategy or "default")
    arch, config, config_dict = build_config(args.model, args.config, args.set, epochs=args.epochs,
                                             batch_size=args.batch_size)
    # Other workers of a multi-worker run share --out with the chief (a shared file system) but never write there.
    if is_chief_from_env(args.strategy or "default"):
        prepare_out_dir(args.out, resume=False)
    if args.init:
        from tfalign.training import check_init
        check_init(args.init, args.model)
    run = RunSettings(model=args.model, config=config_dict, data=list(args.data), val=list(args.val),
                      epochs=config.train.epochs, batch_size=config.train.batch_size,
                      seed=args.seed if args.seed is not None else 0, steps_per_epoch=args.steps_per_epoch,
                      strategy=args.strategy or "default", skip_bad=args.skip_bad,
                      init=os.path.abspath(args.init) if args.init and args.init != "pretrained" else args.init)
    return run, False


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    from tfalign.data.records import DataError
    from tfalign.training.loop import Trainer, TrainingError
    try:
        run, resume = plan(args, argv)
        trainer = Trainer(run, args.out, resume=resume, command=[sys.executable, "-m", "tfalign.train", *argv],
                          progress=not args.no_progress, log_every=args.log_every)
    except (ValueError, DataError) as exc:
        print(f"tfalign.train: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        history = trainer.fit()
    except TrainingError as exc:
        print(f"tfalign.train: error: {exc}", file=sys.stderr)
        return 1
    if trainer.dist.is_chief and history["epochs"]:
        best = min(history["epochs"], key=lambda e: e["val_nme"])
        print(f"done: best val NME {best['val_nme']:.4%} at epoch {best['epoch']}; model: "
              f"{os.path.join(args.out, 'best.weights.h5')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
