"""Does MTFL help PIPNet, and how: an equal-budget study → table + bench/results/pipnet_mtfl.json.

Issue #5 asks for "LFPW train plus the 10,000 MTFL faces (5 points, through the per-sample scheme mask, or as STC's
unlabelled data — measure which helps)". Three arms, same model, seed and number of optimizer steps:

    A  LFPW #train only (68 points)                                      python -m tfalign.train
    B  LFPW #train + MTFL, 5 MTFL points supervised through the mask     python -m tfalign.train
       (``input.schemes = ["300w_68", "mtfl_5"]``: 73 head channels; the 68 are evaluated)
    C  STC: LFPW #train labelled, MTFL unlabelled, short curriculum      python -m tfalign.stc
       (round 0 + one round per task; the steps of all rounds add up to A's)

Model: pipnet_mbv3 (MobileNetV3-Large, C = 10) from scratch at a reduced input (128 px, stride 16 → the paper's
8×8 score map), Adam 1e-3 with step decay; the budget fits 2 shared CPU cores. LFPW's 733 faces are listed
``--lfpw-repeat`` times in B and C so that about half of each batch is LFPW (listed once, MTFL would be 93 % of the
faces and the 68-point heads would see a fraction of A's faces for the same steps); A's stream is LFPW alone.

Each arm reports the weights of its best validation epoch (as every tfalign run does; the 72 faces of LFPW
``#val`` also pick that epoch, the same for every arm). Differences between arms come with the paired standard
error over the same 72 faces (std of the per-face NME differences / sqrt(72)) next to the unpaired one.

Usage (run at most two arms at once on this machine)::

    python bench/pipnet_mtfl.py commands               # the exact command of each arm
    nohup python bench/pipnet_mtfl.py run A > runs/pipnet_mtfl_A.log 2>&1 &   # also B, C: CPU + wall seconds
    python bench/pipnet_mtfl.py report                 # evaluate the arms → table + bench/results/pipnet_mtfl.json
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
DATA = os.environ.get("TFALIGN_DATA", os.path.join(os.path.dirname(REPO), "shared", "data"))
LFPW_TRAIN = f"300w:{os.path.join(DATA, 'lfpw', 'trainset')}#train"
LFPW_VAL = f"300w:{os.path.join(DATA, 'lfpw', 'trainset')}#val"
MTFL = f"mtfl:{os.path.join(DATA, 'mtfl', 'training.txt')}"
RESULTS = os.path.join(REPO, "bench", "results", "pipnet_mtfl.json")
B_SETS = ('input.schemes=["300w_68","mtfl_5"]', "neighbors=[]")
ARMS = {"A": "LFPW #train only", "B": "LFPW #train + MTFL through the per-sample mask",
        "C": "STC: LFPW #train labelled + MTFL unlabelled"}


def add_budget_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", default=os.path.join(REPO, "runs", "pipnet_mtfl"), help="folder of the arms' runs")
    p.add_argument("--size", type=int, default=128, help="input side in pixels (default 128)")
    p.add_argument("--stride", type=int, default=16, help="network stride (default 16: an 8x8 map at 128 px)")
    p.add_argument("--steps", type=int, default=300, help="optimizer steps of every arm (default 300)")
    p.add_argument("--epochs", type=int, default=10, help="validation points of A and B (steps / epochs each)")
    p.add_argument("--curriculum", default="1,3", help="C's STC tasks after round 0 (default 1,3: 3 rounds)")
    p.add_argument("--stc-epochs", type=int, default=4, help="validation points per STC round (default 4)")
    p.add_argument("--lfpw-repeat", type=int, default=14, help="times LFPW is listed in B and C (default 14 ≈ "
                                                                "MTFL's 10,000 faces)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3, from scratch)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init", choices=("scratch", "pretrained"), default="scratch",
                   help="scratch (default) or pretrained: every arm starts from the shipped pipnet_mbv3 weights "
                        "(needs --size 256 --stride 32); B's 5 extra point channels start from the 68-point "
                        "channels they convert from (ROOT/B_init.weights.h5, written by 'run B')")


def plan(args) -> dict:
    """The three arms' argument lists (python -m ...), with their optimizer steps; ValueError on a bad budget."""
    rounds = 1 + len(args.curriculum.split(","))
    if args.steps % args.epochs or args.steps % (rounds * args.stc_epochs):
        raise ValueError(f"--steps {args.steps} must split evenly into --epochs {args.epochs} and into "
                         f"{rounds} STC rounds x --stc-epochs {args.stc_epochs}")
    if args.size % args.stride or args.size % (4 * args.stride):
        raise ValueError(f"--size {args.size}: must be divisible by 4 x --stride {args.stride} (STC's heads)")
    if args.init == "pretrained" and (args.size, args.stride) != (256, 32):
        raise ValueError("--init pretrained: the shipped weights are for --size 256 --stride 32")
    init = {"A": [], "B": [], "C": []}
    if args.init == "pretrained":
        init = {"A": ["--init", "pretrained"], "B": ["--init", b_init_path(args)], "C": ["--init", "pretrained"]}
    per_epoch = args.steps // args.epochs
    per_round = args.steps // rounds
    stc_per_epoch = per_round // args.stc_epochs
    # Step decay after 70 % and 90 % of A/B's epochs; STC rounds, being short, decay once after 3/4.
    ms = sorted({max(1, round(args.epochs * 0.7)), max(1, round(args.epochs * 0.9))})
    common = ["--set", f"input.height={args.size}", "--set", f"input.width={args.size}",
              "--set", f"stride={args.stride}", "--set", f"train.learning_rate={args.lr}",
              "--seed", str(args.seed), "--no-progress"]
    train = ["-m", "tfalign.train", "--model", "pipnet_mbv3", "--val", LFPW_VAL, "--epochs", str(args.epochs),
             "--steps-per-epoch", str(per_epoch), "--set", "train.milestones=" + json.dumps(ms, separators=(",", ":")), *common]
    lfpw_many = [x for _ in range(args.lfpw_repeat) for x in ("--data", LFPW_TRAIN)]
    arms = {
        "A": [*train, "--data", LFPW_TRAIN, *init["A"], "--out", os.path.join(args.root, "A")],
        "B": [*train, *lfpw_many, "--data", MTFL, *[x for kv in B_SETS for x in ("--set", kv)], *init["B"],
              "--out", os.path.join(args.root, "B")],
        "C": ["-m", "tfalign.stc", "--model", "pipnet_mbv3",
              *[x for _ in range(args.lfpw_repeat) for x in ("--labelled", LFPW_TRAIN)],
              "--unlabelled", MTFL, "--val", LFPW_VAL, "--curriculum", args.curriculum,
              "--epochs", str(args.stc_epochs), "--steps-per-epoch", str(stc_per_epoch),
              "--set", f"train.milestones={json.dumps([max(1, round(args.stc_epochs * 0.75))])}", *common,
              *init["C"], "--out", os.path.join(args.root, "C")],
    }
    return {"arms": arms, "steps": {"A": per_epoch * args.epochs, "B": per_epoch * args.epochs,
                                    "C": stc_per_epoch * args.stc_epochs * rounds}}


