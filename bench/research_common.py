"""What bench/decafa.py, bench/dense_unet.py and bench/pose_tree_moe.py share: train variants side by side through
the one trainer (``python -m tfalign.train``, same data, seed, batch and step budget), read their validation NME,
and measure params, .tflite size and host LiteRT latency of their inference models.

Each variant is one ``python -m tfalign.train`` process (its exact command is recorded), so a variant's memory is
returned before the next one starts and any run can be repeated by hand.
"""
from __future__ import annotations

import argparse
import json
import shlex
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
sys.path.insert(0, HERE)

DATA = os.path.normpath(os.path.join(REPO, "..", "shared", "data"))
LFPW = os.path.join(DATA, "lfpw", "trainset")
MTFL = os.path.join(DATA, "mtfl", "training.txt")


def parser(doc: str, name: str, *, epochs: int, steps: int, batch: int) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"bench/{name}.py", description=doc.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=doc)
    p.add_argument("--epochs", type=int, default=epochs, help=f"epochs per variant (default {epochs})")
    p.add_argument("--steps", type=int, default=steps, help=f"steps per epoch, the same for every variant "
                                                            f"(default {steps})")
    p.add_argument("--batch-size", type=int, default=batch, help=f"batch size (default {batch})")
    p.add_argument("--seed", type=int, default=0, help="seed of init, data order and augmentation (default 0)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 1 epoch of 2 steps, 5 timed invocations (numbers are meaningless)")
    p.add_argument("--runs", type=int, default=50, help="timed LiteRT invocations per model (default 50)")
    p.add_argument("--warmup", type=int, default=5, help="untimed LiteRT invocations first (default 5)")
    p.add_argument("--data", default=f"300w:{LFPW}#train", metavar="SPEC",
                   help="training faces (default: the LFPW #train split)")
    p.add_argument("--val", default=f"300w:{LFPW}#val", metavar="SPEC",
                   help="validation faces (default: the fixed LFPW #val split)")
    p.add_argument("--only", nargs="+", metavar="VARIANT", help="train/measure only these variants")
    p.add_argument("--train-only", action="store_true",
                   help="train the variants and stop (no measurements, no JSON): several such processes with "
                        "different --only train in parallel; the full command then reuses their runs")
    p.add_argument("--work", default=os.path.join(REPO, "runs", f"bench_{name}"), metavar="DIR",
                   help=f"where the variants' training runs go (default runs/bench_{name}); a finished run with "
                        "the same command is reused, not retrained")
    p.add_argument("--out", default=os.path.join(HERE, "results", f"{name}.json"), help="JSON results file")
    p.add_argument("--note", default=None, help="free text stored in the JSON (e.g. why a variant is missing)")
    return p


def finish_args(p: argparse.ArgumentParser, argv=None):
    args = p.parse_args(argv)
    if args.quick:
        args.epochs, args.steps, args.runs, args.warmup = 1, 2, 5, 1
    for flag in ("epochs", "steps", "batch_size", "runs", "warmup"):
        if getattr(args, flag) <= 0:
            p.error(f"--{flag.replace('_', '-')} must be > 0, got {getattr(args, flag)}")
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args


def train_variant(name: str, model: str, sets: dict, args, extra_data=()) -> dict:
    """Train ``model`` with ``--set`` overrides into ``args.work/name``; returns what the run reports."""
    out = os.path.join(args.work, name)
    cmd = [sys.executable, "-m", "tfalign.train", "--model", model, "--data", args.data,
           *[a for spec in extra_data for a in ("--data", spec)], "--val", args.val,
           "--epochs", str(args.epochs), "--steps-per-epoch", str(args.steps), "--batch-size", str(args.batch_size),
           "--seed", str(args.seed), "--no-progress", "--out", out,
           *[a for k, v in sets.items() for a in ("--set", f"{k}={json.dumps(v, separators=(',', ':'))}")]]
    shown = shlex.join(["python", *cmd[1:]])
    done = _finished(out, cmd, args.epochs)
    t0 = time.time()
    if not done:
        if os.path.isdir(out):
            import shutil
            shutil.rmtree(out)
        os.makedirs(args.work, exist_ok=True)
        print(f"[{time.strftime('%H:%M:%S')}] training {name}: {shown}", file=sys.stderr, flush=True)
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        if proc.returncode != 0:
            lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
            return {"variant": name, "command": shown, "error": lines[-1] if lines else f"exit {proc.returncode}"}
    history = json.load(open(os.path.join(out, "history.json")))["epochs"]
    last = history[-1]
    # The epoch whose weights best.weights.h5 holds: every later measurement (latency, top-k, early exit, export)
    # loads those, so the NME reported beside them is theirs too.
    best = min(history, key=lambda e: e["val_nme"])
    primary = next(iter(best["val"].values()))
    scheme = next(iter(primary))
    io = primary[scheme]["inter_ocular"]
    return {"variant": name, "model": model, "set": sets, "extra_data": list(extra_data), "command": shown,
            "run": os.path.relpath(out, REPO), "train_seconds": round(sum(e["train_seconds"] for e in history), 1),
            "wall_seconds": None if done else round(time.time() - t0, 1), "steps": last["step"],
            "final_loss": last["train"]["loss"], "best_epoch": best["epoch"],
            "val_nme_pct": 100 * io["nme"], "val_auc@0.1": io["auc@0.1"], "val_fr@0.1_pct": 100 * io["fr@0.1"],
            "val_faces": io["faces"], "val_nme_by_epoch_pct": [round(100 * e["val_nme"], 3) for e in history]}


