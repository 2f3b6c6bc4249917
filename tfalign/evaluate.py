"""Evaluate a trained or exported landmark model: NME / AUC / FR per subset, attribute and normalisation.

    python -m tfalign.evaluate --model-dir runs/m2s --data 300w:DATA/lfpw/trainset#val --out report.json \\
        --plot ced.png
    python -m tfalign.evaluate --tflite exports/default/model.tflite --data synthetic:200 --out report.json

``--model-dir`` runs the Keras model of a training run (``tfalign.training.load_model_dir``); ``--tflite`` runs an
exported model through its contract JSON only (``tfalign.runtime``). Both crop every face from the box of its
ground-truth points with the contract's crop (the evaluation preprocessing of training and export) and are scored
in image pixels. Each face's NME is normalised by the inter-ocular (outer eye corners), inter-pupil, box
(sqrt(w·h)) and diagonal distances; AUC and FR at --threshold. The report lists every failure (NME above the
threshold under the first normalisation). Bad arguments: one line on stderr, exit code 2.
"""
from __future__ import annotations

import argparse
import os
import sys

from tfalign.training.cli import EXIT_USAGE, OneLineParser

MAX_ATTRIBUTE_VALUES = 20


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m tfalign.evaluate", description=__doc__.split("\n\n")[0].replace("``", ""),
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model-dir", metavar="DIR", help="training run folder (python -m tfalign.train --out DIR)")
    src.add_argument("--tflite", metavar="FILE", help="exported .tflite with its .contract.json beside it")
    src.add_argument("--coreml", metavar="FILE", help="exported .mlpackage (predictions need macOS)")
    p.add_argument("--data", action="append", required=True, metavar="SPEC",
                   help="dataset spec, one subset each (repeatable): 300w:DIR, 300w:DIR#val, mtfl:LISTFILE, "
                        "synthetic:N, ...")
    p.add_argument("--out", required=True, metavar="REPORT.json", help="where to write the JSON report")
    p.add_argument("--plot", metavar="CED.png", help="also draw the cumulative error distribution (PNG)")
    p.add_argument("--threshold", type=float, default=0.1, help="NME threshold of AUC and FR (default 0.1)")
    p.add_argument("--which", choices=("best", "last"), default="best",
                   help="--model-dir weights: best (lowest validation NME, default) or last checkpoint")
    p.add_argument("--batch-size", type=int, default=32, help="Keras batch size (default 32)")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable records (listed in the report) "
                                                           "instead of stopping")
    return p


class _Source:
    """What is evaluated: a name, the predicted schemes and a predict(records) → [M, N, 2] image pixels."""

    def __init__(self, args):
        self.info = {}
        if args.model_dir:
            from tfalign.training import load_model_dir
            from tfalign.training.evaluation import landmark_fn, predict_keras
            from tfalign.training.loop import model_inputs
            arch, config, model = load_model_dir(args.model_dir, args.which)
            fn = landmark_fn(model)
            self.schemes = tuple(config.input.schemes)
            self.info = {"kind": "model_dir", "path": args.model_dir, "architecture": arch.name,
                         "weights": args.which}
            self.predict = lambda recs: predict_keras(fn, recs, config.input, args.batch_size,
                                                      lambda b: model_inputs(model, b))
        elif args.tflite:
            from tfalign import runtime
            from tfalign.training.evaluation import predict_runtime
            model = runtime.LandmarkModel(args.tflite)
            scheme = model.contract["scheme"]["name"]
            self.schemes = (scheme,)
            self.info = {"kind": "tflite", "path": args.tflite,
                         "contract": runtime.contract_path_for(args.tflite)}
            self.predict = lambda recs: predict_runtime(model, recs, scheme, progress=sys.stderr.isatty())
        else:
            if sys.platform != "darwin":
                raise ValueError(f"--coreml {args.coreml}: CoreML models run only on macOS (coremltools cannot "
                                 "predict on Linux); evaluate the .tflite export of the same model instead")
            raise ValueError(f"--coreml {args.coreml}: tfalign.runtime has no CoreML runner yet; evaluate the "
                             ".tflite export of the same model instead")