def b_init_path(args) -> str:
    return os.path.join(args.root, "B_init.weights.h5")


def widen_shipped(args) -> str:
    """Arm B's start when fine-tuning: the shipped 68-point pipnet_mbv3 in B's 73-channel model.

    Every weight of the same shape is copied. The heads gain 5 channels: score and offset channels of the 5 MTFL
    points are the shipped 68-point channels combined by the scheme conversion (an eye centre = the mean of its
    6 eye-contour channels; nose and mouth corners = copies), which is exact for these linear 1x1 heads whenever
    the points share a cell; their neighbour channels keep the random init. The 68 points decode as shipped.
    """
    import numpy as np

    from tfalign.models.base import load_pretrained
    from tfalign.schemes import conversion_matrix
    from tfalign.stc import save_weights
    from tfalign.training.runconfig import build_config
    _, _, shipped = load_pretrained("pipnet_mbv3")
    sets = [f"input.height={args.size}", f"input.width={args.size}", f"stride={args.stride}", *B_SETS]
    arch, config, _ = build_config("pipnet_mbv3", None, sets)
    model = arch.build(config)
    convert = conversion_matrix("300w_68", "mtfl_5").T  # [68, 5]
    out = []
    # Same architecture, same weight order: only the heads' channel counts differ.
    for new, old in zip(model.get_weights(), shipped.get_weights()):
        if new.shape == old.shape:
            out.append(old)
            continue
        if new.shape[:-1] != old.shape[:-1] or new.shape[-1] <= old.shape[-1]:
            raise ValueError(f"cannot widen a weight of shape {old.shape} to {new.shape}")
        w = new.copy()
        w[..., :old.shape[-1]] = old
        if old.shape[-1] == convert.shape[0]:  # score / offset heads: one channel per point
            w[..., old.shape[-1]:] = old @ convert
        out.append(w)
    model.set_weights(out)
    probe = np.random.default_rng(0).normal(size=(2, args.size, args.size, 3)).astype(np.float32)
    got, want = model(probe)["landmarks"].numpy(), shipped(probe)["landmarks"].numpy()
    if not np.allclose(got[:, :want.shape[1]], want, atol=1e-5):
        raise RuntimeError("widened model does not decode the 68 points as the shipped one does")
    path = b_init_path(args)
    save_weights(model, path)
    return path


