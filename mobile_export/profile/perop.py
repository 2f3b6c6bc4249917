"""Per-op latency, MACs and bytes of an exported .tflite, measured without a per-op profiler.

LiteRT's Python interpreter exposes no op timings and no ``benchmark_model`` binary ships in any wheel here, so
each operator of the main subgraph is cut out of the flatbuffer into a one-op model (same tensors, shapes, dtypes,
quantization parameters and constant buffers) and timed alone with the same interpreter settings. Its inputs are
the values that op really sees: the whole model is run once with every tensor preserved, so data-dependent ops
(GATHER indices, int8 ranges) behave as in the full graph.

What this does not capture (why the per-op sum differs from the whole model, reported as a ratio): the fixed cost
of one ``invoke()`` per op (measured separately and also reported subtracted), cache warmth carried from op to op,
XNNPACK fusing neighbouring ops inside one delegate partition, and threads spinning up once per invoke instead
of once per graph.
"""
from __future__ import annotations

import copy
import functools
import time

import numpy as np

from . import common

_ITEMSIZE = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 6: 1, 7: 2, 8: 8, 9: 1, 10: 8, 11: 16, 12: 8, 15: 4, 16: 2, 17: 0.5,
             18: 2, 19: 0.25, 20: 0.5, 21: 1, 22: 1}
# Ops whose cost is multiply-accumulates; "dense" = every output reads a full receptive field of all input
# channels, "depthwise" = one channel (memory-bound on phones, so the estimator gives it its own coefficient).
MAC_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "BATCH_MATMUL", "CONV_3D"}
CONTROL_FLOW = {"WHILE", "IF", "CALL_ONCE", "CALL"}


def _schema():
    from ai_edge_litert import schema_py_generated as schema
    return schema


@functools.lru_cache(maxsize=None)
def _enum_names(enum_cls) -> dict:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_")}


def read_model(data: bytes):
    from ai_edge_litert.tools import flatbuffer_utils
    return flatbuffer_utils.read_model_from_bytearray(bytearray(data))


def write_model(model) -> bytes:
    from ai_edge_litert.tools import flatbuffer_utils
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def op_name(model, op) -> str:
    schema = _schema()
    code = model.operatorCodes[op.opcodeIndex]
    builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
    if builtin == schema.BuiltinOperator.CUSTOM:
        return (code.customCode or b"CUSTOM").decode() if isinstance(code.customCode, bytes) else str(code.customCode)
    return _enum_names(schema.BuiltinOperator).get(builtin, f"BUILTIN_{builtin}")


def _decode(name) -> str:
    return name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name or "")


def _is_const(model, tensor) -> bool:
    buf = model.buffers[tensor.buffer] if 0 < tensor.buffer < len(model.buffers) else None
    return buf is not None and ((buf.data is not None and len(buf.data) > 0) or bool(buf.size))


def _nbytes(tensor) -> float:
    shape = [] if tensor.shape is None else [int(d) for d in tensor.shape]
    return float(np.prod(shape, dtype=np.float64)) * _ITEMSIZE.get(int(tensor.type), 4)


def _numel(tensor) -> int:
    return int(np.prod([] if tensor.shape is None else [int(d) for d in tensor.shape], dtype=np.int64))


FOLDABLE = {"DEQUANTIZE", "DENSIFY"}


def folded_tensors(model, subgraph: int = 0) -> set[int]:
    """Outputs of DEQUANTIZE/DENSIFY ops on constants (fp16 or sparse weights): the runtime computes them once
    at init, so for timing and costs they are weights, not activations."""
    sg = model.subgraphs[subgraph]
    out = set()
    for op in sg.operators:
        ins = [i for i in op.inputs if i >= 0]
        if op_name(model, op) in FOLDABLE and ins and all(_is_const(model, sg.tensors[i]) or i in out for i in ins):
            out.update(op.outputs)
    return out


