"""``python -m tfalign.detector train ...``: train the face detector (see :mod:`tfalign.detector.train`)."""
from __future__ import annotations

import argparse
import os
import sys

DEFAULT_OUT = os.path.join("tfalign", "weights", "face_detector")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tfalign.detector",
                                description="tfalign's face detector (CenterNet on LFPW + MTFL).")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train on LFPW #train + MTFL #train, calibrate and measure on LFPW #val")
    t.add_argument("--lfpw", required=True, metavar="DIR", help="LFPW trainset folder (300-W .pts + images)")
    t.add_argument("--mtfl", default="", metavar="LIST", help="MTFL training.txt (optional)")
    t.add_argument("--max-mtfl", type=int, default=0, metavar="N", help="use only the first N MTFL faces")
    t.add_argument("--out", default=DEFAULT_OUT, metavar="DIR", help=f"output folder (default: {DEFAULT_OUT})")
    t.add_argument("--input-size", type=int, default=128, help="square input side, multiple of 32 (128)")
    t.add_argument("--steps", type=int, default=6000, help="training steps (6000)")
    t.add_argument("--batch", type=int, default=32, help="batch size (32)")
    t.add_argument("--lr", type=float, default=2e-3, help="peak Adam learning rate; cosine decay over --steps or --max-minutes, "
                                                          "whichever comes first (2e-3)")
    t.add_argument("--warmup", type=int, default=200, help="linear warm-up steps (200)")
    t.add_argument("--max-minutes", type=float, default=0, help="training time limit; the learning-rate decay follows it when it "
                                                            "binds (0 = no limit)")
    t.add_argument("--score-threshold", type=float, default=0.3, help="default detection threshold stored (0.3)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--log-every", type=int, default=100)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = None if argv is None else list(argv)[1:]
    for name in ("steps", "batch", "input_size", "log_every"):
        if getattr(args, name) <= 0:
            print(f"tfalign.detector: error: --{name.replace('_', '-')}: must be > 0", file=sys.stderr)
            return 2
    if not os.path.isdir(args.lfpw):
        print(f"tfalign.detector: error: --lfpw {args.lfpw}: folder not found", file=sys.stderr)
        return 2
    if args.mtfl and not os.path.isfile(args.mtfl):
        print(f"tfalign.detector: error: --mtfl {args.mtfl}: file not found", file=sys.stderr)
        return 2
    from tfalign.detector.train import train
    try:
        train(args, log=lambda s: print(s, flush=True))
    except ValueError as exc:
        print(f"tfalign.detector: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
