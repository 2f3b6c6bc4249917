"""``python -m tfalign.export``: a trained model → TFLite and/or CoreML + contract + summary, checked against Keras.

Every exported file ``<stem>.tflite`` / ``<stem>.mlpackage`` gets ``<stem>.contract.json`` (the model contract,
also embedded in the model) and ``<stem>.summary.json`` (sizes, op histogram, int8 coverage, parity, latency)
beside it. Nothing is written until the model converted and passed its parity check; then each file is replaced
atomically, and existing files are only replaced with ``--force``.
"""
from __future__ import annotations

import argparse
import os
import sys

DEFAULT_MODEL = "mobile_two_stage"

EPILOG = """\
examples:
  python -m tfalign.export --target tflite                        # the shipped default model, float32
  python -m tfalign.export --target all --quantize int8 --out exports/int8
  python -m tfalign.export --model-dir runs/pipnet --quantize int8 --calibration 300w:../shared/data/lfpw/trainset

Files: <out>/<name>_<quantize>.tflite | .mlpackage, each with .contract.json and .summary.json beside it.
The contract (schemas/contract.schema.json) is all a client needs to run the model (tfalign.runtime, the apps).
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tfalign.export", description=__doc__.split("\n\n")[0].split(": ", 1)[1],
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", choices=("tflite", "coreml", "all"), default="tflite",
                   help="what to write: a .tflite (LiteRT, Android/iOS), a CoreML ML Program .mlpackage (iOS 16+), "
                        "or both (default: tflite)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", metavar="NAME",
                     help=f"model preset or architecture name (default: {DEFAULT_MODEL}, the shipped pretrained "
                          "model). Trained weights are loaded from tfalign/weights/NAME when shipped; otherwise "
                          "the model is exported with random weights and the summary says so")
    src.add_argument("--model-dir", metavar="DIR",
                     help="a training run folder (the --out of python -m tfalign.train): exports its best weights")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="change a config setting that keeps the weights before exporting (repeatable), e.g. "
                        "--set exit_stage=1 (DeCaFA early exit: only the first stage runs) or --set top_k=4 "
                        "(Pose-Tree-MoE: only the 4 best regression experts run)")
    p.add_argument("--quantize", choices=("none", "int8", "float16", "dynamic"), default="none",
                   help="none: float32; float16: fp16 weights; dynamic: int8 weights, float activations; int8: "
                        "full-integer (calibrated; spatial softmaxes stay float). CoreML: int8/dynamic = int8 "
                        "linear weight quantization, none/float16 = fp16 weights (default: none)")
    p.add_argument("--io-dtype", choices=("int8", "uint8"), default="int8",
                   help="int8 TFLite only: input (and quantized output) tensor type (default: int8)")
    p.add_argument("--palettize", type=int, choices=(2, 4, 6, 8), metavar="BITS",
                   help="CoreML only: k-means palettize the weights to BITS bits (2, 4, 6 or 8) "
                        "(coremltools.optimize; needs scikit-learn)")
    p.add_argument("--prune", metavar="SPEC",
                   help="one-shot pruning before export, from quantization/: magnitude:S (zero the smallest weights "
                        "of every prunable kernel to sparsity S: smaller gzip, same speed) or channels:R (remove "
                        "fraction R of the prunable filters: fewer MACs). No fine-tuning here: for accuracy, "
                        "fine-tune with quantization.pruning and export that run with --model-dir")
    p.add_argument("--calibration", metavar="SPEC",
                   help="int8 calibration faces as a dataset spec (e.g. 300w:../shared/data/lfpw/trainset); "
                        "default: synthetic faces (tfalign.data.synthetic), so no data is needed")
    p.add_argument("--calibration-size", type=int, default=64, metavar="N",
                   help="faces used for int8 calibration (default: 64)")
    p.add_argument("--check", metavar="SPEC",
                   help="faces for the Keras-vs-exported parity check (dataset spec); default: another random "
                        "sample of --calibration's dataset when it is given, else 16 synthetic faces disjoint from "
                        "the calibration set")
    p.add_argument("--check-size", type=int, default=16, metavar="N",
                   help="faces used for the parity check (default: 16)")
    p.add_argument("--no-check", action="store_true",
                   help="skip the parity gate (the summary still reports parity); for exporting models that are "
                        "known to differ, e.g. random-init smoke tests")
    p.add_argument("--name", metavar="STEM",
                   help="file stem (default: <model>_<quantize> for TFLite, <model>_coreml_<fp16|int8w|palN> for "
                        "CoreML; with --target all the CoreML files get STEM_coreml)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output folder (default: exports/<model name>)")
    p.add_argument("--force", action="store_true", help="replace existing files in --out")
    p.add_argument("--license", default=None,
                   help="license string stored in the contract and CoreML metadata (default: the weights' own, "
                        "else 'unspecified')")
    p.add_argument("--threads", type=int, default=1, metavar="N",
                   help="LiteRT threads for the host latency figure (default: 1)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except (ValueError, KeyError, FileExistsError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        print("tfalign.export: error: " + "; ".join(line.strip() for line in str(msg).splitlines() if line.strip()),
              file=sys.stderr)
        return 2
    return 0


def run(args) -> list:
    """Export per ``args``; returns the summaries written. Raises ValueError on bad input."""
    from mobile_export import export as export_lib

    if args.prune:
        export_lib.parse_prune(args.prune)  # a bad spec fails before the model is loaded
    for flag, value in (("--calibration-size", args.calibration_size), ("--check-size", args.check_size),
                        ("--threads", args.threads)):
        if value <= 0:
            raise ValueError(f"{flag}: must be > 0, got {value}")
    if args.palettize and args.target == "tflite":
        raise ValueError("--palettize: applies to CoreML only; use --target coreml or all")
    loaded = export_lib.load_model(args.model, args.model_dir, args.set)
    pruned = export_lib.prune(loaded, args.prune) if args.prune else None
    out = args.out or os.path.join("exports", loaded.name)
    targets = ("tflite", "coreml") if args.target == "all" else (args.target,)
    jobs = [export_lib.Job(target=t, quantize=args.quantize, io_dtype=args.io_dtype, palettize=args.palettize,
                           stem=_stem(args.name, t, len(targets)) if args.name
                           else export_lib.default_stem(loaded.name, t, args.quantize, args.palettize))
            for t in targets]
    export_lib.check_destinations(out, jobs, args.force)
    faces = export_lib.Faces(loaded.config.input, calibration=args.calibration, calibration_size=args.calibration_size,
                             check=args.check, check_size=args.check_size)
    # Bad data specs fail here, before minutes of conversion.
    faces.check_records()
    if args.quantize == "int8" and "tflite" in targets:
        faces.calibration_crops()
    # Every target is converted and checked before anything is written: one failure leaves --out as it was.
    from tqdm import tqdm

    prepared = [export_lib.prepare(loaded, job, faces, license=args.license, threads=args.threads,
                                   gate=not args.no_check)
                for job in tqdm(jobs, desc="convert + check", unit="target", leave=False, disable=len(jobs) < 2)]
    summaries = []
    for item in prepared:
        if pruned:
            item.summary["prune"] = pruned
        summary = export_lib.write(item, out, force=args.force)
        print(export_lib.format_summary(summary))
        summaries.append(summary)
    if loaded.weights == "random-init":
        print(f"note: {loaded.name} has no trained weights here; the files above hold a randomly initialised model",
              file=sys.stderr)
    return summaries


def _stem(name: str, target: str, count: int) -> str:
    if os.sep in name or "/" in name:
        raise ValueError(f"--name: a file stem, not a path (use --out for the folder), got '{name}'")
    return name + "_coreml" if target == "coreml" and count > 1 else name


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
