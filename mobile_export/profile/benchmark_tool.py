"""The official LiteRT ``benchmark_model`` tool: parse its text output, and run it on a phone over ``adb``.

Output format (google-ai-edge/LiteRT ``tflite/tools/benchmark/benchmark_model.cc``; the ``count=... p5=... median=...``
lines from ``StatWithPercentiles::OutputToStream``): times are microseconds; older builds print
``Average inference timings in us: Warmup: W, Init: I, Inference: X`` and no percentiles; Android's APK writes the
same lines to logcat behind a ``MM-DD hh:mm:ss.mmm pid tid I tflite  :`` prefix; numbers may be in scientific
notation (``avg=2.95034e+06``). Recorded examples: tests/data/benchmark_outputs/.
"""
from __future__ import annotations

import os
import pathlib
import re
import shlex
import shutil
import subprocess

from . import common

_LOGCAT = re.compile(r"^\d\d-\d\d\s+\d\d:\d\d:\d\d\.\d+\s+\d+\s+\d+\s+[VDIWEF]\s+[^:]*?\s*:\s?")
_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_KV = re.compile(rf"(\w+)=({_NUM})(\(all same\))?")
_INIT_SESSION = re.compile(rf"Initialized session in ({_NUM})\s*ms")
_TIMINGS = re.compile(r"Inference timings in us:\s*(.*)$")
_OLD_TIMINGS = re.compile(r"Average inference timings in us:\s*(.*)$")
_SIZE = re.compile(rf"input model file size \(MB\):\s*({_NUM})", re.I)
_MEMORY = re.compile(rf"Memory footprint delta.*?:\s*init=({_NUM})\s+overall=({_NUM})")
_THREADS = re.compile(r"^(?:Num threads|#threads used for CPU inference):\s*\[(\d+)\]")
_GRAPH = re.compile(r"^(?:Graph|Loaded model)[:\s]+\[?([^\]\s]+)\]?")
_KERNELS = re.compile(r"(\d+) delegate kernels")
_NUMERIC_CELL = re.compile(rf"^{_NUM}%?$")


def strip_prefix(line: str) -> str:
    """Remove a logcat prefix and an ``INFO:`` tag, leaving the tool's own text."""
    line = _LOGCAT.sub("", line.rstrip("\r\n"))
    return re.sub(r"^(INFO|WARNING|ERROR):\s*", "", line.strip())


def _stat_line(text: str) -> dict:
    """``count=50 first=... avg=... std=... p5=... median=... p95=...`` → ms (counts stay counts)."""
    stats = {}
    for key, value, same in _KV.findall(text):
        v = float(value)
        stats[key] = int(v) if key == "count" else round(v / 1000.0, 6)
        if same:
            stats["all_same"] = True
    return stats


def _pairs(text: str) -> dict:
    """``Init: 18777, First inference: 64791, Warmup (avg): 57758.2`` → {'init': 18.777, ...} in ms."""
    out = {}
    for part in text.split(","):
        if ":" not in part:
            continue
        key, value = part.split(":", 1)
        key = re.sub(r"[^a-z]+", "_", key.strip().lower()).strip("_")
        try:
            out[key] = round(float(value.strip()) / 1000.0, 6)
        except ValueError:
            continue
    return out


def _table_row(cells: list[str], headers: list[str]) -> dict | None:
    """One op-profiling row. Node types and names may contain spaces (XNNPACK rows read like
    ``Convolution (NHWC, QC8) IGEMM``), so the numeric block is located by position, not by splitting on tabs."""
    numeric = headers[1:-1] if headers and headers[-1].lower() == "name" else headers[1:]
    k = len(numeric)
    for i in range(1, len(cells) - k + 1):
        if all(_NUMERIC_CELL.match(c) for c in cells[i:i + k]):
            row = {"node_type": " ".join(cells[:i])}
            for h, c in zip(numeric, cells[i:i + k]):
                key = re.sub(r"[^a-z0-9]+", "_", h.lower().replace("%", "_pct")).strip("_")
                row[key] = float(c.rstrip("%"))
            name = " ".join(cells[i + k:])
            if name:
                row["name"] = name.strip("[]")
            return row
    return None


