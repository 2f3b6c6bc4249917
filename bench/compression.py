"""Compression side by side on the edge models: float32 / magnitude-pruned / channel-pruned / PTQ int8 / QAT int8.

For each model (``mobile_two_stage``, ``pipnet_mbv3`` by default; any registered model or preset with ``--models``,
e.g. ``decafa``, ``dense_unet``, ``pose_tree_moe`` from their training runs), starting from trained weights: the
shipped ones by default
(``tfalign/weights/<name>`` via ``base.load_pretrained``; the JSON records the sha256 of ``weights.npz``) or a
training run (``--model-dir NAME=DIR``); without either the model is random and its NME means nothing (the table
says so). Every fine-tune runs through the trainer with a cosine learning-rate decay (``--NAME-epochs``,
``--NAME-lr``, ``--steps`` per epoch). Then:

* ``float32``: the trained model as it is.
* ``magnitude``: tfmot magnitude pruning to ``--sparsity`` (PolynomialDecay) fine-tuned through the trainer,
  stripped; float32 TFLite (same latency expected: sparse weights run dense; the gzip size shows the gain).
* ``channel``: ``--channel-ratio`` of the filters of every prunable channel space removed (``--channel-criterion``;
  ``--channel-layer-ratio`` overrides it per space, ``--channel-divisor`` rounds the widths), fine-tuned through
  the trainer, with the float model as teacher when ``--distill W`` is given (``quantization.distill``); float32
  TFLite.
* ``ptq_int8``: full-integer post-training quantization of the float model, calibrated on ``--calibration-size``
  training faces (``quantization.calibration``); soft-argmax family kept float (``presets.keeps_float``).
* ``qat_int8``: tfmot QAT copy (``quantization.qat``), activation ranges set on the ``--calibration-size``
  faces (``qat.calibrate_ranges``), fine-tuned through the trainer (with the float model as teacher when
  ``--qat-distill W`` is given, batch norms frozen with ``--qat-freeze-bn``), converted with
  ``qat.convert`` (``presets.for_qat(representative=...)``: layers QAT cannot wrap are quantized with ranges
  calibrated on the same faces as PTQ; HARD_SWISH kept a float island, as in the PTQ export).

Measured per variant: validation NME (inter-ocular, on ``--val``, through the .tflite with LiteRT), params
(non-zero params too), MACs (from the float graph, ``mobile_export.profile.perop``), .tflite size, gzip -9 size,
LiteRT latency of ``invoke()`` with 1 thread, the input set beforehand (median over interleaved rounds: the variants
share the machine's noise).
Goals checked: channel pruning −30 % MACs, ≥ 20 % lower latency, ≤ +3 % relative NME; int8 NME ≤ float × 1.03;
int8 ≥ 1.5× faster than float32.

Usage::

    python bench/compression.py --channel-ratio mobile_two_stage=0.45,pipnet_mbv3=0.35
    python bench/compression.py --models pipnet_mbv3 --keep-others     # add/refresh one model's rows
    python bench/compression.py --models decafa,pose_tree_moe,dense_unet --batch-size 8 --keep-others \
        --model-dir decafa=runs/decafa --model-dir pose_tree_moe=runs/ptm --model-dir dense_unet=runs/du

Models trained on several markups (DeCaFA: 68 + 5 points) are scored on the markup their exports output, the
first one.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from mobile_export.profile import x86_amx  # noqa: E402  (stdlib only)

from mobile_export.tflite import Runner as TFLiteRunner  # noqa: E402

DEFAULT_TRAIN = "300w:/work/shared/data/lfpw/trainset#train"
DEFAULT_VAL = "300w:/work/shared/data/lfpw/trainset#val"
VARIANTS = ("float32", "magnitude", "channel", "ptq_int8", "qat_int8")


def parse_args(argv=None):
    from quantization.cli import add_distill, distill_outputs
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="mobile_two_stage,pipnet_mbv3", help="comma-separated model names")
    p.add_argument("--model-dir", action="append", default=[], metavar="NAME=DIR",
                   help="training run to start from for NAME when no shipped weights exist (repeatable)")
    p.add_argument("--data", default=DEFAULT_TRAIN, help="fine-tuning and calibration faces (dataset spec)")
    p.add_argument("--val", default=DEFAULT_VAL, help="validation faces (dataset spec)")
    p.add_argument("--steps", type=int, default=25, help="steps per fine-tuning epoch (default 25)")
    p.add_argument("--batch-size", type=int, default=16, help="fine-tuning batch size (default 16)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of every fine-tune (data order, augmentation, dropout); a second seed bounds "
                        "how much of a gap between two variants is one run's noise (default 0)")
    for key, epochs, lr, what in (("magnitude", 4, 2e-4, "magnitude pruning"), ("channel", 15, 5e-4, "channel pruning"),
                                  ("qat", 3, 2e-5, "QAT")):
        p.add_argument(f"--{key}-epochs", type=int, default=epochs,
                       help=f"{what} fine-tuning epochs (default {epochs})")
        p.add_argument(f"--{key}-lr", type=float, default=lr,
                       help=f"{what} peak learning rate, cosine decay to 0 (default {lr:g})")
    p.add_argument("--sparsity", type=float, default=0.5, help="magnitude pruning target sparsity (default 0.5)")
    p.add_argument("--channel-ratio", default="0.35", metavar="R|NAME=R,...",
                   help="fraction of filters removed per prunable channel space: one value, or per model "
                        "(e.g. mobile_two_stage=0.45,pipnet_mbv3=0.35; default 0.35)")
    p.add_argument("--channel-divisor", type=int, default=8,
                   help="kept channel counts rounded up to a multiple of this (default 8; 16 pays on x86 AVX-512 hosts, "
                        "where convolutions compute output channels in blocks of 16: bench/channel_blocks.py)")
    p.add_argument("--channel-layer-ratio", default="", metavar="LAYER=R,...",
                   help="per producer layer, a ratio overriding --channel-ratio for its channel space, for models "
                        "that have that layer (e.g. the high-resolution expansions, where the latency is)")
    p.add_argument("--channel-criterion", choices=("l1", "bn"), default="l1",
                   help="filter importance for channel pruning: l1 (filter L1 norm) or bn (|BN gamma| of the space, "
                        "network slimming; spaces without a BN use l1) (default l1)")
    p.add_argument("--channel-gradual-epochs", type=int, default=0, metavar="E",
                   help="gradual channel pruning: fine-tune the full model E epochs (of --steps, at --channel-lr) "
                        "while the channels to remove fade to zero, then cut and fine-tune --channel-epochs "
                        "(quantization.channel_pruning.prune_gradually; default 0: cut at once)")
    add_distill(p)
    p.add_argument("--qat-distill", type=float, default=0.0, metavar="W",
                   help="QAT: fine-tune with the float model as teacher, W x the distance between the fake-quantized "
                        "and the float model's outputs (--distill-outputs, or the point outputs) added to the loss "
                        "(default 0: off)")
    p.add_argument("--qat-freeze-bn", action="store_true",
                   help="QAT: batch normalizations normalize with their moving statistics, which stay as the float "
                        "training left them (qat.freeze_batch_norms; γ and β still train; default: statistics update)")
    p.add_argument("--calibration-size", type=int, default=64, help="int8 calibration faces (default 64)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved latency rounds (default 5)")
    p.add_argument("--runs", type=int, default=20, help="invokes per variant per round (default 20)")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"subset of {','.join(VARIANTS)}")
    p.add_argument("--markdown", action="store_true",
                   help="run nothing: print the results table of --out as Markdown (docs/compression.md's table)")
    p.add_argument("--keep-others", action="store_true",
                   help="keep the rows of models not run now from an existing --out file (each row records its "
                        "own command)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                                 "compression.json"))
    x86_amx.add_argument(p)
    args = p.parse_args(argv)
    for flag in ("magnitude_epochs", "channel_epochs", "qat_epochs", "steps", "batch_size", "calibration_size",
                 "rounds", "runs"):
        if getattr(args, flag) <= 0:
            p.error(f"--{flag.replace('_', '-')}: must be > 0")
    try:
        args.channel_ratios = parse_ratios(args.channel_ratio)
    except ValueError as exc:
        p.error(f"--channel-ratio: {exc}")
    try:
        layer_ratios = parse_ratios(args.channel_layer_ratio) if args.channel_layer_ratio else {}
    except ValueError as exc:
        p.error(f"--channel-layer-ratio: {exc}")
    if None in layer_ratios:
        p.error("--channel-layer-ratio: give LAYER=R pairs")
    args.layer_ratios = layer_ratios
    if args.channel_divisor < 1:
        p.error("--channel-divisor: must be >= 1")
    for flag in ("distill", "qat_distill"):
        if getattr(args, flag) < 0:
            p.error(f"--{flag.replace('_', '-')}: must be >= 0")
    # --distill-outputs names what either teacher distils.
    args.distill_outputs = distill_outputs(p, args, weight=args.distill or args.qat_distill)
    if args.channel_gradual_epochs < 0:
        p.error("--channel-gradual-epochs: must be >= 0")
    bad = set(args.variants.split(",")) - set(VARIANTS)
    if bad:
        p.error(f"--variants: unknown {sorted(bad)}")
    return args


def parse_ratios(text: str) -> dict:
    """``"0.4"`` → ``{None: 0.4}``; ``"a=0.4,b=0.3"`` → ``{"a": 0.4, "b": 0.3}``."""
    out = {}
    for item in text.split(","):
        key, sep, value = item.rpartition("=")
        try:
            r = float(value)
        except ValueError:
            raise ValueError(f"{item!r} is not R or NAME=R") from None
        if not 0.0 < r < 1.0:
            raise ValueError(f"{item!r}: the ratio must be in (0, 1)")
        out[key if sep else None] = r
    return out


def parse_model_dir(item: str) -> tuple:
    """``"NAME=DIR"`` → ``(NAME, DIR)``; ValueError naming the flag unless DIR exists."""
    key, sep, value = item.partition("=")
    if not sep or not os.path.isdir(value):
        raise ValueError(f"--model-dir {item!r}: expected NAME=DIR with an existing DIR")
    return key, value


def weights_sha256(name: str) -> str:
    """Hash of the shipped ``weights.npz`` (the lead may replace it: the JSON says which weights were measured)."""
    import hashlib
    from tfalign.models.base import WEIGHTS_FILE, pretrained_folder
    folder = pretrained_folder(name)
    if not folder:
        return ""
    with open(os.path.join(folder, WEIGHTS_FILE), "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def load_base(name: str, model_dirs: dict):
    """(arch, config, keras model, source) from shipped weights, a run dir, or random init."""
    from tfalign.models.base import load_pretrained, pretrained_folder, resolve
    from tfalign.training import load_model_dir
    arch, config = resolve(name)
    if name in model_dirs:  # an explicit run wins over the shipped weights
        arch, config, model = load_model_dir(model_dirs[name])
        return arch, config, model, f"run:{model_dirs[name]}"
    if pretrained_folder(name):
        arch, config, model = load_pretrained(name)
        return arch, config, model, f"pretrained:tfalign/weights/{name}"
    return arch, config, arch.build(config), "random-init (no weights found: NME is meaningless)"


TIMING = "invoke"  # what latency_ms covers (rows without the key timed the whole runner call)


class Runner(TFLiteRunner):
    """A .tflite in LiteRT (1 thread), with a timer."""

    def time_ms(self, x, runs: int) -> list:
        """ms per ``invoke()`` with ``x`` already in the input tensor, as LiteRT's benchmark_model and
        ``python -m tfalign.profile`` time a model. Until 2026-12-06 the whole call was timed, which included
        quantizing the float crop into an int8 model's input and dequantizing its output in numpy: 0.14 ms a call
        for the int8 two-stage model against 0.06 ms for its float32 export (whose normalising nobody timed), a
        7 % bias against int8 on a 1 ms model. An app prepares its input either way."""
        self.set_input(x)
        out = []
        for _ in range(runs):
            t0 = time.perf_counter()
            self.interpreter.invoke()
            out.append((time.perf_counter() - t0) * 1e3)
        return out


def interleaved_times(runners: dict, records, spec, rounds: int, runs: int, desc: str) -> dict:
    """Per key, every ``Runner.time_ms`` sample on the first of ``records``, over ``rounds`` rounds that each visit
    every runner, so all of them see the same load on this shared machine (compare their medians)."""
    from tqdm import tqdm
    from tfalign.training.data import make_dataset
    x0 = next(iter(make_dataset(records[:1], spec, training=False, batch_size=1, seed=0)))["image"].numpy()
    times = {k: [] for k in runners}
    for r in runners.values():
        r.time_ms(x0, 5)
    for _ in tqdm(range(rounds), desc=desc, unit="round", file=sys.stderr):
        for k, r in runners.items():
            times[k] += r.time_ms(x0, runs)
    return times


def tflite_nme(runner, records, spec) -> float:
    from tfalign.training.evaluation import predict_keras, score, targets
    pred = predict_keras(lambda x: np.concatenate([runner(x[i:i + 1]) for i in range(len(x))]), records, spec, 1)
    return float(score(pred, *targets(records, spec.schemes), spec.schemes)["primary"])


def macs_of(data: bytes) -> int:
    from mobile_export.profile.perop import graph_ops, read_model
    return int(sum(r["macs"] for r in graph_ops(read_model(data))))


def finetune(build, arch, config, args, name: str, workdir: str, callbacks=(), epochs: int = 0, folder: str = ""):
    """Fine-tune through the trainer: ``--NAME-epochs`` (or ``epochs``) x ``--steps``, cosine decay from
    ``--NAME-lr``."""
    from tfalign import config as cfg_lib
    from tfalign.training.runconfig import RunSettings
    from quantization import pruning
    epochs, lr = epochs or getattr(args, f"{name}_epochs"), getattr(args, f"{name}_lr")
    data = json.loads(json.dumps(cfg_lib.to_dict(config)))
    data["train"].update({"learning_rate": lr, "schedule": "cosine", "batch_size": args.batch_size})
    run = RunSettings(model=args.current_model, config=data, data=[args.data], val=[args.val], epochs=epochs,
                      batch_size=args.batch_size, seed=args.seed, steps_per_epoch=args.steps)
    t0 = time.time()
    model, history = pruning.fine_tune(build, run, os.path.join(workdir, folder or name), callbacks=callbacks,
                                       progress=False)
    return model, {"epochs": epochs, "steps_per_epoch": args.steps, "batch_size": args.batch_size, "lr": lr,
                   "schedule": "cosine", "seconds": round(time.time() - t0, 1),
                   "val_nme_keras": [e["val_nme"] for e in history["epochs"]]}


def bench_model(name: str, args, model_dirs: dict) -> dict:
    from tfalign.training.data import load_specs
    from mobile_export import tflite
    from quantization import calibration, channel_pruning, distill, presets, pruning
    args.current_model = name
    weights_hash = weights_sha256(name)  # read before loading: a weights file replaced mid-run is not misattributed
    arch, config, base, source = load_base(name, model_dirs)
    # Exports output the primary markup only (base.Architecture.inference_model): DeCaFA trained on 68 + 5 points
    # is scored on its 68, as tfalign.evaluate scores its .tflite.
    spec = dataclasses.replace(config.input, schemes=tuple(config.input.schemes[:1]))
    val = load_specs([args.val], "--val")[0][1]
    variants = args.variants.split(",")
    teaching = {"outputs": args.distill_outputs, "match": distill.architecture_match(arch, config)}
    results, runners = {}, {}
    workdir = tempfile.mkdtemp(prefix=f"compression_{name}_")
    infer = arch.inference_model(config, base)
    x0 = None

    def record(key, model_for_params, data: bytes, extra: dict, float_data: bytes = None):
        runner = Runner(data)
        runners[key] = runner
        report = pruning.sparsity_report(model_for_params)
        params = channel_pruning.count_params(model_for_params)
        results[key] = {"nme": tflite_nme(runner, val, spec), "params": params,
                        "nonzero_params": params - report["total"]["zeros"],
                        "macs": macs_of(float_data or data), "size_bytes": len(data),
                        "gzip_bytes": pruning.gzip_size(data), **extra}
        print(f"  {name} {key}: NME {results[key]['nme']:.4%} ({time.strftime('%H:%M:%S')})", file=sys.stderr,
              flush=True)

    print(f"{name}: weights {source}", file=sys.stderr, flush=True)
    float_bytes = tflite.convert(infer, preset=presets.for_float32())
    record("float32", base, float_bytes, {})

    def attempt(key, fn):
        # One variant failing (e.g. tfmot cannot clone a layer) is recorded, not fatal: the others still count.
        if key not in variants:
            return
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - reported in the JSON and the table
            traceback.print_exc()  # the table keeps one line; the log keeps where it failed
            msg = str(exc).strip().splitlines()
            results[key] = {"error": f"{type(exc).__name__}: {msg[-1] if msg else ''}"[:300]}
            print(f"  {name} {key}: FAILED {results[key]['error']}", file=sys.stderr, flush=True)

    def _magnitude():
        steps = args.magnitude_epochs * args.steps
        build, teach = distill.builder(base, base, args.distill, **teaching,
                                       prepare=lambda m: pruning.prune_model(
                                           m, args.sparsity, end_step=max(1, int(0.7 * steps)),
                                           frequency=max(1, steps // 10)))
        pruned, ft = finetune(build, arch, config, args, "magnitude", workdir)
        stripped = pruning.strip(distill.student_of(pruned))
        data = tflite.convert(arch.inference_model(config, stripped), preset=presets.for_float32())
        record("magnitude", stripped, data, {"target_sparsity": args.sparsity, "finetune": ft, "distill": teach,
                                             "sparsity": pruning.sparsity_report(stripped)["total"]["sparsity"]})

    attempt("magnitude", _magnitude)

    def _channel():
        ratio = args.channel_ratios.get(name, args.channel_ratios.get(None, 0.35))
        names = {layer.name for layer in base.layers}
        layer_ratios = {k: v for k, v in args.layer_ratios.items() if k in names}
        plan = channel_pruning.plan(base, ratio, args.channel_criterion, divisor=args.channel_divisor,
                                    ratios=layer_ratios)
        slim = channel_pruning.apply(base, plan)
        data0 = tflite.convert(arch.inference_model(config, slim), preset=presets.for_float32())
        nme0 = tflite_nme(Runner(data0), val, spec)  # cut at once, before any fine-tune
        gradual = {}
        if args.channel_gradual_epochs:
            fades = []

            def train(build, callbacks):
                model, ft = finetune(build, arch, config, args, "channel", workdir, callbacks,
                                     epochs=args.channel_gradual_epochs, folder="channel_gradual")
                fades.append(ft)
                return model

            slim, info = channel_pruning.prune_gradually(base, plan, train, args.channel_gradual_epochs * args.steps,
                                                         distill_weight=args.distill, **teaching)
            data1 = tflite.convert(arch.inference_model(config, slim), preset=presets.for_float32())
            gradual = {"gradual": {"cut_gap": info["cut_gap"], "nme_after_cut": tflite_nme(Runner(data1), val, spec),
                                   "finetune": fades[0]}}
        build, teach = distill.builder(slim, base, args.distill, **teaching)
        trained, ft = finetune(build, arch, config, args, "channel", workdir)
        slim = distill.student_of(trained)
        data = tflite.convert(arch.inference_model(config, slim), preset=presets.for_float32())
        record("channel", slim, data, {"ratio": ratio, "layer_ratios": layer_ratios, "divisor": args.channel_divisor,
                                       "criterion": args.channel_criterion, "distill": teach,
                                       "channels_removed": round(plan.removed_fraction(), 4),
                                       "nme_before_finetune": nme0, "finetune": ft, **gradual})

    attempt("channel", _channel)

    def _ptq_int8():
        rep = calibration.representative_dataset(spec, args.data, args.calibration_size)
        data = tflite.convert(infer, preset=presets.for_int8(rep))
        record("ptq_int8", base, data, {"calibration": f"{args.data} ({args.calibration_size} faces)",
                                        "int8_coverage": tflite.inspect(data)["int8_coverage"]}, float_bytes)

    attempt("ptq_int8", _ptq_int8)

    def _qat_int8():
        from quantization import qat
        batches = calibration.calibration_batches(spec, args.data, args.calibration_size)
        build, teach = distill.builder(base, base, args.qat_distill, **teaching,
                                       prepare=lambda m: qat.quantize_model(m, batches, freeze_bn=args.qat_freeze_bn))
        trained, ft = finetune(build, arch, config, args, "qat", workdir)
        qmodel = distill.student_of(trained)
        infer_q = arch.inference_model(config, qmodel)
        data = qat.convert(infer_q, representative=calibration.representative_from(batches))
        # The layers no QAT rule covers, and those covered only at their weights and output, which qat.convert
        # quantized with calibrated ranges (none: QAT's own path).
        calibrated = qat.uncovered(infer_q) + qat.calibrated_inside(infer_q)
        record("qat_int8", base, data, {"finetune": ft, "int8_coverage": tflite.inspect(data)["int8_coverage"],
                                        "calibrated_layers": calibrated, "distill": teach,
                                        "freeze_bn": args.qat_freeze_bn}, float_bytes)


    attempt("qat_int8", _qat_int8)

    from tfalign.training.runconfig import cpu_info
    times = interleaved_times(runners, val, spec, args.rounds, args.runs, f"{name} latency rounds")
    for k in runners:
        results[k]["latency_ms"] = float(np.median(times[k]))
        results[k]["latency_p10_ms"] = float(np.percentile(times[k], 10))
    return {"weights": source, "weights_sha256": weights_hash if source.startswith("pretrained") else "",
            "command": " ".join(sys.argv), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "cpu": cpu_info(), "x86_amx": x86_amx.status(), "timing": TIMING,
            "input": [spec.height, spec.width, spec.channels],
            "val": args.val, "val_faces": len(val), "variants": results, "goals": goals(results)}


def goals(r: dict) -> dict:
    r = {k: v for k, v in r.items() if "error" not in v}
    f = r["float32"]
    out = {}
    if "channel" in r:
        c = r["channel"]
        out["channel_macs_minus_30pct"] = c["macs"] <= 0.7 * f["macs"]
        out["channel_latency_minus_20pct"] = c["latency_ms"] <= 0.8 * f["latency_ms"]
        out["channel_nme_within_3pct"] = c["nme"] <= 1.03 * f["nme"]
    for k in ("ptq_int8", "qat_int8"):
        if k in r:
            out[f"{k}_nme_within_3pct"] = r[k]["nme"] <= 1.03 * f["nme"]
            out[f"{k}_1.5x_faster"] = f["latency_ms"] / r[k]["latency_ms"] >= 1.5
    return out


def table(name: str, res: dict) -> str:
    f = res["variants"]["float32"]
    lines = [f"{name} ({res['weights']}; val {res['val_faces']} faces)",
             f"{'variant':<10} {'NME':>7} {'dNME':>7} {'params':>9} {'nonzero':>9} {'MMACs':>8} {'dMACs':>7} "
             f"{'KB':>7} {'gzipKB':>7} {'ms':>7} {'speedup':>7}"]
    for k, v in res["variants"].items():
        if "error" in v:
            lines.append(f"{k:<10} failed: {v['error']}")
            continue
        lines.append(f"{k:<10} {v['nme']:7.3%} {v['nme'] / f['nme'] - 1:+7.1%} {v['params']:9d} "
                     f"{v['nonzero_params']:9d} {v['macs'] / 1e6:8.1f} {v['macs'] / f['macs'] - 1:+7.1%} "
                     f"{v['size_bytes'] / 1024:7.0f} {v['gzip_bytes'] / 1024:7.0f} {v['latency_ms']:7.2f} "
                     f"{f['latency_ms'] / v['latency_ms']:6.2f}x")
    lines.append("goals: " + ", ".join(f"{k} {'MET' if ok else 'missed'}" for k, ok in res["goals"].items()))
    return "\n".join(lines)


LABELS = {"float32": "float32", "magnitude": "magnitude", "channel": "channel", "ptq_int8": "PTQ int8",
          "qat_int8": "QAT int8"}


def _label(key: str, v: dict) -> str:
    if key == "magnitude":
        return f"magnitude {v['target_sparsity']:.0%}{', distilled' if v.get('distill') else ''}"
    if key == "channel":
        extra = " + per-layer ratios" if v.get("layer_ratios") else ""
        crit = ", BN γ" if v.get("criterion") == "bn" else ""
        how = ", gradual" if v.get("gradual") else ""
        div = f", widths ×{v['divisor']}" if v.get("divisor", 8) != 8 else ""  # the time steps with it (channel_blocks)
        return f"channel {v['ratio']:g}{extra}{div}{crit}{', distilled' if v.get('distill') else ''}{how}"
    how = (", distilled" if v.get("distill") else "") + (", BN frozen" if v.get("freeze_bn") else "")
    if key in ("ptq_int8", "qat_int8") and v.get("int8_coverage") is not None:
        return f"{LABELS[key]} ({v['int8_coverage']:.0%} of ops int8{how})"
    return LABELS[key] + how


def host_label(cpu, amx: str = "") -> str:
    """A short name for the CPU a model's rows were timed on: its hosts differ, and so do int8 speed-ups.
    ``amx``: the row's ``x86_amx``; ``denied`` (``--no-amx``) names the SIMD kernels that ran instead."""
    if not cpu:
        return "CPU not recorded"
    isa = [f for f in cpu.get("isa", []) if not (amx == "denied" and f.startswith("amx"))]
    top = next((f for f in ("amx_int8", "avx512_vnni", "avx_vnni", "avx512f", "avx2", "i8mm", "asimddp", "asimd")
                if f in isa), None)
    ident = cpu.get("family_model_stepping")
    denied = ", AMX denied" if amx == "denied" else ""
    return f"{cpu.get('model_name', '?')}{' ' + ident if ident else ''}{', ' + top if top else ''}{denied}"


