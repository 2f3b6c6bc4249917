"""Latency of an exported .tflite on this machine: LiteRT interpreter, XNNPACK on/off × thread counts.

For each setting: init time (interpreter + delegate + tensor allocation), first inference, ``warmup`` further
runs, then ``runs`` timed invocations → p50/p90/p99, and the peak resident-memory growth. Native allocations
(XNNPACK packs weights in C++) are invisible to tracemalloc, so memory is read from the kernel: the peak RSS
(VmHWM) is reset through /proc/self/clear_refs before each setting, or, where that is not allowed, sampled.
"""
from __future__ import annotations

import gc
import os
import pathlib
import threading
import time

from . import common


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class PeakRSS:
    """Peak resident memory growth (MB) over a ``with`` block."""

    def __init__(self):
        self.delta_mb = None
        self.method = None

    def __enter__(self):
        gc.collect()
        try:
            with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
                fh.write("5")  # "5" resets VmHWM to the current RSS (Linux >= 4.0)
            self.method = "VmHWM after clear_refs"
        except OSError:
            self.method = "sampled VmRSS (1 ms)"
        self.base = _status_kb("VmRSS")
        self._peak = self.base or 0
        self._stop = threading.Event()
        if self.method.startswith("sampled") and self.base is not None:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.001):
            self._peak = max(self._peak, _status_kb("VmRSS") or 0)

    def __exit__(self, *exc):
        self._stop.set()
        if self.base is None:
            self.method = "unavailable (no /proc)"
            return False
        if self.method.startswith("VmHWM"):
            self._peak = _status_kb("VmHWM") or self._peak
        else:
            self._thread.join()
            self._peak = max(self._peak, _status_kb("VmRSS") or 0)
        self.delta_mb = max(0, self._peak - self.base) / 1024.0
        return False


def measure(model_path, *, threads: int, xnnpack: bool, runs: int, warmup: int, contract=None) -> dict:
    """One setting → a benchmark.schema.json ``results`` entry (plus ``samples_ms``)."""
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        interp = common.make_interpreter(model_path, threads=threads, xnnpack=xnnpack)
        interp.allocate_tensors()
        init_ms = (time.perf_counter() - t0) * 1e3
        details = interp.get_input_details()
        for det, value in zip(details, common.make_inputs(details, contract)):
            interp.set_tensor(det["index"], value)
        t0 = time.perf_counter()
        interp.invoke()
        first_ms = (time.perf_counter() - t0) * 1e3
        for _ in range(warmup):
            interp.invoke()
        samples = []
        for _ in range(runs):
            t0 = time.perf_counter_ns()
            interp.invoke()
            samples.append((time.perf_counter_ns() - t0) / 1e6)
        delegated = any(op["op_name"] == "DELEGATE" for op in interp._get_ops_details())
    del interp
    res = {"runtime": "litert-python", "runtime_version": common.runtime_version(),
           "delegate": "xnnpack" if xnnpack else "cpu", "threads": threads, "warmup_runs": warmup, "runs": runs,
           "init_ms": init_ms, "first_ms": first_ms, **common.percentiles(samples),
           "peak_memory_mb": mem.delta_mb, "memory_method": mem.method, "samples_ms": samples}
    if xnnpack and not delegated:
        res["note"] = "XNNPACK requested but no op was delegated (unsupported op types): builtin kernels ran"
    return res


def profile(model_path, *, threads=(1, 2, 4), xnnpack=(True, False), runs: int = 50, warmup: int = 5,
            progress: bool = True) -> dict:
    """All settings for one model → a benchmark.schema.json document (validated) with host extras."""
    model_path = common.check_model_path(model_path)
    if runs < 1:
        raise ValueError(f"--runs must be >= 1, got {runs}")
    if warmup < 0:
        raise ValueError(f"--warmup must be >= 0, got {warmup}")
    contract, contract_source = common.load_contract(model_path)
    settings = [(x, t) for x in xnnpack for t in threads]
    it = settings
    if progress:
        from tqdm import tqdm
        it = tqdm(settings, desc=f"host {model_path.name}", unit="setting")
    results = [measure(model_path, threads=t, xnnpack=x, runs=runs, warmup=warmup, contract=contract)
               for x, t in it]
    interp = common.make_interpreter(model_path, threads=1, xnnpack=False)
    ins = [{"name": d["name"], "shape": [int(s) for s in d["shape"]], "dtype": d["dtype"].__name__,
            "quantization": list(d["quantization"])} for d in interp.get_input_details()]
    doc = {"format_version": 1, "created": common.now_iso(), "tool": {"name": "tfalign.profile (host)"},
           "device": common.host_device(),
           "model": {"file": model_path.name, "sha256": common.sha256_file(model_path),
                     "size_bytes": model_path.stat().st_size,
                     **({"contract": pathlib.Path(contract_source).name} if contract else {})},
           "results": results, "contract_source": contract_source, "inputs": ins,
           "host_cpu_count": os.cpu_count()}
    note = common.int8_timing_note(doc["device"]["cpu_features"])
    if note:  # the model is parsed only on hosts the note is for
        from . import perop, phones
        if phones.model_precision(perop.graph_ops(perop.read_model(model_path.read_bytes()))) == "int8":
            doc["int8_note"] = note
    common.validate_benchmark(doc, f"host profile of {model_path}")
    return doc


def table(doc) -> str:
    rows = [(r["delegate"], r["threads"], f"{r['p50_ms']:.3f}", f"{r['p90_ms']:.3f}", f"{r['p99_ms']:.3f}",
             f"{r['init_ms']:.1f}", "-" if r.get("peak_memory_mb") is None else f"{r['peak_memory_mb']:.1f}")
            for r in doc["results"]]
    size = doc["model"]["size_bytes"]
    head = f"{doc['model']['file']}  {size / 1024:.1f} KB  on {doc['device']['soc']}  ({doc['contract_source']})"
    note = f"\nnote: {doc['int8_note']}" if doc.get("int8_note") else ""
    return head + "\n" + common.fmt_table(
        ["delegate", "threads", "p50 ms", "p90 ms", "p99 ms", "init ms", "peak MB"], rows) + note


def chart(doc, path) -> str:
    """Bar chart of p50 per setting with p90 whiskers, written atomically as PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tfalign.io import atomic_path
    res = doc["results"]
    labels = [f"{r['delegate']}\n{r['threads']}T" for r in res]
    p50 = [r["p50_ms"] for r in res]
    err = [[0] * len(res), [r["p90_ms"] - r["p50_ms"] for r in res]]
    fig, ax = plt.subplots(figsize=(max(4, 0.9 * len(res) + 2), 3.5))
    ax.bar(range(len(res)), p50, yerr=err, capsize=3,
           color=["tab:blue" if r["delegate"] == "xnnpack" else "tab:gray" for r in res])
    ax.set_xticks(range(len(res)), labels)
    ax.set_ylabel("latency ms (bar p50, whisker p90)")
    ax.set_title(f"{doc['model']['file']} on host", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return str(path)