def run_arm(args) -> int:
    """Run one arm in a child process; its wall and CPU seconds go to ROOT/<arm>.json (atomic)."""
    from tfalign.io import atomic_write_json
    cmd = [sys.executable, *plan(args)["arms"][args.arm]]
    os.makedirs(args.root, exist_ok=True)
    if args.init == "pretrained" and args.arm == "B":
        print(f"wrote {widen_shipped(args)}", flush=True)
    print(" ".join(cmd), flush=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    rc = subprocess.call(cmd, cwd=REPO)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    atomic_write_json(os.path.join(args.root, f"{args.arm}.json"), {
        "arm": args.arm, "command": cmd, "returncode": rc, "wall_seconds": round(time.time() - t0, 1),
        "cpu_seconds": round(cpu, 1)})
    return rc


def evaluate(model_dir: str, val_records) -> dict:
    """68-point inter-ocular NME/AUC/FR on ``val_records`` and the per-face NMEs (for paired errors)."""
    from tfalign.training import load_model_dir
    _, config, model = load_model_dir(model_dir)
    return evaluate_model(config, model, val_records)


def evaluate_model(config, model, val_records) -> dict:
    import numpy as np

    from tfalign.training.evaluation import landmark_fn, predict_keras, score, targets
    pred = predict_keras(landmark_fn(model), val_records, config.input, 16)
    result = score(pred, *targets(val_records, config.input.schemes), config.input.schemes)
    io = result["summary"]["300w_68"]["inter_ocular"]
    per_face = result["per_sample"]["300w_68"]["inter_ocular"]
    return {"nme": io["nme"], "auc@0.1": io["auc@0.1"], "fr@0.1": io["fr@0.1"], "faces": io["faces"],
            "nme_standard_error": float(np.std(per_face, ddof=1) / math.sqrt(len(per_face))),
            "schemes": list(config.input.schemes), "per_face_nme": [round(float(e), 6) for e in per_face]}


def mean_face_baseline(val_records, size: int) -> dict:
    """The error of answering the packaged training mean face for every crop: what a model that learnt only the
    average shape would score."""
    import numpy as np

    from tfalign.models.base import InputSpec
    from tfalign.models.pipnet import load_mean_face
    from tfalign.training.evaluation import predict_keras, score, targets
    spec = InputSpec(height=size, width=size)
    face = load_mean_face(spec.schemes).astype(np.float32)
    pred = predict_keras(lambda images: np.repeat(face[None], images.shape[0], axis=0), val_records, spec, 16)
    io = score(pred, *targets(val_records, spec.schemes), spec.schemes)["summary"]["300w_68"]["inter_ocular"]
    return {"nme": io["nme"], "auc@0.1": io["auc@0.1"], "fr@0.1": io["fr@0.1"], "faces": io["faces"]}


def history_of(arm: str, folder: str) -> dict:
    with open(os.path.join(folder, "history.json"), encoding="utf-8") as fh:
        h = json.load(fh)
    if arm == "C":
        return {"rounds": [{"round": r["round"], "task": r["task"], "pseudo_labelled": r["pseudo_labelled"],
                            "best_val_nme": r["best_val_nme"], "val_nme_per_epoch": [e["val_nme"] for e in r["epochs"]],
                            "train_seconds": round(sum(e["seconds"] for e in r["epochs"]), 1)}
                           for r in h["rounds"]]}
    epochs = h["epochs"]
    return {"best_epoch": min(epochs, key=lambda e: e["val_nme"])["epoch"],
            "val_nme_per_epoch": [e["val_nme"] for e in epochs],
            "train_seconds": round(sum(e["seconds"] for e in epochs), 1)}


def report(args) -> int:
    import numpy as np

    from tfalign.data.spec import load_records
    from tfalign.io import atomic_write_json
    p = plan(args)
    val = load_records(LFPW_VAL)
    rows = {}
    for arm in ARMS:
        folder = os.path.join(args.root, arm)
        budget_file = os.path.join(args.root, f"{arm}.json")
        if not os.path.isfile(os.path.join(folder, "best.weights.h5")) or not os.path.isfile(budget_file):
            print(f"arm {arm}: not run yet ({folder}); run: python bench/pipnet_mtfl.py run {arm}", file=sys.stderr)
            rows[arm] = None
            continue
        with open(budget_file, encoding="utf-8") as fh:
            budget = json.load(fh)
        rows[arm] = {"what": ARMS[arm], "command": budget["command"], "returncode": budget["returncode"],
                     "optimizer_steps": p["steps"][arm], "wall_seconds": budget["wall_seconds"],
                     "cpu_seconds": budget["cpu_seconds"], "val": evaluate(folder, val),
                     "history": history_of(arm, folder)}
    done = {a: r for a, r in rows.items() if r}
    baseline = mean_face_baseline(val, args.size)
    start = None
    if args.init == "pretrained":
        from tfalign.models.base import load_pretrained
        _, config, model = load_pretrained("pipnet_mbv3")
        start = {"what": "the shipped pipnet_mbv3 every arm starts from (0 steps)", "val": evaluate_model(
            config, model, val)}
    comparisons = {}
    refs = [("A", done["A"]["val"]) if "A" in done else None, ("start", start["val"]) if start else None]
    for ref, ref_val in filter(None, refs):
        base = np.asarray(ref_val["per_face_nme"])
        for arm, row in done.items():
            if arm == ref:
                continue
            diff = np.asarray(row["val"]["per_face_nme"]) - base
            se = float(np.std(diff, ddof=1) / math.sqrt(len(diff)))
            comparisons[f"{arm}-{ref}"] = {
                "nme_difference": float(diff.mean()), "paired_standard_error": se,
                "unpaired_standard_error": math.hypot(row["val"]["nme_standard_error"], ref_val["nme_standard_error"]),
                f"faces_better_than_{ref}": int((diff < 0).sum()), "faces": len(diff)}
    if "C" in done:
        rounds = done["C"]["history"]["rounds"]
        comparisons["C: last round vs round 0 (same steps each)"] = {
            "round0_best_val_nme": rounds[0]["best_val_nme"], "last_round_best_val_nme": rounds[-1]["best_val_nme"]}
    study = {"model": f"pipnet_mbv3 (MobileNetV3-Large, C=10), "
                      f"{'from scratch' if args.init == 'scratch' else 'fine-tuned from the shipped weights'}",
             "setup": {"init": args.init, "input": f"{args.size}x{args.size}", "stride": args.stride,
                       "score_map": f"{args.size // args.stride}x{args.size // args.stride}",
                       "optimizer_steps_per_arm": args.steps, "batch_size": 16, "learning_rate": args.lr,
                       "seed": args.seed, "lfpw_repeat_in_B_and_C": args.lfpw_repeat,
                       "stc_curriculum": args.curriculum},
             "budget": {"cpu_seconds_total": round(sum(r["cpu_seconds"] for r in done.values()), 1),
                        "wall_seconds_total": round(sum(r["wall_seconds"] for r in done.values()), 1),
                        "machine": "2 CPU cores shared with other engineers' training jobs (load 6-20)"},
             "bench_command": ["python", "bench/pipnet_mtfl.py", *sys.argv[1:]],
             "arms": rows, "start": start, "mean_face_baseline": baseline, "comparisons": comparisons, "reading": args.reading}
    results = {}
    if os.path.isfile(args.out):
        with open(args.out, encoding="utf-8") as fh:
            results = json.load(fh)
    results.update({"question": "issue #5: LFPW train + 10,000 MTFL faces through the per-sample mask, or as STC's "
                                "unlabelled data: which helps?", "val": LFPW_VAL})
    results.setdefault("studies", {})[f"{args.init}_{args.size}px_{args.steps}steps"] = study
    if args.conclusion:
        results["conclusion"] = args.conclusion
    atomic_write_json(args.out, results)

    print(f"{'arm':<4}{'data':<50}{'steps':>6}{'NME %':>8}{'±SE':>6}{'AUC@0.1':>9}{'FR@0.1':>8}{'CPU s':>8}")
    for arm, row in rows.items():
        if not row:
            print(f"{arm:<4}{ARMS[arm]:<50}  not run")
            continue
        v = row["val"]
        print(f"{arm:<4}{row['what']:<50}{row['optimizer_steps']:>6}{v['nme'] * 100:>8.2f}"
              f"{v['nme_standard_error'] * 100:>6.2f}{v['auc@0.1']:>9.3f}{v['fr@0.1']:>8.3f}{row['cpu_seconds']:>8.0f}")
    if start:
        v = start["val"]
        print(f"{'-':<4}{'shipped pipnet_mbv3 (the start of every arm)':<50}{0:>6}{v['nme'] * 100:>8.2f}"
              f"{v['nme_standard_error'] * 100:>6.2f}{v['auc@0.1']:>9.3f}{v['fr@0.1']:>8.3f}")
    print(f"{'-':<4}{'packaged mean face for every crop (no model)':<50}{'':>6}{baseline['nme'] * 100:>8.2f}"
          f"{'':>6}{baseline['auc@0.1']:>9.3f}{baseline['fr@0.1']:>8.3f}")
    for name, c in comparisons.items():
        if "nme_difference" in c:
            better = next(v for k, v in c.items() if k.startswith("faces_better"))
            print(f"{name}: {c['nme_difference'] * 100:+.2f} NME points (paired SE {c['paired_standard_error'] * 100:.2f}, "
                  f"unpaired {c['unpaired_standard_error'] * 100:.2f}); better on {better}/{c['faces']} faces")
        else:
            print(f"{name}: round 0 {c['round0_best_val_nme']:.2%} → last round {c['last_round_best_val_nme']:.2%}")
    print(f"wrote {args.out}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    sub = p.add_subparsers(dest="what", required=True)
    c = sub.add_parser("commands", help="print each arm's exact command")
    r = sub.add_parser("run", help="run one arm (CPU/wall seconds → ROOT/ARM.json)")
    r.add_argument("arm", choices=sorted(ARMS))
    rep = sub.add_parser("report", help="evaluate the arms on LFPW #val → table + results JSON")
    rep.add_argument("--out", default=RESULTS, help="results JSON (default bench/results/pipnet_mtfl.json)")
    rep.add_argument("--reading", default="", help="what this study's table shows, stored with it")
    rep.add_argument("--conclusion", default="", help="the overall answer, over every study in the JSON")
    for q in (c, r, rep):
        add_budget_flags(q)
    args = p.parse_args(argv)
    args.root = os.path.abspath(args.root)
    try:
        arms = plan(args)
    except ValueError as exc:
        print(f"bench/pipnet_mtfl.py: error: {exc}", file=sys.stderr)
        return 2
    if args.what == "commands":
        for arm, cmd in arms["arms"].items():
            print(f"# {arm}: {ARMS[arm]} ({arms['steps'][arm]} steps)\n{sys.executable} {' '.join(cmd)}")
        return 0
    if args.what == "run":
        return run_arm(args)
    return report(args)


if __name__ == "__main__":
    sys.exit(main())
