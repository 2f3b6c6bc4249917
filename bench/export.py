"""Export figures for one model in every mode: file size, int8 coverage, Keras parity, host latency.

    python bench/export.py [--model NAME] [--check SPEC] [--check-size N]

Runs mobile_export's own convert + check path (nothing is written but the result JSON), prints a table and writes
bench/results/export_<model>.json. Parity is Keras vs the exported model through tfalign.runtime; latency is
LiteRT on this host, one thread, median of 30 after 5 warm-ups, on a shared machine (indicative only).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None):
    from mobile_export import export
    from tfalign.io import atomic_write_json

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="model preset (default: the package default)")
    p.add_argument("--check", default=None, help="parity faces as a dataset spec (default: synthetic)")
    p.add_argument("--check-size", type=int, default=16)
    p.add_argument("--calibration", default=None, help="int8 calibration spec (default: synthetic)")
    args = p.parse_args(argv)
    loaded = export.load_model(args.model, None)
    faces = export.Faces(loaded.config.input, calibration=args.calibration, check=args.check,
                         check_size=args.check_size)
    jobs = [export.Job("tflite", q, stem=export.default_stem(loaded.name, "tflite", q))
            for q in ("none", "float16", "dynamic", "int8")]
    jobs += [export.Job("coreml", q, palettize=b, stem=export.default_stem(loaded.name, "coreml", q, b))
             for q, b in (("none", None), ("int8", None), ("none", 4))]
    rows = []
    for job in jobs:
        s = export.prepare(loaded, job, faces, gate=False).summary
        par = s.get("parity") or {}
        rows.append({"stem": job.stem, "target": job.target, "size_kib": round(s["size_bytes"] / 1024, 1),
                     "int8_coverage": s.get("int8_coverage"), "parity_max_abs": par.get("max_abs"),
                     "parity_nme": par.get("nme"), "parity_passed": par.get("passed"),
                     "nme_exported_vs_truth": par.get("nme_exported_vs_truth"),
                     "latency_median_ms": (s.get("host_latency") or {}).get("median_ms"),
                     "coreml_weights_max_rel_err": s.get("weights_max_rel_err"), "summary": s})
    print(f"model {loaded.name} ({loaded.weights}), parity faces: {faces.check_source}")
    print(f"{'file':42s} {'KiB':>8s} {'int8 cov':>8s} {'max|Δ|':>9s} {'NME vs K':>9s} {'ok':>4s} {'ms':>7s}")
    for r in rows:
        fmt = lambda v, f: format(v, f) if v is not None else "-"  # noqa: E731
        print(f"{r['stem']:42s} {r['size_kib']:8.1f} {fmt(r['int8_coverage'], '8.3f'):>8s} "
              f"{fmt(r['parity_max_abs'], '9.2e'):>9s} {fmt(r['parity_nme'], '9.4f'):>9s} "
              f"{fmt(r['parity_passed'], ''):>4s} {fmt(r['latency_median_ms'], '7.2f'):>7s}")
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", f"export_{loaded.name}.json")
    # Which weights were measured, exactly: the shipped file changes when a model is retrained.
    weights_sha256 = None
    if loaded.weights.startswith("pretrained:"):
        import hashlib

        from tfalign.models.base import WEIGHTS_FILE
        path = os.path.join(export.WEIGHTS_ROOT, loaded.name, WEIGHTS_FILE)
        with open(path, "rb") as fh:
            weights_sha256 = hashlib.sha256(fh.read()).hexdigest()
    atomic_write_json(out, {"model": loaded.name, "weights": loaded.weights, "weights_sha256": weights_sha256,
                            "check": faces.check_source,
                            "command": "python bench/export.py " + " ".join(argv or sys.argv[1:]), "rows": rows})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
