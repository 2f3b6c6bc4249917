"""Channel-space sensitivity: what cutting each prunable channel space alone costs in NME, MACs and latency.

A channel plan (``bench/compression.py --channel-layer-ratio``, ``python -m quantization.prune --ratio``) is chosen
per space, and spaces differ by orders of magnitude: some carry MACs but no accuracy, some carry the latency (the
dense U-Net's deformable sampling follows its *input* width), some cannot be touched. This bench cuts one space at a
time at ``--ratio`` (``quantization.channel_pruning.sensitivity``: same criterion, divisor and rounding as the
plan), exports it to float32 TFLite (the exporter's path) and measures, with no fine-tune:

* NME on ``--val`` through LiteRT (the cut model's, against the uncut model's);
* MACs of the TFLite graph (``mobile_export.profile.perop``) removed;
* latency of ``invoke()`` with 1 thread, each cut timed in the same interleaved rounds as the uncut model (their
  ratio is what counts: the machine's noise hits both).

Then a suggested plan: spaces taken greedily by NME increase per MAC removed (``--rank macs``) or per millisecond
saved (``--rank latency``, the default when timed), until the estimated MACs removed reach ``--target-macs`` and
the estimated latency saved reaches ``--target-latency``. The estimates add the single-space figures: cuts
interact (two cuts together can cost more NME than both alone), so the suggestion is a starting point to measure
with ``bench/compression.py``, not a result.

Usage::

    python bench/channel_sensitivity.py --model dense_unet --model-dir dense_unet=runs/du/+deformable --criterion bn
    python bench/channel_sensitivity.py --model mobile_two_stage --ratio 0.5 --only stem_conv,s2_reduce_conv

Prints a table, writes ``bench/results/channel_sensitivity_<model>.json`` (``--out``).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(_HERE))
sys.path.insert(0, _HERE)

import numpy as np  # noqa: E402

import compression  # noqa: E402  (bench/compression.py: one loader, Runner and NME for both benches)
from mobile_export.profile import x86_amx  # noqa: E402  (stdlib only)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="mobile_two_stage",
                   help="registered model name; its shipped weights unless --model-dir names a run "
                        "(default mobile_two_stage)")
    p.add_argument("--model-dir", metavar="NAME=DIR", default=None,
                   help="training run to start from (the --out of tfalign.train), as in bench/compression.py")
    p.add_argument("--val", default=compression.DEFAULT_VAL, help="validation faces (dataset spec)")
    p.add_argument("--ratio", type=float, default=0.5, help="fraction of each space's filters cut (default 0.5)")
    p.add_argument("--criterion", choices=("l1", "bn"), default="l1",
                   help="filter importance: l1 (filter L1 norm) or bn (|BN gamma|) (default l1)")
    p.add_argument("--divisor", type=int, default=8, help="kept widths rounded up to a multiple of this (default 8)")
    p.add_argument("--only", default="", metavar="LAYER,...",
                   help="producer layers whose spaces to sweep (default: every prunable space)")
    p.add_argument("--rank", choices=("macs", "latency"), default=None,
                   help="what the suggested plan buys with NME: MACs or milliseconds (default latency when timed, "
                        "else macs)")
    p.add_argument("--target-macs", type=float, default=0.3,
                   help="fraction of the MACs the suggested plan removes, estimated (default 0.3)")
    p.add_argument("--target-latency", type=float, default=0.2,
                   help="fraction of the latency the suggested plan saves, estimated (default 0.2)")
    p.add_argument("--rounds", type=int, default=5,
                   help="interleaved latency rounds; 0 skips timing (default 5)")
    p.add_argument("--runs", type=int, default=10, help="invokes per model per round (default 10)")
    p.add_argument("--out", default=None,
                   help="JSON path (default bench/results/channel_sensitivity_<model>.json)")
    x86_amx.add_argument(p)
    args = p.parse_args(argv)
    if not 0.0 < args.ratio < 1.0:
        p.error(f"--ratio: must be in (0, 1), got {args.ratio}")
    if args.divisor < 1:
        p.error("--divisor: must be >= 1")
    if args.rounds < 0 or args.runs <= 0:
        p.error("--rounds: must be >= 0 and --runs > 0")
    for flag in ("target_macs", "target_latency"):
        if not 0.0 <= getattr(args, flag) < 1.0:
            p.error(f"--{flag.replace('_', '-')}: must be in [0, 1)")
    args.model_dirs = {}
    if args.model_dir:
        try:
            key, value = compression.parse_model_dir(args.model_dir)
        except ValueError as exc:
            p.error(str(exc))
        if key != args.model:
            p.error(f"--model-dir {args.model_dir!r}: names '{key}', not --model '{args.model}'")
        args.model_dirs[key] = value
    args.only = [n for n in args.only.split(",") if n] or None
    args.rank = args.rank or ("latency" if args.rounds else "macs")
    if args.rank == "latency" and not args.rounds:
        p.error("--rank latency: needs timing (--rounds > 0)")
    args.out = args.out or os.path.join(_HERE, "results", f"channel_sensitivity_{args.model}.json")
    return args


def suggest(rows: list, base: dict, rank: str, target_macs: float, target_latency: float) -> dict:
    """Greedy plan from single-space rows: cheapest NME per unit of ``rank`` first, until both targets are reached
    on the summed estimates. Spaces that save nothing of ``rank`` are never taken."""
    def gain(r):
        return base["macs"] - r["macs"] if rank == "macs" else base["latency_ms"] - r["latency_ms"]

    timed = "latency_ms" in base
    candidates = sorted((r for r in rows if gain(r) > 0),
                        key=lambda r: max(r["nme"] - base["nme"], 0.0) / gain(r))
    chosen, macs, ms = [], 0, 0.0
    for r in candidates:
        if macs >= target_macs * base["macs"] and (not timed or ms >= target_latency * base["latency_ms"]):
            break
        chosen.append(r["layer"])
        macs += base["macs"] - r["macs"]
        ms += base["latency_ms"] - r["latency_ms"] if timed else 0.0
    out = {"rank": rank, "layers": chosen, "estimated_macs_removed": macs / base["macs"],
           "reaches_targets": macs >= target_macs * base["macs"]
           and (not timed or ms >= target_latency * base["latency_ms"])}
    if timed:
        out["estimated_latency_saved"] = ms / base["latency_ms"]
    return out


def run(args) -> dict:
    from mobile_export import tflite
    from quantization import channel_pruning, presets
    from tfalign.training.data import load_specs
    arch, config, model, source = compression.load_base(args.model, args.model_dirs)
    spec = dataclasses.replace(config.input, schemes=tuple(config.input.schemes[:1]))
    val = load_specs([args.val], "--val")[0][1]
    runners = {}  # in call order: the uncut model, then the spaces in the order sensitivity() returns them

    def measure(keras_model):
        data = tflite.convert(arch.inference_model(config, keras_model), preset=presets.for_float32())
        runner = compression.Runner(data)
        if args.rounds:
            runners[len(runners)] = runner
        return {"nme": compression.tflite_nme(runner, val, spec), "macs": compression.macs_of(data),
                "params": channel_pruning.count_params(keras_model), "size_bytes": len(data)}

    print(f"{args.model}: weights {source}", file=sys.stderr, flush=True)
    base = measure(model)
    rows = channel_pruning.sensitivity(model, measure, args.ratio, args.criterion,
                                       divisor=args.divisor, only=args.only, progress=True)
    if args.rounds:
        times = compression.interleaved_times(runners, val, spec, args.rounds, args.runs, "latency rounds")
        for row, t in zip([base, *rows], times.values()):
            row["latency_ms"] = float(np.median(t))
    from tfalign.training.runconfig import cpu_info, versions
    return {"command": " ".join(sys.argv), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "versions": versions(), "cpu": cpu_info(), "x86_amx": x86_amx.status(), "weights": source,
            "model": args.model, "val": args.val, "val_faces": len(val), "ratio": args.ratio,
            "criterion": args.criterion, "divisor": args.divisor, "timing": compression.TIMING if args.rounds else "",
            "uncut": base, "spaces": rows,
            "suggested": suggest(rows, base, args.rank, args.target_macs, args.target_latency)}


def table(report: dict) -> str:
    base = report["uncut"]
    timed = "latency_ms" in base
    lines = [f"{report['model']} ({report['weights']}; val {report['val_faces']} faces): each space alone cut by "
             f"{report['ratio']:g} ({report['criterion']}, widths x{report['divisor']}), no fine-tune",
             f"{'space (producer)':<28} {'width':>11} {'dMACs':>7} {'NME':>8} {'dNME':>8}"
             + (f" {'ms':>7} {'speedup':>7}" if timed else "")]
    lines.append(f"{'(uncut)':<28} {'':>11} {'':>7} {base['nme']:8.3%} {'':>8}"
                 + (f" {base['latency_ms']:7.2f} {'':>7}" if timed else ""))
    for r in report["spaces"]:
        lines.append(f"{r['layer']:<28} {r['size']:>5} -> {r['kept']:<3} {r['macs'] / base['macs'] - 1:+7.1%} "
                     f"{r['nme']:8.3%} {r['nme'] / base['nme'] - 1:+8.1%}"
                     + (f" {r['latency_ms']:7.2f} {base['latency_ms'] / r['latency_ms']:6.2f}x" if timed else ""))
    s = report["suggested"]
    flag = ",".join(f"{n}={report['ratio']:g}" for n in s["layers"]) or "(none)"
    est = f"estimated {-s['estimated_macs_removed']:+.1%} MACs" + (
        f", {-s['estimated_latency_saved']:+.1%} latency" if "estimated_latency_saved" in s else "")
    lines.append(f"suggested (by NME per {'ms' if s['rank'] == 'latency' else 'MAC'}; {est}"
                 f"{'' if s['reaches_targets'] else '; targets NOT reached'}): --channel-layer-ratio {flag}")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.no_amx:
        x86_amx.deny()  # before any interpreter: XNNPACK reads the CPU's features once per process
    try:
        report = run(args)
    except ValueError as exc:  # a bad --only or --val names itself in the message
        print(f"channel_sensitivity.py: error: {exc}", file=sys.stderr)
        return 2
    print(table(report), flush=True)
    from tfalign.io import atomic_write_json
    atomic_write_json(args.out, report)  # creates the folder
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
