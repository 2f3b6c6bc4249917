"""Look at a dataset before training on it: ``python -m tfalign.data inspect SPEC [--json] [--montage out.png]``.

Examples::

    python -m tfalign.data inspect 300w:../shared/data/lfpw/trainset
    python -m tfalign.data inspect mtfl:../shared/data/mtfl/training.txt#val --json
    python -m tfalign.data inspect coco:faces.json:images --skip-bad --montage faces.png

Counts faces, landmark schemes, boxes, visibility flags and bad records. A bad record stops the command with one
line on stderr naming the file (and line) and what was wrong (exit code 2); with ``--skip-bad`` it goes on and
lists every skipped record. ``--json`` prints one JSON object on stdout (``faces``, ``scheme``, ``num_points``,
``skipped``, ...). ``--montage`` draws the points on a sample of faces (green: visible, red: occluded).
"""
from __future__ import annotations

import argparse
import collections
import json
import sys

from tfalign.cli import EXIT_USAGE, OneLineParser


def build_parser() -> argparse.ArgumentParser:
    from tfalign.data.spec import SPEC_HELP

    p = OneLineParser(prog="python -m tfalign.data", description=__doc__.split("\n\n")[0],
                      formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    ins = sub.add_parser("inspect", help="count faces, schemes and bad records of a dataset spec; draw a montage",
                         description="Count faces, schemes and bad records of a dataset spec; optionally draw a "
                                     "montage of annotated faces.",
                         formatter_class=argparse.RawDescriptionHelpFormatter,
                         epilog=__doc__.split("\n\n", 1)[1])
    ins.add_argument("spec", metavar="SPEC", help=SPEC_HELP)
    ins.add_argument("--json", action="store_true", help="print one JSON object on stdout instead of a table")
    ins.add_argument("--montage", metavar="PNG", help="write a grid of sampled faces with their points drawn "
                                                      "to this image file (written atomically)")
    ins.add_argument("--samples", type=int, default=16, metavar="K",
                     help="number of faces in the montage (default 16)")
    ins.add_argument("--tile", type=int, default=192, metavar="PX", help="montage tile size in pixels (default 192)")
    ins.add_argument("--seed", type=int, default=0, help="seed choosing the montage's faces (default 0)")
    ins.add_argument("--skip-bad", action="store_true",
                     help="skip bad records (reported, with file and line) instead of stopping at the first one")
    ins.add_argument("--no-image-check", action="store_true",
                     help="do not open image headers (faster; missing images and far-outside points go unnoticed)")
    return p


def summarize(spec: str, records: list, skipped: list) -> dict:
    """The JSON summary of a loaded dataset."""
    schemes = collections.Counter(r.scheme for r in records)
    counts = collections.Counter(r.num_points for r in records)
    return {
        "spec": spec,
        "faces": len(records),
        "scheme": schemes.most_common(1)[0][0] if len(schemes) == 1 else sorted(schemes),
        "schemes": dict(sorted(schemes.items())),
        "num_points": counts.most_common(1)[0][0] if len(counts) == 1 else sorted(counts),
        "images": len({r.image_path or r.source for r in records}),
        "with_box": sum(r.box is not None for r in records),
        "with_visibility": sum(r.visibility is not None for r in records),
        "occluded_points": int(sum(int((r.visibility == 0).sum()) for r in records if r.visibility is not None)),
        "skipped": len(skipped),
        "skipped_records": [{"source": e.source, "line": e.line, "reason": e.reason} for e in skipped],
    }


def print_table(summary: dict, out=None) -> None:
    out = out or sys.stdout
    rows = [("spec", summary["spec"]), ("faces", summary["faces"]), ("images", summary["images"]),
            ("schemes", ", ".join(f"{k} ({v})" for k, v in summary["schemes"].items())),
            ("points per face", summary["num_points"]), ("with face box", summary["with_box"]),
            ("with visibility", f"{summary['with_visibility']} ({summary['occluded_points']} occluded points)"),
            ("skipped (bad)", summary["skipped"])]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}", file=out)
    for e in summary["skipped_records"]:
        where = f"{e['source']}:{e['line']}" if e["line"] is not None else e["source"]
        print(f"  skipped {where}: {e['reason']}", file=out)


def montage(records: list, path: str, samples: int = 16, tile: int = 192, seed: int = 0) -> int:
    """Draw the points of up to ``samples`` faces (chosen with ``seed``) on square crops; returns faces drawn."""
    import cv2
    import numpy as np

    from tfalign.data import geometry
    from tfalign.data.pipeline import load_image
    from tfalign.io import atomic_write

    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(len(records), size=min(samples, len(records)), replace=False))
    cols = int(np.ceil(np.sqrt(len(chosen))))
    rows = int(np.ceil(len(chosen) / cols))
    grid = np.zeros((rows * tile, cols * tile, 3), np.uint8)
    radius = max(1, tile // 96)
    for k, i in enumerate(chosen):
        rec = records[i]
        cx, cy, side = geometry.square_crop(rec.points_box(), crop_scale=1.4)
        affine = geometry.crop_affine((cx, cy), max(side, 1.0), tile, tile)
        crop = geometry.warp(load_image(rec), affine, tile, tile)
        pts = geometry.transform_points(rec.points, affine)
        vis = np.ones(len(pts)) if rec.visibility is None else rec.visibility
        for (x, y), v in zip(pts, vis):
            cv2.circle(crop, (int(round(x * 16)), int(round(y * 16))), radius * 16,
                       (0, 255, 0) if v > 0 else (255, 0, 0), -1, cv2.LINE_AA, 4)
        cv2.putText(crop, f"{rec.scheme} #{i}", (3, tile - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 0), 1,
                    cv2.LINE_AA)
        r, c = divmod(k, cols)
        grid[r * tile:(r + 1) * tile, c * tile:(c + 1) * tile] = crop
    ok, png = cv2.imencode(".png", cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"--montage: OpenCV could not encode {path}")
    atomic_write(path, png.tobytes())
    return len(chosen)


def inspect(args) -> int:
    from tfalign.data.spec import load_records

    if args.samples < 1 or args.tile < 32:
        raise ValueError(f"--samples must be >= 1 and --tile >= 32, got {args.samples} and {args.tile}")
    if args.montage and not args.montage.lower().endswith(".png"):
        raise ValueError(f"--montage: expected a .png path, got {args.montage!r}")
    skipped: list = []
    records = load_records(args.spec, skip_bad=args.skip_bad, report=skipped,
                           check_images=not args.no_image_check)
    summary = summarize(args.spec, records, skipped)
    if args.montage:
        summary["montage"] = {"path": args.montage,
                              "faces": montage(records, args.montage, args.samples, args.tile, args.seed)}
    if args.json:
        print(json.dumps(summary))
    else:
        print_table(summary)
        if args.montage:
            print(f"montage: {summary['montage']['faces']} faces → {args.montage}")
    return 0


def main(argv=None) -> int:
    from tfalign.data.records import DataError

    args = build_parser().parse_args(argv)
    try:
        return inspect(args)
    except (DataError, ValueError, OSError) as exc:
        print(f"tfalign.data: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
