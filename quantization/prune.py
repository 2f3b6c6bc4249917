"""Prune a trained tfalign model and fine-tune it: ``python -m quantization.prune``.

  --method magnitude   tfmot magnitude pruning: the smallest weights of every prunable layer (Conv2D, Dense, the
                       pointwise kernel of SeparableConv2D, custom layers with get_prunable_weights: the
                       deformable convolution, Pose-Tree-MoE's experts and gates) are zeroed, the sparsity
                       ramping to --target along PolynomialDecay while the model fine-tunes; the wrappers are
                       stripped. Same architecture, so OUT is a run folder:
                         python -m tfalign.export --model-dir OUT [--quantize int8 ...]
                       Sparse weights run dense in TFLite: the gain is the gzip size (and int8 on top), not speed.
                       --distill W: the unpruned model teaches the sparse one while it fine-tunes (as below).
  --method channel     structured pruning: --target of the filters of every prunable channel space removed
                       (criterion l1 or bn), the slimmer model fine-tuned. Fewer MACs and lower latency. Its widths are
                       not expressible in the architecture's config, so OUT holds the whole Keras model (slim.keras),
                       named in OUT/config.json, which python -m tfalign.export --model-dir OUT loads like any run;
                       also <model>_channel_float32.tflite; the fine-tuning run is OUT/finetune.
                       --distill W: the unpruned model teaches the slim one while it fine-tunes (W × squared
                       distance between their point outputs, added to the training loss; quantization.distill).
                       --gradual E: first fine-tune the full model E epochs while the channels to remove fade to
                       zero (cubic schedule), then cut them (no output changes: the gap is reported) and fine-tune
                       the slim model --epochs; the first run is OUT/gradual.

Examples:
  python -m quantization.prune --model mobile_two_stage --method magnitude --target 0.5 \\
      --data 300w:../shared/data/lfpw/trainset#train --val 300w:../shared/data/lfpw/trainset#val \\
      --epochs 4 --lr 2e-4 --out runs/m2s_sparse50
  python -m quantization.prune --model-dir runs/pipnet --method channel --target 0.35 \\
      --data ... --val ... --epochs 15 --lr 5e-4 --out runs/pipnet_slim
  python -m quantization.prune --model mobile_two_stage --method channel --target 0.3 --divisor 4 \
      --ratio block1_0_expand_conv=0.5 --ratio block1_1_expand_conv=0.5 --distill 300 \
      --data ... --val ... --epochs 150 --steps 40 --out runs/m2s_slim
"""
from __future__ import annotations

import json
import os
import sys

from quantization import cli

PROG = "python -m quantization.prune"


def parse_args(argv=None):
    p = cli.parser(PROG, __doc__, epochs=10, lr=5e-4)
    p.add_argument("--method", required=True, choices=("magnitude", "channel"),
                   help="magnitude (unstructured, tfmot) or channel (whole filters removed)")
    p.add_argument("--target", type=float, required=True,
                   help="magnitude: final sparsity of the prunable kernels (Conv2D, Dense, SeparableConv2D "
                        "pointwise, custom layers' get_prunable_weights); channel: fraction of the filters "
                        "removed per prunable channel space; in (0, 1)")
    p.add_argument("--criterion", choices=("l1", "bn"), default="l1",
                   help="channel: filter importance, L1 norm of the filter or |BN gamma| (default l1)")
    p.add_argument("--divisor", type=int, default=8,
                   help="channel: kept widths are rounded up to a multiple of this (default 8). Match the target "
                        "CPU's kernel width: a convolution's output channels run in blocks of it, so a width between "
                        "two multiples costs the next one (16 on x86 with AVX-512, measured by "
                        "bench/channel_blocks.py; XNNPACK's ARM kernels use 8 or 16, not measured here)")
    p.add_argument("--min-channels", type=int, default=8,
                   help="channel: never keep fewer filters than this in a channel space (default 8)")
    p.add_argument("--ratio", action="append", default=[], metavar="LAYER=R",
                   help="channel: remove R instead of --target from the channel space LAYER produces (repeatable), "
                        "e.g. more from the high-resolution layers where the latency is")
    cli.add_distill(p)
    p.add_argument("--gradual", type=int, default=0, metavar="E",
                   help="channel: gradual pruning: fine-tune the full model E epochs while the channels to remove "
                        "fade to zero, then cut them and fine-tune the slim model --epochs (default 0: cut at once)")
    p.add_argument("--skip", default="", metavar="LAYER,...",
                   help="layer names left whole (magnitude: kept dense; channel: their channel spaces kept)")
    args = p.parse_args(argv)
    cli.check(p, args)
    if not 0.0 < args.target < 1.0:
        p.error(f"--target: must be in (0, 1), got {args.target}")
    if args.method != "channel" and (args.criterion != "l1" or args.divisor != 8 or args.min_channels != 8
                                     or args.ratio or args.gradual):
        p.error("--criterion, --divisor, --min-channels, --ratio and --gradual apply to --method channel only")
    cli.check_distill(p, args)
    if args.gradual < 0:
        p.error(f"--gradual: must be >= 0, got {args.gradual}")
    if args.gradual and not (args.data and args.val):
        p.error("--gradual: needs --data and --val (the full model fine-tunes while the channels fade)")
    ratios = {}
    for item in args.ratio:
        layer, sep, value = item.partition("=")
        try:
            ratios[layer] = float(value)
        except ValueError:
            p.error(f"--ratio {item!r}: expected LAYER=R with R a number")
        if not sep or not layer or not 0.0 <= ratios[layer] < 1.0:
            p.error(f"--ratio {item!r}: expected LAYER=R with R in [0, 1)")
    args.ratios = ratios
    if args.divisor < 1 or args.min_channels < 1:
        p.error("--divisor and --min-channels: must be >= 1")
    args.skip = [s for s in args.skip.split(",") if s]
    return args


