"""What every profiler part shares: the interpreter, the model and its contract, statistics, the result schema.

The profiler reads only an exported ``.tflite`` and the contract JSON the exporter writes beside it, so that a model
from any architecture (or from outside tfalign) is profiled the same way.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import os
import pathlib
import platform
import sys
import time

import numpy as np

from . import x86_amx

REPO = pathlib.Path(__file__).resolve().parents[2]
SCHEMA_PATH = REPO / "schemas" / "benchmark.schema.json"
DELEGATES = ("cpu", "xnnpack", "gpu", "nnapi", "npu", "coreml", "hexagon", "qnn", "other")


def interpreter_module():
    """(module, name) of the LiteRT interpreter, else tflite-runtime (only usable with numpy < 2, see STACK.md)."""
    try:
        from ai_edge_litert import interpreter as mod
        return mod, "ai_edge_litert"
    except ImportError:
        pass
    try:
        from tflite_runtime import interpreter as mod
        return mod, "tflite_runtime"
    except ImportError as exc:
        raise RuntimeError("no TFLite interpreter: pip install ai-edge-litert (or tflite-runtime)") from exc


def runtime_version() -> str:
    mod, name = interpreter_module()
    try:
        from importlib.metadata import version
        return f"{name} {version('ai-edge-litert' if name == 'ai_edge_litert' else 'tflite-runtime')}"
    except Exception:  # pragma: no cover - metadata missing in odd installs
        return name


def make_interpreter(model_path=None, model_content=None, threads: int = 1, xnnpack: bool = True):
    """An interpreter with XNNPACK on (the default delegate LiteRT applies) or off (builtin kernels only)."""
    mod, _ = interpreter_module()
    # BUILTIN_WITHOUT_DEFAULT_DELEGATES is the documented switch that keeps the interpreter from applying XNNPACK.
    resolver = mod.OpResolverType.AUTO if xnnpack else mod.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    return mod.Interpreter(model_path=None if model_path is None else os.fspath(model_path),
                           model_content=model_content, num_threads=int(threads),
                           experimental_op_resolver_type=resolver)


def warm_interpreter(model_content: bytes, threads: int = 1, xnnpack: bool = True):
    """:func:`make_interpreter`, allocated, zeros in its first input and invoked once, so the first-run allocation
    and XNNPACK's weight packing stay out of any timing."""
    it = make_interpreter(model_content=model_content, threads=threads, xnnpack=xnnpack)
    it.allocate_tensors()
    d = it.get_input_details()[0]
    it.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
    it.invoke()
    return it


def interleaved_ms(interpreters: dict, rounds: int, runs: int, desc: str = "rounds") -> dict:
    """Per key, the mean ms of ``runs`` invokes in each of ``rounds`` rounds; every round visits every interpreter,
    so all of them share the machine's noise and their ratios compare (take the median over rounds)."""
    from tqdm import tqdm
    times = {k: [] for k in interpreters}
    for _ in tqdm(range(rounds), desc=desc, file=sys.stderr):
        for key, it in interpreters.items():
            t0 = time.perf_counter()
            for _ in range(runs):
                it.invoke()
            times[key].append((time.perf_counter() - t0) / runs * 1e3)
    return times


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def contract_candidates(model_path) -> list[pathlib.Path]:
    p = pathlib.Path(model_path)
    # The exporter writes MODEL.contract.json (tfalign.runtime.CONTRACT_SUFFIX); the others are for hand-made files.
    return [p.with_name(p.stem + ".contract.json"), p.with_suffix(".json"), p.parent / "contract.json"]


