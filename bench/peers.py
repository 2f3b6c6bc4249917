"""tfalign's exported models beside MediaPipe's face landmark model: same interpreter, machine and run.

MediaPipe's ``face_landmark.tflite`` (192×192 input, 468 3-D points) ships inside the ``mediapipe==0.10.21`` wheel.
It is read out of the wheel with zipfile — mediapipe is never installed or imported, and never a tfalign
dependency. Get the wheel once (ignored by git):

    .venv/bin/pip download mediapipe==0.10.21 --no-deps -d bench/.whl

tfalign models: give exported .tflite files, or let the script export the default model itself
(``python -m tfalign.export --quantize none|int8|float16`` into a temporary folder).

Every model is measured with the LiteRT interpreter (XNNPACK on, 1 and 2 threads), interleaved over several
rounds so that machine load drifts hit all models alike; the p50 reported is the median of the rounds' p50s.

    .venv/bin/python bench/peers.py [--tfalign A.tflite B.tflite] [--rounds 5] [--runs 50]
Prints a table and writes bench/results/peers.json.
"""
from __future__ import annotations

import argparse
import glob
import os
import pathlib
import subprocess
import sys
import tempfile
import zipfile

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
MEDIAPIPE_MEMBER = "mediapipe/modules/face_landmark/face_landmark.tflite"


def extract_face_landmark(wheel: str, folder: pathlib.Path) -> pathlib.Path:
    try:
        with zipfile.ZipFile(wheel) as zf:
            data = zf.read(MEDIAPIPE_MEMBER)
    except (OSError, zipfile.BadZipFile, KeyError) as exc:
        raise SystemExit(f"--mediapipe-wheel {wheel}: cannot read {MEDIAPIPE_MEMBER} ({exc})")
    out = folder / "mediapipe_face_landmark.tflite"
    out.write_bytes(data)
    return out


def export_default(folder: pathlib.Path) -> list[pathlib.Path]:
    out = []
    for q in ("none", "float16", "int8"):
        dest = folder / f"tfalign_{q}"
        cmd = [sys.executable, "-m", "tfalign.export", "--target", "tflite", "--quantize", q, "--out", str(dest),
               "--force", "--no-check"]
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.strip().splitlines()[-1:]}")
        found = sorted(dest.glob("*.tflite"))
        if not found:
            raise SystemExit(f"{dest}: the exporter wrote no .tflite")
        for f in found:  # give each file a name that says its quantization
            out.append(f)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tfalign", nargs="*", default=None, metavar="MODEL.tflite",
                    help="tfalign exported models (default: export the default model as fp32, fp16, int8)")
    ap.add_argument("--mediapipe-wheel", default=None,
                    help="mediapipe-0.10.21 wheel (default: bench/.whl/mediapipe-0.10.21-*.whl)")
    ap.add_argument("--threads", default="1,2", help="thread counts (default 1,2)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    ap.add_argument("--runs", type=int, default=50, help="timed runs per model per round (default 50)")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "peers.json"))
    args = ap.parse_args(argv)

    import numpy as np
    from tqdm import tqdm

    from mobile_export.profile import common, host, perop, phones
    from tfalign.io import atomic_write_json

    wheel = args.mediapipe_wheel or next(iter(sorted(glob.glob(str(REPO / "bench/.whl/mediapipe-0.10.21-*.whl")))),
                                         None)
    if not wheel:
        ap.error("no mediapipe wheel: run `.venv/bin/pip download mediapipe==0.10.21 --no-deps -d bench/.whl` "
                 "or pass --mediapipe-wheel")
    threads = [int(t) for t in args.threads.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        peer = extract_face_landmark(wheel, tmp)
        ours = [pathlib.Path(p) for p in args.tfalign] if args.tfalign else export_default(tmp)
        models = [("mediapipe face_landmark (0.10.21)", peer)] + [(f"tfalign {p.parent.name}/{p.name}", p)
                                                                   for p in ours]
        for _, p in models:
            common.check_model_path(p)
        samples = {(name, t): [] for name, _ in models for t in threads}
        inits = {(name, t): [] for name, _ in models for t in threads}
        steps = [(r, name, p, t) for r in range(args.rounds) for name, p in models for t in threads]
        for _, name, p, t in tqdm(steps, desc="peers", unit="run"):
            contract, _ = common.load_contract(p)
            res = host.measure(p, threads=t, xnnpack=True, runs=args.runs, warmup=5, contract=contract)
            samples[(name, t)].append(res["p50_ms"])
            inits[(name, t)].append(res["init_ms"])
        rows = []
        for name, p in models:
            ops = perop.graph_ops(perop.read_model(p.read_bytes()))
            interp = common.make_interpreter(p)
            ins = interp.get_input_details()[0]
            outs = [list(map(int, d["shape"])) for d in interp.get_output_details()]
            contract, csrc = common.load_contract(p)
            row = {"model": name, "file": p.name, "size_bytes": p.stat().st_size,
                   "input": list(map(int, ins["shape"])), "input_dtype": ins["dtype"].__name__, "outputs": outs,
                   "precision": phones.model_precision(ops), "mmacs": sum(o["macs"] for o in ops) / 1e6,
                   "num_ops": len(ops), "contract": csrc,
                   # Latency does not depend on weight values, but say when they are untrained.
                   "weights": ((contract or {}).get("model") or {}).get("weights", "n/a")}
            for t in threads:
                row[f"p50_ms_{t}t"] = float(np.median(samples[(name, t)]))
                row[f"p50_spread_ms_{t}t"] = [float(min(samples[(name, t)])), float(max(samples[(name, t)]))]
                row[f"init_ms_{t}t"] = float(np.median(inits[(name, t)]))
            rows.append(row)
    base = rows[0]
    for row in rows:
        row["size_ratio_vs_mediapipe"] = row["size_bytes"] / base["size_bytes"]
        row["macs_ratio_vs_mediapipe"] = row["mmacs"] / base["mmacs"] if base["mmacs"] else None
        for t in threads:
            row[f"latency_ratio_vs_mediapipe_{t}t"] = row[f"p50_ms_{t}t"] / base[f"p50_ms_{t}t"]
    header = ["model", "input", "prec", "KB", "MMACs"] + [f"p50 {t}T ms" for t in threads] + \
             ["size ×MP"] + [f"lat {t}T ×MP" for t in threads]
    table = [[r["model"], "x".join(map(str, r["input"][1:3])), r["precision"], f"{r['size_bytes'] / 1024:.0f}",
              f"{r['mmacs']:.1f}"] + [f"{r[f'p50_ms_{t}t']:.3f}" for t in threads] +
             [f"{r['size_ratio_vs_mediapipe']:.2f}"] + [f"{r[f'latency_ratio_vs_mediapipe_{t}t']:.2f}"
                                                       for t in threads] for r in rows]
    print(common.fmt_table(header, table))
    doc = {"about": "tfalign exported models vs MediaPipe face_landmark.tflite, LiteRT XNNPACK on this host, "
                    "interleaved rounds (median of per-round p50)",
           "host": common.host_device(), "runtime": common.runtime_version(), "rounds": args.rounds,
           "runs_per_round": args.runs, "threads": threads, "created": common.now_iso(),
           "note": "MediaPipe face_landmark predicts 468 3-D points from a 192x192 crop; tfalign's default model "
                   "predicts its scheme's 2-D points: the ratios compare cost, not task.",
           "rows": rows}
    atomic_write_json(args.out, doc)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