def op_cost(model, sg, op, folded=frozenset()) -> dict:
    """MACs and bytes moved by one op (activations read + weights read + outputs written)."""
    name = op_name(model, op)
    ins = [sg.tensors[i] for i in op.inputs if i >= 0 and i not in folded]
    outs = [sg.tensors[i] for i in op.outputs if i >= 0]
    consts = [t for t in ins if _is_const(model, t)] + [sg.tensors[i] for i in op.inputs if i in folded]
    out_elems = sum(_numel(t) for t in outs)
    macs = 0
    if name in ("CONV_2D", "CONV_3D"):
        w = sg.tensors[op.inputs[1]].shape  # [O, kh, kw, I/groups] (3D: [kd, kh, kw, I, O])
        macs = out_elems * int(np.prod(w[1:])) if name == "CONV_2D" else out_elems * int(np.prod(w[:4]))
    elif name == "DEPTHWISE_CONV_2D":
        w = sg.tensors[op.inputs[1]].shape  # [1, kh, kw, O]
        macs = out_elems * int(w[1]) * int(w[2])
    elif name == "FULLY_CONNECTED":
        w = sg.tensors[op.inputs[1]].shape  # [O, I]
        macs = out_elems * int(w[-1])
    elif name == "TRANSPOSE_CONV":
        w = sg.tensors[op.inputs[1]].shape  # [O, kh, kw, I]; every input pixel scatters a kh×kw×O patch
        macs = _numel(sg.tensors[op.inputs[2]]) * int(w[0]) * int(w[1]) * int(w[2])
    elif name == "BATCH_MATMUL":
        lhs = sg.tensors[op.inputs[0]].shape
        adj_x = bool(getattr(op.builtinOptions, "adjX", False))
        macs = out_elems * int(lhs[-2] if adj_x else lhs[-1])
    return {
        "macs": int(macs),
        "kind": "depthwise" if name == "DEPTHWISE_CONV_2D" else ("dense" if name in MAC_OPS else "other"),
        "bytes_in": sum(_nbytes(t) for t in ins if not _is_const(model, t)),
        "bytes_weights": sum(_nbytes(t) for t in consts),
        "bytes_out": sum(_nbytes(t) for t in outs),
        "out_elements": out_elems,
    }


def graph_ops(model, subgraph: int = 0) -> list[dict]:
    """Every op of a subgraph with its type, output name/shape/dtype and cost (no timing)."""
    sg = model.subgraphs[subgraph]
    folded = folded_tensors(model, subgraph)
    rows = []
    for i, op in enumerate(sg.operators):
        out = sg.tensors[op.outputs[0]] if len(op.outputs) else None
        if out is not None and op.outputs[0] in folded:
            # Weight decompression done once at init: no per-inference cost.
            cost = {"macs": 0, "kind": "folded", "bytes_in": 0.0, "bytes_weights": 0.0, "bytes_out": 0.0,
                    "out_elements": 0}
        else:
            cost = op_cost(model, sg, op, folded)
        cost["bytes"] = cost["bytes_in"] + cost["bytes_weights"] + cost["bytes_out"]
        rows.append({"index": i, "op": op_name(model, op), "name": _decode(out.name) if out is not None else "",
                     "shape": [] if out is None or out.shape is None else [int(d) for d in out.shape],
                     "dtype": _dtype_name(out.type) if out is not None else "", **cost})
    return rows


def _dtype_name(t) -> str:
    return _enum_names(_schema().TensorType).get(int(t), str(t)).lower()


def producers(model, subgraph: int = 0) -> dict[int, int]:
    """tensor id → index of the op that writes it."""
    return {t: i for i, op in enumerate(model.subgraphs[subgraph].operators) for t in op.outputs if t >= 0}


def sub_model(model, op_indices, subgraph: int = 0) -> tuple[bytes, list[int], list[int]]:
    """A .tflite (bytes) holding only the given ops (in graph order) with the same tensors, quantization and
    constant buffers, plus the original ids of its input and output tensors. Inputs are the non-constant tensors
    the ops read but do not write; outputs are what the last op writes."""
    schema = _schema()
    sg = model.subgraphs[subgraph]
    op_indices = sorted(op_indices)
    ops = [sg.operators[i] for i in op_indices]
    for i, op in zip(op_indices, ops):
        if op_name(model, op) in CONTROL_FLOW:
            raise ValueError(f"op {i} ({op_name(model, op)}) calls other subgraphs: not measurable alone")
    written = {t for op in ops for t in op.outputs}
    used = []
    for op in ops:
        for t in list(op.inputs) + list(op.outputs) + list(op.intermediates if op.intermediates is not None else []):
            if t >= 0 and t not in used:
                used.append(t)
    remap = {old: new for new, old in enumerate(used)}
    new = schema.ModelT()
    new.version = model.version
    new.operatorCodes = model.operatorCodes
    new.description = b"tfalign per-op sub-model"
    new.buffers = [schema.BufferT()]
    tensors = []
    for old in used:
        t = copy.copy(sg.tensors[old])
        if _is_const(model, t):
            new.buffers.append(model.buffers[t.buffer])
            t.buffer = len(new.buffers) - 1
        else:
            t.buffer = 0
        tensors.append(t)
    nsg = schema.SubGraphT()
    nsg.tensors = tensors
    nsg.operators = []
    for op in ops:
        nop = copy.copy(op)
        nop.inputs = [remap[i] if i >= 0 else -1 for i in op.inputs]
        nop.outputs = [remap[i] for i in op.outputs]
        if op.intermediates is not None:
            nop.intermediates = [remap[i] for i in op.intermediates]
        nsg.operators.append(nop)
    in_ids = list(dict.fromkeys(i for op in ops for i in op.inputs if i >= 0 and i not in written
                                and not _is_const(model, sg.tensors[i]) and not sg.tensors[i].isVariable))
    nsg.inputs = [remap[i] for i in in_ids]
    nsg.outputs = [remap[i] for i in ops[-1].outputs]
    nsg.name = b"main"
    new.subgraphs = [nsg]
    return write_model(new), in_ids, list(ops[-1].outputs)