def markdown(report: dict) -> str:
    """The results table of a compression.json: one block of rows per model (its CPU under its name), failed
    variants named."""
    lines = ["| model | variant | NME | dNME | MMACs | size KB | gzip KB | ms | speed-up |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, res in report["models"].items():
        variants = res["variants"]
        f = variants["float32"]
        for i, (k, v) in enumerate(variants.items()):
            first = name if i == 0 else (f"<sub>{host_label(res.get('cpu'), res.get('x86_amx', ''))}</sub>" if i == 1 else "")
            if "error" in v:
                lines.append(f"| {first} | {LABELS.get(k, k)} | failed: {v['error'][:80]} | | | | | | |")
                continue
            dmacs = f" ({v['macs'] / f['macs'] - 1:+.0%})" if v["macs"] != f["macs"] else ""
            lines.append(f"| {first} | {_label(k, v)} | {v['nme']:.2%} | "
                         f"{'' if k == 'float32' else format(v['nme'] / f['nme'] - 1, '+.1%')} | "
                         f"{v['macs'] / 1e6:.1f}{dmacs} | {v['size_bytes'] / 1024:.0f} | "
                         f"{v['gzip_bytes'] / 1024:.0f} | "
                         f"{v['latency_ms']:.2f} | {f['latency_ms'] / v['latency_ms']:.2f}x |")
    return "\n".join(lines).replace(" %", "%").replace("%", " %")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.no_amx:
        x86_amx.deny()  # before any interpreter: XNNPACK reads the CPU's features once per process
    if args.markdown:
        with open(args.out) as fh:
            print(markdown(json.load(fh)))
        return 0
    try:
        model_dirs = dict(parse_model_dir(item) for item in args.model_dir)
    except ValueError as exc:
        print(f"compression.py: error: {exc}", file=sys.stderr)
        return 2
    from tfalign.io import atomic_write_json
    from tfalign.training.runconfig import versions
    report = {"command": " ".join(sys.argv), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "versions": versions(), "settings": {k: v for k, v in vars(args).items()
                                                   if k not in ("current_model", "channel_ratios")},
              "models": {}}
    if args.keep_others and os.path.isfile(args.out):
        # Models not run now keep their earlier rows; each row carries its own command and date.
        with open(args.out) as fh:
            report["models"].update(json.load(fh).get("models", {}))
    for name in args.models.split(","):
        report["models"][name] = bench_model(name, args, model_dirs)
        print(table(name, report["models"][name]), flush=True)
        atomic_write_json(args.out, report)  # after each model: a later failure keeps what was measured
    return 0


if __name__ == "__main__":
    sys.exit(main())