def load_contract(model_path):
    """(contract dict or None, where it came from or why not). A contract that is present but broken is an error."""
    for cand in contract_candidates(model_path):
        if not cand.is_file():
            continue
        try:
            data = json.loads(cand.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{cand}: contract is not valid JSON ({exc})") from exc
        # A summary JSON beside the model is not a contract: a contract always describes the input tensor.
        if isinstance(data, dict) and isinstance(data.get("input"), dict) and "outputs" in data:
            return data, str(cand)
    embedded = _embedded_contract(model_path)
    if embedded is not None:
        return embedded, f"{pathlib.Path(model_path).name} (contract embedded in the flatbuffer metadata)"
    names = ", ".join(c.name for c in contract_candidates(model_path))
    return None, f"no contract beside the model (looked for {names}); input taken from the interpreter's tensor details"


def _embedded_contract(model_path):
    """The contract the exporter also embeds as flatbuffer metadata ``tfalign_contract``, if any."""
    try:
        from ai_edge_litert import schema_py_generated as schema
        model = schema.Model.GetRootAs(pathlib.Path(model_path).read_bytes(), 0)
        for i in range(model.MetadataLength()):
            meta = model.Metadata(i)
            if meta.Name() == b"tfalign_contract":
                buf = model.Buffers(meta.Buffer())
                data = json.loads(buf.DataAsNumpy().tobytes().decode("utf-8"))
                if isinstance(data, dict) and isinstance(data.get("input"), dict):
                    return data
    except Exception:  # no/odd metadata: the caller falls back to the tensor details and says so
        return None
    return None


def check_model_path(path) -> pathlib.Path:
    p = pathlib.Path(path)
    if not p.is_file():
        raise ValueError(f"{p}: model file not found")
    if p.suffix.lower() != ".tflite":
        raise ValueError(f"{p}: expected a .tflite file (CoreML models are profiled on the phone: see --import)")
    with open(p, "rb") as fh:
        head = fh.read(8)
    if len(head) < 8 or head[4:8] != b"TFL3":
        raise ValueError(f"{p}: not a TFLite flatbuffer (missing the TFL3 identifier)")
    return p


_NP_DTYPES = {"float32": np.float32, "float16": np.float16, "int8": np.int8, "uint8": np.uint8,
              "int16": np.int16, "int32": np.int32, "int64": np.int64, "bool": np.bool_}


def make_inputs(input_details, contract=None, seed: int = 0) -> list[np.ndarray]:
    """Plausible input tensors: a random 0..255 image normalised and quantized as the contract says, else
    values drawn from each input's own dtype and quantization (so int8 kernels see realistic ranges)."""
    rng = np.random.default_rng(seed)
    out = []
    for i, det in enumerate(input_details):
        shape = [int(d) for d in det["shape"]]
        dtype = np.dtype(det["dtype"])
        cin = (contract or {}).get("input") if i == 0 else None
        if cin:
            pixels = rng.uniform(0, 255, size=shape)
            mean = np.asarray(cin.get("mean", 0.0), dtype=np.float64)
            std = np.asarray(cin.get("std", 1.0), dtype=np.float64)
            x = (pixels - mean) / std
        else:
            x = rng.standard_normal(size=shape)
        if np.issubdtype(dtype, np.integer):
            scale, zp = det.get("quantization", (0.0, 0))
            if cin and cin.get("scale"):
                scale, zp = float(cin["scale"]), int(cin.get("zero_point", 0))
            info = np.iinfo(dtype)
            q = np.round(x / scale) + zp if scale else rng.integers(info.min, info.max, size=shape, endpoint=True)
            out.append(np.clip(q, info.min, info.max).astype(dtype))
        elif dtype == np.bool_:
            out.append(x > 0)
        else:
            out.append(x.astype(dtype))
    return out


def percentiles(samples_ms) -> dict:
    a = np.asarray(samples_ms, dtype=np.float64)
    if a.size == 0:
        raise ValueError("no timing samples")
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {"p50_ms": float(p50), "p90_ms": float(p90), "p99_ms": float(p99), "mean_ms": float(a.mean()),
            "min_ms": float(a.min()), "max_ms": float(a.max()), "std_ms": float(a.std())}


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def host_device() -> dict:
    from tfalign.training.runconfig import cpu_info
    cpu = cpu_info()
    ident = cpu.get("family_model_stepping")
    # cpu_features: XNNPACK dispatches on them, and int8-vs-float ratios differ between x86 hosts that have them
    # and hosts that don't (docs/compression.md); x86_amx says whether XNNPACK could use AMX (--no-amx denies it).
    return {"model": f"host ({platform.node() or 'unknown'})", "manufacturer": "",
            "soc": cpu["model_name"] + (f" ({ident})" if ident else ""),
            "os": f"{platform.system()} {platform.release()}", "abi": platform.machine(),
            "cpu_cores": os.cpu_count() or 1, "cpu_features": cpu.get("isa", []), "x86_amx": x86_amx.status()}


# Instructions that multiply and accumulate 8-bit values: x86 VNNI and AMX, Arm's dot product (Armv8.2, in
# Cortex-A55/A75 and later) and i8mm. XNNPACK's int8 convolutions need one to beat its float FMAs.
INT8_DOT_PRODUCT = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")


def int8_timing_note(cpu_features) -> str | None:
    """What to say next to an int8 timing taken on a CPU without an 8-bit dot product (None: it has one, or its
    features are unknown, e.g. macOS). There int8 gains little or loses, unlike on a phone: the shipped
    mobile_two_stage int8 export ran 0.58x of its float32 on a Zen 3 EPYC and 1.40x on a Zen 4 with VNNI."""
    if not cpu_features or any(f in cpu_features for f in INT8_DOT_PRODUCT):
        return None
    return ("this CPU has no 8-bit dot-product instruction (x86 VNNI/AMX, Arm dotprod), so int8 gains little over "
            "float here or loses (the two-stage model: 0.58x on a Zen 3 EPYC), unlike on phones with Cortex-A55/A75 "
            "or later cores; time it on the phone (python -m tfalign.profile MODEL --adb ...) or estimate it "
            "(--devices)")


def load_schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def validate_benchmark(doc, source: str = "benchmark JSON") -> None:
    """Raise ValueError naming ``source`` and the first offending field if ``doc`` breaks the schema."""
    import jsonschema
    validator = jsonschema.Draft202012Validator(load_schema())
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        where = "/".join(str(p) for p in err.absolute_path) or "(top level)"
        raise ValueError(f"{source}: {where}: {err.message}")


def fmt_table(headers, rows) -> str:
    """A plain text table (the CLI's human output); numbers are formatted by the caller."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