def single_op_model(model, op_index: int, subgraph: int = 0) -> tuple[bytes, list[int], list[int]]:
    """The op alone, together with the DEQUANTIZE/DENSIFY ops that unpack its constant weights (so the runtime
    treats those weights exactly as in the full graph: XNNPACK packs them once, builtin kernels re-run them)."""
    folded = folded_tensors(model, subgraph)
    prod = producers(model, subgraph)
    group, stack = {op_index}, [op_index]
    while stack:
        op = model.subgraphs[subgraph].operators[stack.pop()]
        for t in op.inputs:
            if t in folded and prod[t] not in group:
                group.add(prod[t])
                stack.append(prod[t])
    return sub_model(model, group, subgraph)


def _trivial_model() -> bytes:
    """A one-element RELU: the cost of one invoke() with (almost) nothing to compute."""
    schema = _schema()
    m = schema.ModelT()
    m.version = 3
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.RELU
    code.version = 1
    m.operatorCodes = [code]
    m.buffers = [schema.BufferT()]
    sg = schema.SubGraphT()
    for name in (b"x", b"y"):
        t = schema.TensorT()
        t.shape, t.type, t.buffer, t.name = [1], schema.TensorType.FLOAT32, 0, name
        sg.tensors = (sg.tensors or []) + [t]
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0], [1]
    sg.operators, sg.inputs, sg.outputs = [op], [0], [1]
    m.subgraphs = [sg]
    return write_model(m)


