"""The work behind ``python -m tfalign.profile`` (argument parsing lives in tfalign/profile.py)."""
from __future__ import annotations

import json
import pathlib
import sys

from . import common


def _write_json(out_dir, name, obj) -> str:
    from tfalign.io import atomic_write_json
    path = pathlib.Path(out_dir) / name
    atomic_write_json(path, _jsonable(obj))
    return str(path)


def _jsonable(obj):
    import numpy as np
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return obj


def run(args) -> int:
    progress = not args.no_progress and not args.json
    if args.runs < 1:
        raise ValueError(f"--runs must be >= 1, got {args.runs}")
    if args.warmup < 0:
        raise ValueError(f"--warmup must be >= 0, got {args.warmup}")
    if args.adb and not args.model:
        raise ValueError("--adb needs MODEL.tflite")
    if args.adb and not args.benchmark_binary:
        raise ValueError("--adb needs --benchmark-binary FILE (the android_aarch64 benchmark_model from LiteRT)")
    out_dir = pathlib.Path(args.out) if args.out else None
    if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir}: exists and is not a folder")
    doc: dict = {}
    text: list[str] = []
    written: list[str] = []
    model = common.check_model_path(args.model) if args.model else None
    stem = model.stem if model else "profile"

    if model is not None and args.adb:
        from . import benchmark_tool
        adb = benchmark_tool.find_adb(args.adb_path)
        delegates = [d.strip() for d in args.adb_delegates.split(",") if d.strip()]
        bar = None
        if progress:
            from tqdm import tqdm
            bar = lambda it: tqdm(it, desc="adb benchmark_model", unit="setting")  # noqa: E731
        res = benchmark_tool.run_adb(model, args.benchmark_binary, delegates=delegates, threads=args.threads,
                                     warmup_runs=args.warmup, runs=args.runs, serial=args.serial, adb=adb,
                                     progress=bar)
        doc["adb"] = res
        from . import importer
        text.append("phone (adb, benchmark_model):\n" + importer.table(importer.merge_docs([("adb", res)])))
        if out_dir:
            written.append(_write_json(out_dir, f"{stem}.adb.json", res))
    elif model is not None:
        from . import host
        res = host.profile(model, threads=args.threads, xnnpack=args.xnnpack, runs=args.runs, warmup=args.warmup,
                           progress=progress)
        doc["host"] = res
        text.append("host (measured):\n" + host.table(res))
        if out_dir:
            written.append(_write_json(out_dir, f"{stem}.host.json", res))
            written.append(host.chart(res, out_dir / f"{stem}.host.png"))

    if model is not None and args.per_op:
        from . import perop
        first = next((r for r in doc.get("host", {}).get("results", [])
                      if r["threads"] == args.threads[0] and (r["delegate"] == "xnnpack") == args.xnnpack[0]), None)
        res = perop.profile(model, threads=args.threads[0], xnnpack=args.xnnpack[0], runs=args.runs,
                            warmup=args.warmup, whole_p50_ms=first["p50_ms"] if first else None, progress=progress)
        doc["per_op"] = res
        text.append("per op (measured, each op alone):\n" + perop.table(res))
        if out_dir:
            written.append(_write_json(out_dir, f"{stem}.perop.json", res))
            written.append(perop.chart(res, out_dir / f"{stem}.perop.png"))

    if args.devices or args.calibration:
        from . import phones
        est = phones.Estimator()
        if args.calibration:
            cal = est.calibration_report()
            doc["calibration"] = cal
            text.append("phone estimator calibration (leave-one-out over published figures):\n" +
                        common.fmt_table(["group", "rows", "networks", "devices", "LOO n", "median |err|", "max |err|",
         "family-out n", "family-out median |err|"],
                                         [(c["group"], c["rows"], c["workloads"], len(c["devices"]), c["loo"]["n"],
                                           "-" if c["loo"]["median_abs_pct"] is None else
                                           f"{c['loo']['median_abs_pct']:.1f}%",
                                           "-" if c["loo"]["max_abs_pct"] is None else
                                           f"{c['loo']['max_abs_pct']:.1f}%", c["leave_family_out"]["n"],
          "-" if c["leave_family_out"]["median_abs_pct"] is None else
          f"{c['leave_family_out']['median_abs_pct']:.1f}%") for c in cal]))
        if args.devices:
            if model is None:
                raise ValueError("--devices needs MODEL.tflite")
            from . import perop
            ops = perop.graph_ops(perop.read_model(model.read_bytes()))
            estimates = est.estimate(ops, args.devices)
            doc["estimates"] = {"label": phones.LABEL, "method": phones.METHOD, "model": model.name,
                                "precision": phones.model_precision(ops), "estimates": estimates}
            text.append(phones.table(estimates))
            if out_dir:
                written.append(_write_json(out_dir, f"{stem}.phones.json", doc["estimates"]))
                written.append(phones.chart(estimates, out_dir / f"{stem}.phones.png", model.name))

    if args.imports:
        from . import importer
        merged = importer.merge(args.imports)
        doc["imported"] = merged
        text.append("imported measurements:\n" + importer.table(merged))
        if out_dir:
            written.append(_write_json(out_dir, "imported.json", merged))
            written.append(importer.chart(merged, out_dir / "imported.png"))

    if args.json:
        json.dump(_jsonable(doc), sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print("\n\n".join(text))
        for w in written:
            print(f"wrote {w}")
    return 0