def train_all(variants, model: str, args) -> list:
    """Train the variants picked by ``--only`` side by side (same budget and seed); a failed one is a row with
    ``error``, not the end of the run."""
    from tqdm import tqdm

    todo = [v for v in variants if not args.only or v[0] in args.only]
    schedule = budget_schedule(model, args.epochs)
    return [train_variant(name, model, {**schedule, **sets}, args, extra)
            for name, sets, extra in tqdm(todo, desc="train", unit="variant")]


def budget_schedule(model: str, epochs: int) -> dict:
    """``--set`` moving a step schedule's milestones to the paper's fractions of this run's epoch budget: the
    milestones are absolute epochs of the paper's 60, so a bench of a few epochs would otherwise never decay."""
    from tfalign.training.runconfig import resolve_model
    _, config = resolve_model(model)
    train = config.train
    if train.schedule != "step" or not train.milestones:
        return {}
    return {"train.milestones": [max(1, int(epochs * m / train.epochs)) for m in train.milestones]}


def exit_code(rows: list) -> int:
    return 0 if all("error" not in r for r in rows) else 1


def _finished(out: str, cmd: list, epochs: int) -> bool:
    try:
        run = json.load(open(os.path.join(out, "config.json")))
        history = json.load(open(os.path.join(out, "history.json")))["epochs"]
    except (OSError, ValueError):
        return False
    return run.get("command", [])[1:] == cmd[1:] and len(history) == epochs


def load_run(row: dict, **config_changes):
    """(arch, config, keras model with the run's best weights), optionally with config fields changed that do not
    change the weights (early exit, top-k)."""
    from tfalign import config as cfg_lib
    from tfalign.training import load_model_dir, read_run
    from tfalign.training.runconfig import resolve_model

    folder = os.path.join(REPO, row["run"])
    if not config_changes:
        return load_model_dir(folder)
    run = read_run(folder)
    arch, config = resolve_model(run["model"], run["config"])
    config = cfg_lib.replace(config, **config_changes)
    model = arch.build(config)
    model.load_weights(os.path.join(folder, "best.weights.h5"))
    return arch, config, model


def measure(arch, config, model, args, crop: np.ndarray, int8: bool = False, calib=None) -> dict:
    """Params of the training and inference models, float32 (and int8) .tflite size and LiteRT 1-thread latency."""
    from mobile_export import tflite as tfl

    inference = arch.inference_model(config, model)
    out = {"params": int(model.count_params()), "inference_params": int(inference.count_params())}
    f32 = tfl.convert(inference, "none")
    out["float32_kb"] = round(len(f32) / 1024, 1)
    out["latency_ms_float32"] = defer_latency(f32, crop, args.warmup)
    if int8:
        i8 = tfl.convert(inference, "int8", representative=lambda: iter(calib))
        out["int8_kb"] = round(len(i8) / 1024, 1)
        out["latency_ms_int8"] = defer_latency(i8, crop, args.warmup)
    return out


_PENDING: list = []  # (stats dict to fill, Runner with its input set)


def defer_latency(model_bytes: bytes, crop: np.ndarray, warmup: int) -> dict:
    """An empty dict that :func:`time_deferred` fills with median / p90 / min ms of this model (LiteRT, 1 thread,
    one real crop: an unset input may hold NaNs, which make GATHER indices invalid)."""
    from mobile_export.tflite import Runner

    runner = Runner(model_bytes)
    runner.set_input(crop[None])
    for _ in range(warmup):
        runner.interpreter.invoke()
    stats: dict = {}
    _PENDING.append((stats, runner))
    return stats