def parse(text: str) -> dict:
    """Parse benchmark_model output (plain or logcat) into a dict of ms values, op tables and run facts.

    Raises ValueError if the text holds no timing at all (e.g. the tool failed to load the model).
    """
    res: dict = {"stats": [], "tables": {}}
    section = "regular"
    headers = None
    table = None
    for raw in text.splitlines():
        line = strip_prefix(raw)
        if not line:
            continue
        if "Profiling Info for Benchmark Initialization" in line:
            section = "init"
            continue
        if "Profiling Info for Regular Benchmark Runs" in line:
            section = "regular"
            continue
        if line.startswith("====="):
            title = line.strip("= ").lower()
            table = {"run order": "run_order", "summary by node type": "summary"}.get(title)
            headers = None
            continue
        if table and line.startswith("[") and "]" in line:
            headers = re.findall(r"\[([^\]]+)\]", line)
            continue
        if table and headers:
            row = _table_row(line.replace("\t", " ").split(), headers)
            if row is not None:
                res["tables"].setdefault(f"{section}_{table}", []).append(row)
                continue
            if not line.startswith("…") and not line.startswith("..."):
                table, headers = None, None
        if m := _TIMINGS.search(line):
            res["timings"] = _pairs(m.group(1))
        elif m := _OLD_TIMINGS.search(line):
            res["timings"] = _pairs(m.group(1))
        elif line.startswith("count=") or line.startswith("Timings (microseconds):"):
            res["stats"].append(_stat_line(line))
        elif m := _INIT_SESSION.search(line):
            res["init_session_ms"] = float(m.group(1))
        elif m := _SIZE.search(line):
            res["model_size_mb"] = float(m.group(1))
        elif m := _MEMORY.search(line):
            res["memory_mb"] = {"init": float(m.group(1)), "overall": float(m.group(2))}
        elif m := _THREADS.match(line):
            res["threads"] = int(m.group(1))
        elif m := _GRAPH.match(line):
            res.setdefault("model", m.group(1))
        elif line.startswith("Number of nodes executed:"):
            res["nodes_executed"] = int(line.split(":")[1])
        low = line.lower()
        if "xnnpack delegate" in low:
            res["delegate"] = "xnnpack"
        elif "delegate for gpu" in low or low.startswith("use gpu: [1]") or "gpu delegate" in low:
            res["delegate"] = "gpu"
        elif "nnapi delegate" in low or low.startswith("use nnapi: [1]"):
            res["delegate"] = "nnapi"
        elif "hexagon delegate" in low:
            res["delegate"] = "hexagon"
        if "executed by the delegate" in low:
            res["delegation"] = "partial" if "partially" in low else "complete"
            if m := _KERNELS.search(line):
                res["delegate_kernels"] = int(m.group(1))
    if "timings" not in res and not res["stats"]:
        raise ValueError("no benchmark timings found (expected 'Inference timings in us:' or 'count=...' lines)")
    return _summarise(res)


def _summarise(res: dict) -> dict:
    t = res.get("timings", {})
    out = dict(res)
    # benchmark_model prints the warm-up stats first and the regular runs last ("Timings (microseconds)" in old builds).
    runs = res["stats"][-1] if res["stats"] else {}
    warm = res["stats"][0] if len(res["stats"]) > 1 else {}
    out["runs"], out["warmup"] = runs, warm
    out["init_ms"] = t.get("init", res.get("init_session_ms"))
    out["first_ms"] = t.get("first_inference", warm.get("first"))
    out["warmup_avg_ms"] = t.get("warmup_avg", t.get("warmup", warm.get("avg")))
    out["inference_avg_ms"] = t.get("inference_avg", t.get("inference", runs.get("avg")))
    del out["stats"]
    return out


def to_result(parsed: dict, runtime_version: str = "") -> dict:
    """A benchmark.schema.json ``results`` entry. benchmark_model prints no p90: it is null, p50 is the median
    when printed and otherwise the mean (said in ``note``)."""
    runs = parsed.get("runs", {})
    median = runs.get("median")
    note = "LiteRT benchmark_model; p90 not printed by the tool"
    if median is None:
        note += "; p50 is the mean (this build prints no percentiles)"
    return {
        "runtime": "benchmark_model", "runtime_version": runtime_version,
        "delegate": parsed.get("delegate", "cpu"), "threads": parsed.get("threads"),
        "runs": runs.get("count") or None, "init_ms": parsed.get("init_ms"), "first_ms": parsed.get("first_ms"),
        "p50_ms": median if median is not None else parsed["inference_avg_ms"], "p90_ms": None,
        "p95_ms": runs.get("p95"), "mean_ms": parsed.get("inference_avg_ms"), "min_ms": runs.get("min"),
        "max_ms": runs.get("max"), "peak_memory_mb": (parsed.get("memory_mb") or {}).get("overall"), "note": note,
    }