def _run(argv) -> int:
    args = parse_args(argv)
    from quantization import channel_pruning, distill, pruning
    arch, config, base, source = cli.load(args)
    run = cli.run_settings(args, arch, config)
    teaching = {"outputs": args.distill_outputs, "match": distill.architecture_match(arch, config)}
    summary = {"method": args.method, "target": args.target, "start": source, "epochs": args.epochs,
               "lr": args.lr, "schedule": "cosine"}
    if args.method == "magnitude":
        if args.epochs == 0:
            final = pruning.one_shot(base, args.target, skip=args.skip)
        else:
            steps = args.steps or _steps_per_epoch(run, arch, config)
            end = max(1, int(0.7 * args.epochs * steps))  # the last 30 % of the steps train at full sparsity
            build, teach = distill.builder(base, base, args.distill, **teaching,
                                           prepare=lambda m: pruning.prune_model(
                                               m, args.target, end_step=end, frequency=max(1, end // 10),
                                               skip=args.skip))
            model, _ = pruning.fine_tune(build, run, args.out)
            final = pruning.strip(distill.student_of(model))
            summary["distill"] = teach
        report = pruning.sparsity_report(final)
        summary.update(sparsity=report["total"]["sparsity"], nonzero_params=report["total"]["params"]
                       - report["total"]["zeros"])
        cli.write_run(args.out, run, arch, final, summary)
        print(pruning.format_report(report, top=10))
        print(f"wrote {args.out} (export: python -m tfalign.export --model-dir {args.out})")
        return 0

    plan = channel_pruning.plan(base, args.target, args.criterion, skip=args.skip, divisor=args.divisor,
                                min_channels=args.min_channels, ratios=args.ratios)
    print(plan.summary())
    if args.gradual:
        import dataclasses
        steps = args.steps or _steps_per_epoch(run, arch, config)
        fade = dataclasses.replace(run, epochs=args.gradual)
        slim, info = channel_pruning.prune_gradually(
            base, plan, lambda build, cbs: pruning.fine_tune(build, fade, os.path.join(args.out, "gradual"),
                                                             callbacks=cbs)[0],
            end_step=args.gradual * steps, distill_weight=args.distill, **teaching)
        summary["gradual"] = {"epochs": args.gradual, "steps_per_epoch": steps, "cut_gap": info["cut_gap"]}
        print(f"gradual: channels faded over {args.gradual} epochs; cut changed the outputs by {info['cut_gap']:.2e}")
    else:
        slim = channel_pruning.apply(base, plan)
    if args.epochs:
        build, teach = distill.builder(slim, base, args.distill, **teaching)
        trained, _ = pruning.fine_tune(build, run, os.path.join(args.out, "finetune"))
        slim = distill.student_of(trained)
        summary["distill"] = teach
    from mobile_export import tflite
    from quantization import presets
    from tfalign.io import atomic_write, atomic_write_json
    os.makedirs(args.out, exist_ok=True)
    name = args.model or arch.name
    data = tflite.convert(arch.inference_model(config, slim), preset=presets.for_float32())
    atomic_write(os.path.join(args.out, f"{name}_channel_float32.tflite"), data)
    summary.update(criterion=args.criterion, ratios=args.ratios, channels_removed=round(plan.removed_fraction(), 4),
                   params=channel_pruning.count_params(slim), params_before=channel_pruning.count_params(base),
                   plan=plan.summary().splitlines(), command=list(sys.argv))
    # slim.keras + config.json: `tfalign.export --model-dir OUT` loads it (int8, CoreML...) like any run.
    cli.write_run(args.out, run, arch, slim, summary, keras_file="slim.keras")
    atomic_write_json(os.path.join(args.out, "compression.json"), summary)
    print(f"params {summary['params_before']} -> {summary['params']}; wrote {args.out} "
          f"(export: python -m tfalign.export --model-dir {args.out})")
    return 0


def _steps_per_epoch(run, arch, config) -> int:
    # One pass over the training faces, as the trainer counts it: the PolynomialDecay end step needs it up front.
    from tfalign.training.data import load_specs
    records = sum((recs for _, recs in load_specs(run.data, "--data")), [])
    return max(1, -(-len(records) // run.batch_size))


def main(argv=None) -> int:
    return cli.main_guard(_run, "quantization.prune", argv)


if __name__ == "__main__":
    sys.exit(main())