def attribute_groups(records) -> dict:
    """{attribute: {value: [indices]}}: categorical attributes (bool/int/str, few distinct values), and the head
    pose binned by |yaw| (0-30°, 30-60°, 60-90°, the AFLW2000-3D convention) where records carry ``pose_pyr``."""
    import math
    groups: dict = {}
    for i, rec in enumerate(records):
        for key, value in (rec.attributes or {}).items():
            if isinstance(value, (bool, int, str)):
                groups.setdefault(key, {}).setdefault(str(value), []).append(i)
            elif key == "pose_pyr" and value is not None:
                yaw = min(abs(math.degrees(float(value[1]))), 90.0)
                lo = min(int(yaw // 30) * 30, 60)
                groups.setdefault("yaw", {}).setdefault(f"{lo}-{lo + 30}", []).append(i)
    # Identifiers (every face its own value) and near-continuous values make no useful groups.
    return {k: dict(sorted(v.items())) for k, v in groups.items()
            if 1 < len(v) <= MAX_ATTRIBUTE_VALUES and len(v) < sum(len(ix) for ix in v.values())}


def evaluate(source, loaded, threshold: float) -> tuple:
    """(report dict, CED curves {label: per-face NME}) for every (spec, records) subset of ``loaded``."""
    import numpy as np

    from tfalign.training.evaluation import score, summarize, targets
    subsets, failures, pooled = {}, [], []
    for spec, records in loaded:
        pred = source.predict(records)
        true, mask = targets(records, source.schemes)
        result = score(pred, true, mask, source.schemes, threshold)
        per = result["per_sample"]
        pooled.append(per)
        subsets[spec] = {
            "faces": len(records), "metrics": result["summary"],
            "attributes": {attr: {value: summarize(per, np.asarray(idx), threshold) for value, idx in vals.items()}
                           for attr, vals in attribute_groups(records).items()},
        }
        for scheme, norms in per.items():
            norm, errs = next(iter(norms.items()))
            for i in np.flatnonzero(np.nan_to_num(errs, nan=-1.0) > threshold):
                failures.append({"subset": spec, "index": int(i), "source": records[i].source,
                                 "image_path": records[i].image_path, "scheme": scheme, "norm": norm,
                                 "nme": float(errs[i])})
    report = {"format": "tfalign-eval/1", "model": source.info, "schemes": list(source.schemes),
              "threshold": threshold, "subsets": subsets}
    if len(loaded) > 1:
        merged: dict = {}
        for per in pooled:
            for scheme, norms in per.items():
                for norm, errs in norms.items():
                    merged.setdefault(scheme, {}).setdefault(norm, []).append(errs)
        merged = {s: {n: np.concatenate(e) for n, e in norms.items()} for s, norms in merged.items()}
        report["all"] = {"faces": sum(len(r) for _, r in loaded), "metrics": summarize(merged, None, threshold)}
    report["failures"] = sorted(failures, key=lambda f: -f["nme"])
    curves = {f"{spec} ({scheme}, {next(iter(norms))})": next(iter(norms.values()))
              for spec, per in zip(subsets, pooled) for scheme, norms in per.items()}
    return report, curves


def print_table(report, file=sys.stdout) -> None:
    t = report["threshold"]
    print(f"{'subset':<40} {'scheme':<9} {'norm':<13} {'NME':>8} {f'AUC@{t:g}':>9} {f'FR@{t:g}':>8} {'faces':>6}",
          file=file)
    rows = list(report["subsets"].items()) + ([("all", report["all"])] if "all" in report else [])
    for name, sub in rows:
        for scheme, norms in sub["metrics"].items():
            for norm, m in norms.items():
                print(f"{name[-40:]:<40} {scheme:<9} {norm:<13} {m['nme']:>8.4f} {m[f'auc@{t:g}']:>9.4f} "
                      f"{m[f'fr@{t:g}']:>8.2%} {m['faces']:>6}", file=file)
    print(f"{len(report['failures'])} failures (NME > {t:g})", file=file)


def _check_writable(flag: str, path: str) -> None:
    """Fail before the (long) evaluation when the report could not be written: the nearest existing folder
    above ``path`` must be a writable folder."""
    folder = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(folder):
        folder = os.path.dirname(folder)
    if os.path.isdir(path) or not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        raise ValueError(f"{flag} {path}: cannot write there")


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    import types

    from tfalign.data.records import DataError
    from tfalign.io import atomic_write_json
    from tfalign.training import data as data_lib
    try:
        if not 0 < args.threshold <= 1:
            raise ValueError(f"--threshold: must be in (0, 1], got {args.threshold}")
        repeated = sorted({d for d in args.data if args.data.count(d) > 1})
        if repeated:
            raise ValueError(f"--data {repeated[0]}: given more than once")
        if args.batch_size <= 0:
            raise ValueError(f"--batch-size: must be > 0, got {args.batch_size}")
        for flag, path in (("--out", args.out), ("--plot", args.plot)):
            if path:
                _check_writable(flag, path)
        source = _Source(args)
        skipped = [] if args.skip_bad else None
        loaded = data_lib.load_specs(args.data, "--data", skipped)
        data_lib.check_schemes(loaded, types.SimpleNamespace(schemes=source.schemes), "--data")
    except (ValueError, DataError) as exc:
        print(f"tfalign.evaluate: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    report, curves = evaluate(source, loaded, args.threshold)
    from tfalign.training.runconfig import versions
    report["skipped"] = [str(e) for e in skipped or []]
    report["versions"] = versions()
    report["command"] = [sys.executable, "-m", "tfalign.evaluate", *argv]
    atomic_write_json(args.out, report)
    if args.plot:
        import numpy as np

        from tfalign.metrics import ced_plot
        ced_plot({k: v[np.isfinite(v)] for k, v in curves.items()}, args.plot, args.threshold)
    print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