# ----------------------------------------------------------------------------------------------- adb runner
REMOTE_DIR = "/data/local/tmp/tfalign"
DELEGATE_FLAGS = {"cpu": ["--use_xnnpack=false"], "xnnpack": ["--use_xnnpack=true"], "gpu": ["--use_gpu=true"],
                  "nnapi": ["--use_nnapi=true"]}


class AdbError(RuntimeError):
    pass


def _adb(args, serial=None, adb="adb", timeout=600) -> str:
    cmd = [adb] + (["-s", serial] if serial else []) + list(args)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError as exc:
        raise AdbError(f"adb not found ({adb}); install Android platform-tools or pass --adb-path") from exc
    except subprocess.TimeoutExpired as exc:
        raise AdbError(f"{' '.join(cmd[:4])}: timed out after {timeout} s") from exc
    if proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        raise AdbError(f"{shlex.join(cmd)} failed (exit {proc.returncode}): {msg[-1] if msg else 'no output'}")
    return proc.stdout


def device_info(serial=None, adb="adb") -> dict:
    def prop(name):
        return _adb(["shell", "getprop", name], serial, adb).strip()
    release, sdk = prop("ro.build.version.release"), prop("ro.build.version.sdk")
    return {"model": prop("ro.product.model") or "unknown Android device",
            "manufacturer": prop("ro.product.manufacturer"),
            # ro.soc.model exists from Android 12; older phones only name the board platform.
            "soc": prop("ro.soc.model") or prop("ro.board.platform"),
            "os": f"Android {release} (API {sdk})", "abi": prop("ro.product.cpu.abi")}


def run_adb(model_path, binary, *, delegates=("xnnpack",), threads=(1,), warmup_runs=5, runs=50, serial=None,
            adb="adb", progress=None) -> dict:
    """Push the model and benchmark_model to the phone, run each delegate × thread setting, return a document
    in benchmark.schema.json form (validated)."""
    model_path = common.check_model_path(model_path)
    binary = pathlib.Path(binary)
    if not binary.is_file():
        raise ValueError(f"--benchmark-binary {binary}: file not found (download the android_aarch64 "
                         "benchmark_model from the LiteRT releases)")
    for d in delegates:
        if d not in DELEGATE_FLAGS:
            raise ValueError(f"--xnnpack/--delegates: {d!r} cannot be run by benchmark_model over adb "
                             f"(choose from {', '.join(DELEGATE_FLAGS)})")
    remote_model = f"{REMOTE_DIR}/{model_path.name}"
    remote_bin = f"{REMOTE_DIR}/benchmark_model"
    _adb(["shell", "mkdir", "-p", REMOTE_DIR], serial, adb)
    _adb(["push", os.fspath(model_path), remote_model], serial, adb)
    _adb(["push", os.fspath(binary), remote_bin], serial, adb)
    _adb(["shell", "chmod", "755", remote_bin], serial, adb)
    info = device_info(serial, adb)
    results = []
    settings = [(d, t) for d in delegates for t in threads]
    for d, t in (progress(settings) if progress else settings):
        out = _adb(["shell", remote_bin, f"--graph={remote_model}", f"--num_threads={t}",
                    f"--warmup_runs={warmup_runs}", f"--num_runs={runs}"] + DELEGATE_FLAGS[d], serial, adb)
        try:
            parsed = parse(out)
        except ValueError as exc:
            raise AdbError(f"benchmark_model on {info['model']} ({d}, {t} threads): {exc}") from exc
        r = to_result(parsed)
        # The tool's own delegate detection wins over what was asked: a delegate that failed to apply falls back.
        r["delegate"] = parsed.get("delegate", "cpu" if d == "cpu" else d)
        r["threads"], r["warmup_runs"] = t, warmup_runs
        results.append(r)
    doc = {"format_version": 1, "created": common.now_iso(), "tool": {"name": "tfalign.profile --adb"},
           "device": info, "model": {"file": model_path.name, "sha256": common.sha256_file(model_path),
                                     "size_bytes": model_path.stat().st_size},
           "results": results}
    common.validate_benchmark(doc, "adb benchmark result")
    return doc


def find_adb(explicit=None) -> str:
    if explicit:
        return explicit
    found = shutil.which("adb")
    if not found:
        raise ValueError("--adb: no adb on PATH (install Android platform-tools or pass --adb-path)")
    return found