def time_deferred(args) -> None:
    """Time every model of :func:`defer_latency` in interleaved rounds — each round invokes each model
    ``runs / rounds`` times — so all rows of a table see the same machine load (this CPU is shared)."""
    from tqdm import tqdm
    rounds = max(1, min(10, args.runs))
    per = max(1, round(args.runs / rounds))
    times = [[] for _ in _PENDING]
    for _ in tqdm(range(rounds), desc="latency rounds", unit="round", file=sys.stderr):
        for i, (_, runner) in enumerate(_PENDING):
            for _ in range(per):
                t0 = time.perf_counter()
                runner.interpreter.invoke()
                times[i].append((time.perf_counter() - t0) * 1e3)
    for (stats, _), t in zip(_PENDING, times):
        stats.update(median=float(np.median(t)), p90=float(np.percentile(t, 90)), min=float(np.min(t)),
                     runs=len(t), rounds=rounds)
    _PENDING.clear()


def trained_models(rows: list, n_crops: int = 1):
    """``(row, arch, config, model, crops)`` for every variant that trained (failed ones keep their ``error``),
    under one progress bar; ``crops``: ``n_crops`` real crops in the first model's input format, made once."""
    from tqdm import tqdm
    crops = None
    for row in tqdm(rows, desc="measure", unit="variant"):
        if "error" in row:
            continue
        arch, config, model = load_run(row)
        if crops is None:
            crops = crops_for(config.input, n_crops)
        yield row, arch, config, model, crops


def export_run(row: dict, args, sets=(), name: str = "") -> dict:
    """int8 TFLite and CoreML of a variant's run through the export CLI (the user's path), with its parity check;
    ``sets``: export-time ``--set`` changes (DeCaFA's ``exit_stage``)."""
    out = os.path.join(args.work, "export")
    cmd = [sys.executable, "-m", "tfalign.export", "--model-dir", os.path.join(REPO, row["run"]), "--target",
           "all", "--quantize", "int8", "--calibration", args.data, "--calibration-size", "32", "--check", args.val,
           "--check-size", "16", "--out", out, "--force", *[a for s in sets for a in ("--set", s)],
           *(["--name", name] if name else [])]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
    files = sorted(os.listdir(out)) if os.path.isdir(out) else []
    if name:
        files = [f for f in files if f.startswith(name)]
    result = {"command": " ".join(["python", *cmd[1:]]), "exit_code": proc.returncode, "files": files}
    for f in files:
        if f.endswith(".json"):
            try:
                result.setdefault("summaries", {})[f] = json.load(open(os.path.join(out, f)))
            except (OSError, ValueError):
                pass
    if proc.returncode != 0:
        result["error"] = lines[-1] if lines else f"exit {proc.returncode}"
    return result


def crops_for(input_spec, n: int = 8) -> np.ndarray:
    """``n`` real crops of the LFPW #train split in the model's input format, batch axis first."""
    from mobile_two_stage import crops

    from tfalign.data.spec import load_records
    return crops(load_records(f"300w:{LFPW}#train"), input_spec, n)


def machine() -> dict:
    import platform
    from tfalign.training.runconfig import cpu_info
    return {"cpu_count": os.cpu_count(), "cpu": cpu_info(), "load_average_1m": round(os.getloadavg()[0], 1),
            "platform": platform.platform(), "note": "2 cores shared with other training runs: latencies are "
                                                     "noisy, compare within one table only"}


def print_table(rows: list, columns: list) -> None:
    """``columns``: [(header, key or callable, format)]."""
    widths = [max(len(h), 10) for h, _, _ in columns]
    print("  ".join(h.rjust(w) for (h, _, _), w in zip(columns, widths)))
    for r in rows:
        cells = []
        for (h, key, fmt), w in zip(columns, widths):
            try:
                v = key(r) if callable(key) else r[key]
                cells.append((fmt.format(v) if v is not None else "-").rjust(w))
            except (KeyError, TypeError, IndexError):
                cells.append("-".rjust(w))
        print("  ".join(cells))
        if "error" in r:
            print(f"    {r['variant']}: error: {r['error']}")


def write(args, name: str, result: dict) -> None:
    from tfalign.io import atomic_write_json
    result = {"command": f"python bench/{name}.py " + " ".join(args.argv), "budget": {
        "epochs": args.epochs, "steps_per_epoch": args.steps, "batch_size": args.batch_size, "seed": args.seed,
        "quick": args.quick}, "data": args.data, "val": args.val, "machine": machine(),
        **({"note": args.note} if args.note else {}),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **result}
    atomic_write_json(args.out, result)
    print(f"wrote {os.path.relpath(args.out, REPO)}", file=sys.stderr)
