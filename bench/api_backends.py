"""Do Keras, float .tflite and int8 .tflite give the same landmarks through tfalign.load? → table +
bench/results/api_backends.json.

Exports the model with the exporter's own code (``mobile_export.export``, int8 calibrated on faces of the training
split), loads the three with ``tfalign.load`` and runs the validation faces through ``.landmarks`` twice: on the
ground-truth box without refinement (the model alone), and as a user would, without boxes (portrait prior +
refinement). Per backend: NME against the truth; against Keras: the largest coordinate difference in units of the
crop side (float tolerance 1e-3) and the NME (int8 tolerance 0.02) — mobile_export.conformance's tolerances.

    python bench/api_backends.py --model-dir runs/pipnet_mbv3_lfpw --faces 24
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

DEFAULT_DATA = os.path.normpath(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..",
                                             "shared", "data", "lfpw", "trainset"))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", default=None, help="packaged model name (default: mobile_two_stage)")
    src.add_argument("--model-dir", default=None, help="a training run folder (python -m tfalign.train --out)")
    p.add_argument("--data", default=DEFAULT_DATA, help="300-W style folder; #train calibrates, #val is measured")
    p.add_argument("--faces", type=int, default=24, help="validation faces measured (default 24)")
    p.add_argument("--calibration-size", type=int, default=32, help="int8 calibration faces (default 32)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                                 "api_backends.json"))
    args = p.parse_args(argv)
    for flag in ("faces", "calibration_size"):
        if getattr(args, flag) <= 0:
            p.error(f"--{flag.replace('_', '-')}: must be > 0")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    from tqdm import tqdm

    import tfalign
    from mobile_export import export
    from tfalign.api import Landmarker
    from tfalign.data import geometry
    from tfalign.data.pipeline import load_image
    from tfalign.data.spec import load_records
    from tfalign.io import atomic_write_json

    from api_video import weights_sha256
    sha = weights_sha256(args.model_dir or args.model or "mobile_two_stage")
    loaded = export.load_model(args.model, args.model_dir)
    if loaded.weights == "random-init":
        print("api_backends: warning: random initialisation (no trained weights): agreement is trivial",
              file=sys.stderr)
    faces = export.Faces(loaded.config.input, calibration=f"300w:{args.data}#train",
                         calibration_size=args.calibration_size, check=f"300w:{args.data}#val", check_size=8)
    models = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("none", "int8"):
            job = export.Job("tflite", mode, stem=f"m_{mode}")
            export.export(loaded, job, tmp, faces, gate=False)
            models["tflite_float" if mode == "none" else "tflite_int8"] = tfalign.load(os.path.join(tmp, job.stem +
                                                                                                    ".tflite"))
        models = {"keras": Landmarker.from_keras(loaded.inference, loaded.config, source=loaded.weights), **models}
        records = load_records(f"300w:{args.data}#val")
        records = [records[i] for i in np.linspace(0, len(records) - 1, min(args.faces, len(records))).astype(int)]
        scheme = models["keras"].scheme
        stats = {}
        for rec in tqdm(records, desc="faces", unit="face"):
            image, gt = load_image(rec), np.asarray(rec.points, np.float64)
            iod = float(scheme.norm_distance(gt, "inter_ocular"))
            for how, boxes, refine in (("truth_box", [geometry.points_box(gt)], 0), ("no_box", None, 2)):
                out = {k: m.landmarks(image, boxes=boxes, refine=refine)[0] for k, m in models.items()}
                ref = out["keras"]
                side = loaded.config.input.crop_scale * max(ref.box[2], ref.box[3])
                for k, f in out.items():
                    s = stats.setdefault(how, {}).setdefault(k, {"nme_truth": [], "nme_vs_keras": [],
                                                                  "max_abs_vs_keras_crop": []})
                    s["nme_truth"].append(np.linalg.norm(f.points - gt, axis=1).mean() / iod)
                    s["nme_vs_keras"].append(np.linalg.norm(f.points - ref.points, axis=1).mean() / iod)
                    s["max_abs_vs_keras_crop"].append(np.abs(f.points - ref.points).max() / side)
    table = {how: {k: {"nme_truth": float(np.mean(v["nme_truth"])), "nme_vs_keras": float(np.mean(v["nme_vs_keras"])),
                       "nme_vs_keras_max": float(np.max(v["nme_vs_keras"])),
                       "max_abs_vs_keras_crop": float(np.max(v["max_abs_vs_keras_crop"]))}
                   for k, v in per.items()} for how, per in stats.items()}
    result = {"model": loaded.name, "weights": loaded.weights, "weights_sha256": sha, "faces": len(records), "data": f"300w:{args.data}#val",
              "tolerances": {"float_max_abs_crop": 1e-3, "int8_nme": 0.02}, "results": table,
              "command": "python bench/api_backends.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    atomic_write_json(args.out, result)
    print(f"{loaded.name} ({loaded.weights}), {len(records)} faces of {result['data']}")
    print(f"{'faces from':10} {'backend':13} {'NME truth':>9} {'NME vs Keras':>12} {'(max)':>7} {'max|Δ|/crop':>11}")
    for how, per in table.items():
        for k, r in per.items():
            print(f"{how:10} {k:13} {r['nme_truth']:9.4f} {r['nme_vs_keras']:12.5f} {r['nme_vs_keras_max']:7.5f} "
                  f"{r['max_abs_vs_keras_crop']:11.2e}")
    print(f"→ {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