def _time(interp, runs: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        interp.invoke()
    out = []
    for _ in range(runs):
        t0 = time.perf_counter_ns()
        interp.invoke()
        out.append((time.perf_counter_ns() - t0) / 1e6)
    return out


def _tensor_values(model_path, contract, threads) -> dict:
    """Every tensor's value after one run of the whole model (builtin kernels: XNNPACK hides intermediates)."""
    mod, _ = common.interpreter_module()
    interp = mod.Interpreter(model_path=str(model_path), num_threads=threads,
                             experimental_op_resolver_type=mod.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
                             experimental_preserve_all_tensors=True)
    interp.allocate_tensors()
    details = interp.get_input_details()
    for det, value in zip(details, common.make_inputs(details, contract)):
        interp.set_tensor(det["index"], value)
    interp.invoke()
    values = {}
    for det in interp.get_tensor_details():
        try:
            values[det["index"]] = np.array(interp.get_tensor(det["index"]))
        except ValueError:  # tensors without data (e.g. optional/unused)
            pass
    return values


def profile(model_path, *, threads: int = 1, xnnpack: bool = True, runs: int = 30, warmup: int = 3,
            whole_p50_ms: float | None = None, progress: bool = True) -> dict:
    """Per-op rows (time, MACs, bytes) for the main subgraph and their sum against the whole model."""
    model_path = common.check_model_path(model_path)
    contract, contract_source = common.load_contract(model_path)
    data = model_path.read_bytes()
    model = read_model(data)
    rows = graph_ops(model)
    values = _tensor_values(model_path, contract, threads)

    trivial = common.make_interpreter(model_content=_trivial_model(), threads=threads, xnnpack=xnnpack)
    trivial.allocate_tensors()
    overhead = float(np.median(_time(trivial, max(runs, 50), warmup)))

    if whole_p50_ms is None:
        whole = common.make_interpreter(model_path, threads=threads, xnnpack=xnnpack)
        whole.allocate_tensors()
        for det, value in zip(whole.get_input_details(), common.make_inputs(whole.get_input_details(), contract)):
            whole.set_tensor(det["index"], value)
        whole_p50_ms = float(np.median(_time(whole, runs, warmup)))

    it = rows
    if progress:
        from tqdm import tqdm
        it = tqdm(rows, desc=f"per-op {model_path.name}", unit="op")
    for row in it:
        if row["kind"] == "folded":
            row["time_ms"], row["note"] = 0.0, "unpacks constant weights: timed inside the op that reads them"
            continue
        try:
            content, in_ids, _ = single_op_model(model, row["index"])
            interp = common.make_interpreter(model_content=content, threads=threads, xnnpack=xnnpack)
            interp.allocate_tensors()
            for det, tid in zip(interp.get_input_details(), in_ids):
                if tid in values:
                    interp.set_tensor(det["index"], values[tid].astype(det["dtype"]).reshape(det["shape"]))
            samples = _time(interp, runs, warmup)
            row["time_ms"] = float(np.median(samples))
            row["p90_ms"] = float(np.percentile(samples, 90))
            row["delegated"] = any(o["op_name"] == "DELEGATE" for o in interp._get_ops_details())
        except Exception as exc:  # one op that cannot run alone must not hide the other rows
            row["time_ms"], row["error"] = None, f"{type(exc).__name__}: {exc}"
    timed = [r for r in rows if r.get("time_ms") is not None and r["kind"] != "folded"]
    op_sum = sum(r["time_ms"] for r in timed)
    net_sum = sum(max(0.0, r["time_ms"] - overhead) for r in timed)
    for r in timed:
        r["share"] = r["time_ms"] / op_sum if op_sum else 0.0
    return {
        "model": model_path.name, "contract_source": contract_source, "threads": threads,
        "delegate": "xnnpack" if xnnpack else "cpu", "runs": runs, "method": "single-op sub-models",
        "ops": rows, "num_ops": len(rows), "num_timed": len(timed),
        "num_folded": sum(r["kind"] == "folded" for r in rows),
        "total_macs": sum(r["macs"] for r in rows), "total_bytes": sum(r["bytes"] for r in rows),
        "whole_model_p50_ms": whole_p50_ms, "op_sum_ms": op_sum, "invoke_overhead_ms": overhead,
        "ratio_sum_to_whole": op_sum / whole_p50_ms if whole_p50_ms else None,
        # Subtract the per-invoke fixed cost from each op and once from the whole model.
        "ratio_sum_to_whole_net": (net_sum / max(whole_p50_ms - overhead, 1e-9)) if whole_p50_ms else None,
    }


def by_type(result) -> list[dict]:
    agg: dict = {}
    for r in result["ops"]:
        a = agg.setdefault(r["op"], {"op": r["op"], "count": 0, "time_ms": 0.0, "macs": 0, "bytes": 0.0})
        a["count"] += 1
        a["time_ms"] += r.get("time_ms") or 0.0
        a["macs"] += r["macs"]
        a["bytes"] += r["bytes"]
    return sorted(agg.values(), key=lambda a: -a["time_ms"])


def table(result, top: int = 15) -> str:
    rows = sorted(result["ops"], key=lambda r: -(r.get("time_ms") or 0.0))[:top]
    body = common.fmt_table(
        ["#", "op", "output", "shape", "ms", "share", "MMACs", "KB"],
        [(r["index"], r["op"], (r["name"] if len(r["name"]) <= 40 else "…" + r["name"][-39:]), "x".join(map(str, r["shape"])),
          "n/a" if r.get("time_ms") is None else f"{r['time_ms']:.4f}",
          f"{100 * r.get('share', 0):.1f}%", f"{r['macs'] / 1e6:.2f}", f"{r['bytes'] / 1024:.1f}") for r in rows])
    ratio = result["ratio_sum_to_whole"]
    folded = f", {result['num_folded']} weight-unpacking ops timed with their consumers" if result.get("num_folded") else ""
    foot = (f"{result['num_timed']}/{result['num_ops']} ops timed{folded} ({result['method']}, {result['delegate']}, "
            f"{result['threads']} thread(s)); sum {result['op_sum_ms']:.3f} ms vs whole model "
            f"{result['whole_model_p50_ms']:.3f} ms: ratio {ratio:.2f} "
            f"({result['ratio_sum_to_whole_net']:.2f} after subtracting {result['invoke_overhead_ms'] * 1e3:.1f} us "
            f"invoke overhead per op); {result['total_macs'] / 1e6:.2f} MMACs total")
    return body + "\n" + foot


def chart(result, path, top: int = 15) -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tfalign.io import atomic_path
    rows = sorted([r for r in result["ops"] if r.get("time_ms") is not None], key=lambda r: -r["time_ms"])[:top]
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(rows) + 1.2))
    ax.barh(range(len(rows)), [r["time_ms"] for r in rows], color="tab:blue")
    ax.set_yticks(range(len(rows)), [f"#{r['index']} {r['op']}" for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("ms (median, op alone)")
    ax.set_title(f"{result['model']}: top ops; sum/whole = {result['ratio_sum_to_whole']:.2f}", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return str(path)
