"""Per-op workloads of the reference models behind the published phone latencies (../shared/PHONES.md).

The phone estimator (mobile_export/profile/phones.py) is calibrated on published latencies of MobileNet v1/v2/v3,
NASNet-mobile, ResNet50 and MediaPipe's face models. It needs each reference model's per-op costs computed exactly
as for a user's model, so every reference is rebuilt from its published architecture with random weights
(``keras.applications.*(weights=None)``: nothing is downloaded), converted to a float32 .tflite and read back with
``perop.graph_ops``. Latency does not depend on weight values, only on shapes. Int8 costs are the same graph with
1-byte activations and weights (bytes / 4; int32 biases are negligible).

Run once when the feature definition changes (minutes on 2 cores):
    .venv/bin/python bench/calibrate_phones.py [--extra NAME=FILE.tflite ...] [--report-only]
Writes mobile_export/profile/workloads.json and prints MACs against the published MACs as a check, then fits the
estimator and writes its leave-one-out error per (delegate, precision) group to bench/results/phone_calibration.json.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# id → (builder, kwargs, input size, published MMACs or None)
V1 = {f"mobilenet_v1_{a}_{r}": ("MobileNet", {"alpha": float(a)}, r, m)
      for a, row in {"0.25": (14, 21, 34, 41), "0.50": (49, 77, 110, 150), "0.75": (104, 162, 233, 317),
                     "1.0": (186, 291, 418, 569)}.items()
      for r, m in zip((128, 160, 192, 224), row)}
V2 = {f"mobilenet_v2_{a}_{r}": ("MobileNetV2", {"alpha": float(a)}, r, m)
      for a, r, m in [("1.4", 224, 582), ("1.0", 224, 300), ("0.75", 224, 209), ("0.5", 224, 97),
                      ("0.35", 224, 59), ("1.0", 192, 221), ("1.0", 160, 154), ("1.0", 128, 99), ("1.0", 96, 56)]}
OTHER = {
    "mobilenet_v3_large_1.0_224": ("MobileNetV3Large", {"alpha": 1.0}, 224, 217),
    "mobilenet_v3_large_0.75_224": ("MobileNetV3Large", {"alpha": 0.75}, 224, 155),
    "mobilenet_v3_small_1.0_224": ("MobileNetV3Small", {"alpha": 1.0}, 224, 66),
    "mobilenet_v3_small_0.75_224": ("MobileNetV3Small", {"alpha": 0.75}, 224, 44),
    "nasnet_mobile_224": ("NASNetMobile", {}, 224, 564),
    "resnet50_224": ("ResNet50", {}, 224, 4100),
}
REFERENCES = {**V1, **V2, **OTHER}


def convert(builder: str, kwargs: dict, size: int) -> bytes:
    from tfalign._keras import keras, tf
    extra = {"include_preprocessing": False} if builder.startswith("MobileNetV3") else {}
    fn = getattr(keras.applications, builder)
    model = fn(input_shape=(size, size, 3), weights=None, **kwargs, **extra)
    # Static batch 1, as the exporter writes it (a dynamic batch changes kernels on some runtimes).
    inp = keras.Input((size, size, 3), batch_size=1)
    fixed = keras.Model(inp, model(inp))
    conv = tf.lite.TFLiteConverter.from_keras_model(fixed)
    out = conv.convert()
    keras.backend.clear_session()
    return out


def features_of(tflite_bytes: bytes, source: str) -> dict:
    from mobile_export.profile import perop, phones
    model = perop.read_model(tflite_bytes)
    ops = perop.graph_ops(model)
    return {"source": source, "fp32": phones.features(ops, 1.0), "int8": phones.features(ops, 0.25),
            "macs": sum(o["macs"] for o in ops), "num_ops": len(ops)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--extra", action="append", default=[], metavar="NAME=FILE",
                    help="also compute the workload of an existing .tflite (e.g. MediaPipe's face_landmark)")
    ap.add_argument("--only", default="", help="comma-separated reference ids to (re)compute; default all")
    ap.add_argument("--out", default=str(REPO / "mobile_export" / "profile" / "workloads.json"))
    ap.add_argument("--report-only", action="store_true", help="only fit and report (no conversions)")
    ap.add_argument("--skip-references", action="store_true",
                    help="keep the stored reference workloads; only add --extra ones")
    args = ap.parse_args(argv)
    if args.report_only:
        return report()
    import json

    from tqdm import tqdm

    from tfalign.io import atomic_write_json
    out_path = pathlib.Path(args.out)
    existing = json.loads(out_path.read_text()) if out_path.exists() else {}
    workloads = dict(existing.get("workloads", {}))
    todo = [] if args.skip_references else [k for k in REFERENCES if not args.only or k in args.only.split(",")]
    for key in tqdm(todo, desc="reference models", unit="model"):
        builder, kwargs, size, _ = REFERENCES[key]
        src = f"keras.applications.{builder}({', '.join(f'{k}={v}' for k, v in kwargs.items())}" \
              f"{', ' if kwargs else ''}input_shape=({size}, {size}, 3), weights=None) → float32 TFLite"
        workloads[key] = features_of(convert(builder, kwargs, size), src)
        workloads[key]["published_mmacs"] = REFERENCES[key][3]
        atomic_write_json(out_path, {"about": __doc__.strip().splitlines()[0], "workloads": workloads})
    for spec in args.extra:
        name, _, path = spec.partition("=")
        if not name or not os.path.isfile(path):
            ap.error(f"--extra {spec!r}: expected NAME=FILE with an existing .tflite")
        workloads[name] = features_of(pathlib.Path(path).read_bytes(), f"{pathlib.Path(path).name} (as shipped)")
        workloads[name]["published_mmacs"] = None
    atomic_write_json(out_path, {"about": __doc__.strip().splitlines()[0], "workloads": workloads})
    print(f"{'workload':34s} {'MMACs':>9s} {'published':>9s} {'ops':>4s}")
    for k, w in workloads.items():
        pub = w.get("published_mmacs")
        print(f"{k:34s} {w['macs'] / 1e6:9.1f} {'' if pub is None else pub:>9} {w['num_ops']:4d}")
    print(f"wrote {out_path}")
    report()


def report():
    from mobile_export.profile import common, phones
    from tfalign.io import atomic_write_json
    est = phones.Estimator()
    cal = est.calibration_report()
    print(common.fmt_table(
        ["group", "rows", "networks", "devices", "eta", "LOO n", "median |err|", "max |err|",
         "family-out n", "family-out median |err|"],
        [(c["group"], c["rows"], c["workloads"], len(c["devices"]), c["parallel_efficiency"] or "-", c["loo"]["n"],
          "-" if c["loo"]["median_abs_pct"] is None else f"{c['loo']['median_abs_pct']:.1f}%",
          "-" if c["loo"]["max_abs_pct"] is None else f"{c['loo']['max_abs_pct']:.1f}%", c["leave_family_out"]["n"],
          "-" if c["leave_family_out"]["median_abs_pct"] is None else
          f"{c['leave_family_out']['median_abs_pct']:.1f}%") for c in cal]))
    out = REPO / "bench" / "results" / "phone_calibration.json"
    atomic_write_json(out, {"method": phones.METHOD, "groups": cal,
                            "skipped_rows": [{k: v for k, v in r.items() if k != "x"} for r in est.skipped]})
    print(f"wrote {out}")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory():
        main()
