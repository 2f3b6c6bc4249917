"""python -m tfalign.profile: latency of an exported .tflite — measured here, per op, estimated per phone, or
imported from real phones.

Examples:
    python -m tfalign.profile exports/default/mobile_two_stage_int8.tflite  # host table, p50/p90/p99
    python -m tfalign.profile model.tflite --per-op --devices all --out prof/
    python -m tfalign.profile --import pixel7.json iphone15.json --out prof/
    python -m tfalign.profile model.tflite --adb --benchmark-binary ./benchmark_model

The work is done in ``mobile_export.profile``; this front door only parses arguments (so --help is instant).
"""
from __future__ import annotations

import argparse
import sys


def _csv_ints(text: str) -> list[int]:
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not vals or any(v < 1 for v in vals):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return vals


def _on_off(text: str) -> list[bool]:
    out = []
    for v in text.split(","):
        v = v.strip().lower()
        if v not in ("on", "off"):
            raise argparse.ArgumentTypeError(f"expected on, off or on,off, got {text!r}")
        out.append(v == "on")
    return out


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m tfalign.profile", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Everything printed as a number for a phone without --import/--adb is an ESTIMATE and labelled so.")
    ap.add_argument("model", nargs="?", metavar="MODEL.tflite",
                    help="exported TFLite model; its contract JSON (MODEL.contract.json) is read from beside it for "
                         "the input description, else the interpreter's tensor details are used (and this is said)")
    ap.add_argument("--json", action="store_true",
                    help="print one JSON document on stdout instead of tables")
    ap.add_argument("--threads", type=_csv_ints, default=[1, 2, 4], metavar="1,2,4",
                    help="interpreter thread counts to measure on the host (default 1,2,4)")
    ap.add_argument("--xnnpack", type=_on_off, default=[True, False], metavar="on,off",
                    help="XNNPACK delegate on, off or both (default on,off); off = LiteRT builtin kernels")
    ap.add_argument("--runs", type=int, default=50, metavar="N",
                    help="timed invocations per setting after warm-up (default 50)")
    ap.add_argument("--warmup", type=int, default=5, metavar="N", help="untimed invocations first (default 5)")
    ap.add_argument("--per-op", action="store_true",
                    help="time every op alone (single-op sub-models cut from the flatbuffer) with MACs and bytes, "
                         "and report the per-op sum against the whole model; uses the first --threads and --xnnpack")
    ap.add_argument("--devices", metavar="all|NAME,...",
                    help="estimate latency on phones from devices.json (keys such as pixel_6, iphone_14_pro, or "
                         "names); estimates carry their method and leave-one-out error on published figures")
    ap.add_argument("--calibration", action="store_true",
                    help="print the phone estimator's calibration: per group coefficients and leave-one-out error")
    ap.add_argument("--import", dest="imports", nargs="+", metavar="FILE",
                    help="merge benchmark JSON files (schemas/benchmark.schema.json: apps' benchmark mode, --adb, "
                         "host --out) into one cross-device table and chart")
    ap.add_argument("--adb", action="store_true",
                    help="run LiteRT's benchmark_model on an attached Android phone over adb and parse its output")
    ap.add_argument("--benchmark-binary", metavar="FILE",
                    help="with --adb: the android_aarch64 benchmark_model executable to push")
    ap.add_argument("--adb-path", metavar="FILE", help="with --adb: adb executable (default: adb on PATH)")
    ap.add_argument("--serial", metavar="ID", help="with --adb: device serial (adb -s) when several are attached")
    ap.add_argument("--adb-delegates", default="xnnpack", metavar="xnnpack,gpu,...",
                    help="with --adb: delegates to run: cpu, xnnpack, gpu, nnapi (default xnnpack)")
    ap.add_argument("--out", metavar="DIR",
                    help="write JSON results and PNG charts here (MODEL.host.json/.png, .perop.*, .phones.*, "
                         "imported.*)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    from mobile_export.profile import x86_amx  # stdlib only: --help stays instant
    x86_amx.add_argument(ap)
    return ap


def main(argv=None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    if not (args.model or args.imports or args.calibration):
        ap.error("give MODEL.tflite, --import FILE... or --calibration")
    from mobile_export.profile import benchmark_tool, run, x86_amx
    if args.no_amx:
        try:
            x86_amx.deny()  # before any interpreter: XNNPACK reads the CPU's features once per process
        except RuntimeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    try:
        return run.run(args)
    except ValueError as exc:  # bad input: a file, an argument
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except benchmark_tool.AdbError as exc:  # the phone or adb failed, not the arguments
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
