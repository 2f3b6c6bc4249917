"""Per-phone latency ESTIMATES from per-op costs, calibrated on published phone figures, with their measured error.

Nothing here is a measurement. The model, fitted separately for each (delegate, precision) group:

    t_ms = Σ_op (a·dense_GMACs + b·depthwise_GMACs + c·MB_moved + d) / S_device

- per-op costs come from ``perop.graph_ops`` (the same code for the user's model and for the references);
- ``S_device`` for CPU groups (LiteRT builtin kernels, XNNPACK) is f_family × (GHz of the fastest big core +
  η × GHz of each further big core a thread runs on) from devices.json, with the parallel efficiency η and one
  factor per CPU family (Android cores vs Apple cores, which do more per clock) fitted per group; for GPU /
  NNAPI / NPU / Core ML it is one speed factor per device, fitted from that device's published rows (the device
  with most rows is the unit);
- a..d ≥ 0 are fitted by bounded least squares (d, the per-op fixed cost, at most MAX_OP_COST) on the relative error against published latencies
  (published.json, transcribed from ../shared/PHONES.md with sources) of reference networks whose per-op costs
  are in workloads.json (bench/calibrate_phones.py); with fewer than 4 distinct reference networks in a group
  only the total-MACs coefficient is fitted;
- the error of the method is the leave-one-out error: each published row is predicted by a model fitted without
  it, and the median / max absolute relative error are reported with every estimate.
"""
from __future__ import annotations

import json
import pathlib

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
FEATURES = ("dense_gmacs", "dw_gmacs", "mbytes", "ops")
CPU_DELEGATES = ("cpu", "xnnpack")
FP16_DELEGATES = ("coreml", "npu")
LABEL = "ESTIMATE"
# Upper bounds on the per-op fixed cost d. The reference networks have similar op counts, so d is poorly
# identified by them alone, and an unbounded d makes models with many small ops look far slower than they are.
# Dispatching one op costs microseconds on a phone CPU and tens of microseconds for a GPU kernel launch:
# CPU d <= 0.03 ms*GHz (about 10 us per op at 3 GHz), other delegates d <= 0.1 ms per op on the reference device.
MAX_OP_COST = {"cpu": 0.03, "other": 0.1}
METHOD = ("linear per-op cost model t = sum_op(a*dense_GMACs + b*depthwise_GMACs + c*MB + d) / S; CPU delegates: "
          "S = f_family * (GHz of the first big core + eta * GHz of each further big core used), f_family fitted per "
          "CPU family (Android / Apple), eta (parallel efficiency) fitted per group; other delegates: S = a "
          "per-device factor fitted to that device's published figures; a..d >= 0 (d bounded by a per-op dispatch prior) fitted by least squares on relative error to published phone latencies "
          "(published.json); error = leave-one-out over those figures, and leave-one-network-family-out (closer to "
          "the error on an unseen architecture)")


def op_features(op: dict, byte_scale: float = 1.0) -> np.ndarray:
    if op.get("kind") == "folded":  # weight unpacking done at init
        return np.zeros(4)
    return np.array([op["macs"] / 1e9 if op["kind"] == "dense" else 0.0,
                     op["macs"] / 1e9 if op["kind"] == "depthwise" else 0.0,
                     byte_scale * op["bytes"] / 1e6, 1.0])


def features(ops, byte_scale: float = 1.0) -> dict:
    """Workload features (sums over ops) as stored in workloads.json."""
    total = sum((op_features(o, byte_scale) for o in ops), np.zeros(4))
    return dict(zip(FEATURES, map(float, total)))


def _load(name):
    return json.loads((HERE / name).read_text(encoding="utf-8"))


def model_precision(ops) -> str:
    """'int8' when the MAC ops run on 8-bit tensors, else 'float' (fp32, or fp16 weights unpacked at init)."""
    mac = [o for o in ops if o["kind"] in ("dense", "depthwise")]
    if mac and sum(o["dtype"] in ("int8", "uint8") for o in mac) * 2 >= len(mac):
        return "int8"
    return "float"


def group_precision(delegate: str, precision: str) -> str:
    if precision == "int8":
        return "int8"
    return "fp16" if delegate in FP16_DELEGATES else "fp32"


ETA_GRID = tuple(np.round(np.arange(0.3, 1.0001, 0.05), 2))


def cpu_speed(device: dict, threads: int, eta: float = 1.0) -> float | None:
    """GHz of the fastest big core plus ``eta`` × the GHz of each further big core a thread runs on (threads
    beyond the big cores add nothing: LiteRT apps pin to big cores)."""
    clocks = sorted((c["ghz"] for c in device.get("big_cores", []) for _ in range(c["count"]) if c.get("ghz")),
                    reverse=True)
    if not clocks:
        return None
    used = clocks[:max(1, int(threads))]
    return float(used[0] + eta * sum(used[1:]))


class Estimator:
    """Fits every (delegate, precision) group once; ``estimate(ops)`` labels each number as an estimate."""

    def __init__(self, devices=None, published=None, workloads=None):
        self.devices = (devices or _load("devices.json"))["devices"]
        pub = published or _load("published.json")
        self.sources = pub.get("sources", {})
        self.workloads = (workloads or _load("workloads.json"))["workloads"]
        self.skipped = []
        self.groups: dict = {}
        for row in pub["rows"]:
            wl = self.workloads.get(row["workload"])
            dev = self.devices.get(row["device"])
            why = None if wl else f"no workload for {row['workload']}"
            if dev is None:
                why = f"device {row['device']} not in devices.json"
            key = (row["delegate"], row["precision"])
            speed = None
            if why is None and row["delegate"] in CPU_DELEGATES:
                speed = cpu_speed(dev, row["threads"] or 1)
                if speed is None:
                    why = f"no clock for {row['device']} in devices.json"
            if why:
                self.skipped.append({**row, "why": why})
                continue
            f = wl["int8" if row["precision"] == "int8" else "fp32"]
            self.groups.setdefault(key, []).append(
                {**row, "x": np.array([f[k] for k in FEATURES]), "speed": speed})
        self.fits = {key: self._fit(rows, key[0]) for key, rows in self.groups.items()}
        self.loo = {key: self._loo(rows, key[0]) for key, rows in self.groups.items()}
        self.lofo = {key: self._lofo(rows, key[0]) for key, rows in self.groups.items()}

    # ------------------------------------------------------------------ fitting
    @staticmethod
    def _mode(rows) -> str:
        """Fewer networks than coefficients cannot pin them down: tie dense and depthwise MACs and drop bytes
        (2-3 networks), and also the per-op cost (1 network)."""
        n = len({r["workload"] for r in rows})
        return "full" if n >= len(FEATURES) else ("macs+ops" if n >= 2 else "macs")

    def _fit(self, rows, delegate) -> dict:
        cpu = delegate in CPU_DELEGATES
        if not cpu:
            return self._fit_eta(rows, delegate, None)
        # Parallel efficiency: extra threads add eta x their clock. Chosen on a grid by the same relative error.
        fits = [self._fit_eta(rows, delegate, eta) for eta in ETA_GRID]
        return min(fits, key=lambda f: f["loss"])

    def _fit_eta(self, rows, delegate, eta) -> dict:
        mode = self._mode(rows)
        x = _reduce(np.array([r["x"] for r in rows]), mode)
        t = np.array([r["latency_ms"] for r in rows], dtype=float)
        cpu = delegate in CPU_DELEGATES
        # Speed factors: per device for accelerators; per CPU family for CPUs (Apple cores do more per GHz).
        keys = [self._scale_key(delegate, r["device"]) for r in rows]
        base = np.array([cpu_speed(self.devices[r["device"]], r["threads"] or 1, eta) if cpu else 1.0
                         for r in rows])
        ref = max(set(keys), key=keys.count)
        scale = {k: 1.0 for k in keys}
        bound = None if mode == "macs" else MAX_OP_COST["cpu" if cpu else "other"]
        for _ in range(50):
            s = base * np.array([scale[k] for k in keys])
            # Divide each equation by its observed time: the fit minimises relative, not absolute, error.
            theta = _bounded_nnls(x / (s * t)[:, None], np.ones(len(rows)), bound)
            pred = x @ theta / base
            change = 0.0
            for k in scale:
                if k != ref:
                    idx = [i for i, kk in enumerate(keys) if kk == k]
                    new = float(np.median(pred[idx] / t[idx]))
                    change = max(change, abs(new - scale[k]) / max(scale[k], 1e-12))
                    scale[k] = new
            if change < 1e-9:
                break
        s = base * np.array([scale[k] for k in keys])
        loss = float(np.sum(((x @ theta) / s / t - 1.0) ** 2))
        return {"theta": _expand(theta, mode), "scale": scale, "reference": ref, "eta": eta, "loss": loss,
                "features": MODES[mode], "rows": len(rows)}

    def _scale_key(self, delegate, device_key) -> str:
        return self.devices[device_key].get("os", "android") if delegate in CPU_DELEGATES else device_key

    def _speed(self, fit, delegate, device_key, threads):
        """Speed of a device in a fitted group, or None when nothing calibrates it."""
        factor = fit["scale"].get(self._scale_key(delegate, device_key))
        if delegate in CPU_DELEGATES:
            base = cpu_speed(self.devices[device_key], threads or 1, fit["eta"])
            # A CPU family without rows in this group (e.g. iOS in the XNNPACK bench) is taken at the unit factor.
            return None if base is None else base * (factor if factor is not None else 1.0)
        return factor

    def _loo(self, rows, delegate) -> list[dict]:
        out = []
        for i, row in enumerate(rows):
            rest = rows[:i] + rows[i + 1:]
            if not rest:
                continue
            key = self._scale_key(delegate, row["device"])
            if not any(self._scale_key(delegate, r["device"]) == key for r in rest):
                continue  # its speed factor would come from this very row
            fit = self._fit(rest, delegate)
            s = self._speed(fit, delegate, row["device"], row["threads"])
            pred = float(row["x"] @ fit["theta"]) / s
            out.append({"workload": row["workload"], "device": row["device"], "threads": row["threads"],
                        "published_ms": row["latency_ms"], "predicted_ms": pred, "src": row["src"],
                        "rel_error": (pred - row["latency_ms"]) / row["latency_ms"]})
        return out

    def _lofo(self, rows, delegate) -> list[dict]:
        """Leave one network FAMILY out: MobileNet v1 variants share their per-op profile, so leaving out one
        row of them says little about an unseen architecture such as a user's model. Each family is predicted
        by a fit on the other families only."""
        out = []
        for fam in sorted({family(r["workload"]) for r in rows}):
            rest = [r for r in rows if family(r["workload"]) != fam]
            if not rest:
                continue
            fit = self._fit(rest, delegate)
            for row in rows:
                if family(row["workload"]) != fam:
                    continue
                s = self._speed(fit, delegate, row["device"], row["threads"])
                if s is None or self._scale_key(delegate, row["device"]) not in fit["scale"]:
                    continue
                pred = float(row["x"] @ fit["theta"]) / s
                out.append({"family": fam, "workload": row["workload"], "device": row["device"],
                            "threads": row["threads"], "published_ms": row["latency_ms"], "predicted_ms": pred,
                            "src": row["src"], "rel_error": (pred - row["latency_ms"]) / row["latency_ms"]})
        return out

    # ------------------------------------------------------------------ reporting
    def error_summary(self, key, device=None, kind="loo") -> dict:
        table = self.loo if kind == "loo" else self.lofo
        errs = [abs(e["rel_error"]) for e in table.get(key, []) if device is None or e["device"] == device]
        if not errs:
            return {"n": 0, "median_abs_pct": None, "max_abs_pct": None}
        return {"n": len(errs), "median_abs_pct": 100 * float(np.median(errs)),
                "max_abs_pct": 100 * float(np.max(errs))}

    def calibration_report(self) -> list[dict]:
        out = []
        for key, rows in sorted(self.groups.items()):
            fit = self.fits[key]
            out.append({"group": f"{key[0]}/{key[1]}", "rows": len(rows),
                        "devices": sorted({r["device"] for r in rows}),
                        "workloads": len({r["workload"] for r in rows}),
                        "sources": sorted({r["src"] for r in rows}),
                        "coefficients": dict(zip(FEATURES, map(float, fit["theta"]))),
                        "fitted_features": fit["features"], "speed_factors": fit["scale"],
                        "speed_factor_reference": fit["reference"], "parallel_efficiency": fit["eta"],
                        "loo": self.error_summary(key), "loo_rows": self.loo[key],
                        "families": sorted({family(r["workload"]) for r in rows}),
                        "leave_family_out": self.error_summary(key, kind="lofo"),
                        "leave_family_out_rows": self.lofo[key]})
        return out

    def estimate(self, ops, devices="all", precision=None) -> list[dict]:
        """Estimates for a model's per-op rows on the chosen devices (keys or names), every available delegate
        with a calibrated group and, for CPU delegates, 1 thread and all big cores (at most 4)."""
        precision = precision or model_precision(ops)
        keys = self._select(devices)
        xs = np.array([op_features(o) for o in ops]) if ops else np.zeros((0, 4))
        out = []
        for dkey in keys:
            dev = self.devices[dkey]
            for delegate in dev["delegates"]:
                gp = group_precision(delegate, precision)
                key = (delegate, gp)
                base = {"label": LABEL, "device": dkey, "device_name": dev["name"], "soc": dev["soc"],
                        "delegate": delegate, "precision": gp}
                if key not in self.fits:
                    out.append({**base, "estimate_ms": None,
                                "why_not": f"no published {delegate}/{gp} figure to calibrate on"})
                    continue
                fit = self.fits[key]
                nbig = sum(c["count"] for c in dev.get("big_cores", []))
                threads = sorted({1, min(4, nbig)}) if delegate in CPU_DELEGATES else [None]
                for th in threads:
                    s = self._speed(fit, delegate, dkey, th)
                    if s is None:
                        why = ("no clock in devices.json" if delegate in CPU_DELEGATES else
                               f"no published {delegate}/{gp} figure for this device to fit its speed factor")
                        out.append({**base, "threads": th, "estimate_ms": None, "why_not": why})
                        continue
                    per_op = xs @ fit["theta"] / s
                    rows_here = [r for r in self.groups[key] if r["device"] == dkey]
                    out.append({
                        **base, "threads": th, "estimate_ms": float(per_op.sum()), "method": METHOD,
                        "extrapolated": not rows_here,
                        "calibration": {
                            "group": f"{delegate}/{gp}", "rows": len(self.groups[key]),
                            "sources": sorted({r["src"] for r in self.groups[key]}),
                            "loo_error": self.error_summary(key),
                            "leave_family_out_error": self.error_summary(key, kind="lofo"),
                            "device_rows": len(rows_here),
                            "device_loo_error": self.error_summary(key, dkey)},
                        "top_op_types": _top_types(ops, per_op),
                    })
        return out

    def _select(self, devices) -> list[str]:
        if devices in (None, "", "all"):
            return list(self.devices)
        wanted = [d.strip() for d in (devices.split(",") if isinstance(devices, str) else devices) if d.strip()]
        keys = []
        for w in wanted:
            hit = [k for k, v in self.devices.items() if w.lower() in (k.lower(), v["name"].lower())]
            if not hit:
                hit = [k for k, v in self.devices.items() if w.lower() in v["name"].lower()]
            if not hit:
                raise ValueError(f"--devices: unknown device {w!r} (known: {', '.join(self.devices)})")
            keys.extend(h for h in hit if h not in keys)
        return keys


MODES = {"full": list(FEATURES), "macs+ops": ["total_gmacs", "ops"], "macs": ["total_gmacs"]}


def _reduce(x: np.ndarray, mode: str) -> np.ndarray:
    if mode == "full":
        return x
    macs = x[:, 0] + x[:, 1]
    return np.stack([macs, x[:, 3]], axis=1) if mode == "macs+ops" else macs[:, None]


def _expand(theta: np.ndarray, mode: str) -> np.ndarray:
    if mode == "full":
        return np.asarray(theta, dtype=float)
    full = np.zeros(len(FEATURES))
    full[0] = full[1] = theta[0]
    if mode == "macs+ops":
        full[3] = theta[1]
    return full


def _bounded_nnls(a, b, bound):
    """min ||a x - b|| with x >= 0 and x[-1] <= bound (the per-op cost is the last column). If the plain NNLS
    optimum breaks the bound, the optimum of this convex problem lies on the face x[-1] = bound, so fix it there
    and solve the rest."""
    from scipy.optimize import nnls
    x, _ = nnls(a, b)
    if bound is None or x[-1] <= bound:
        return x
    xr, _ = nnls(a[:, :-1], b - a[:, -1] * bound)
    return np.append(xr, bound)


def family(workload: str) -> str:
    """mobilenet_v1_0.25_128 → mobilenet_v1; nasnet_mobile_224 → nasnet; mediapipe_face_landmark → mediapipe."""
    parts = workload.split("_")
    return "_".join(parts[:2]) if parts[0] == "mobilenet" else parts[0]


def _top_types(ops, per_op, n: int = 3) -> list[dict]:
    agg: dict = {}
    for o, t in zip(ops, per_op):
        agg[o["op"]] = agg.get(o["op"], 0.0) + float(t)
    total = sum(agg.values()) or 1.0
    return [{"op": k, "share": v / total} for k, v in sorted(agg.items(), key=lambda kv: -kv[1])[:n]]


def table(estimates) -> str:
    from .common import fmt_table

    def err(e, kind="loo_error"):
        c = e.get("calibration")
        if not c:
            return ""
        g = c[kind]
        if not g["n"]:
            return "not validated"
        return f"{g['median_abs_pct']:.0f}% (n={g['n']})"
    rows = [(e["device"], e["delegate"], e.get("threads") or "-", e["precision"],
             "-" if e["estimate_ms"] is None else f"~{e['estimate_ms']:.2f}",
             err(e) if e["estimate_ms"] is not None else e.get("why_not", ""),
             err(e, "leave_family_out_error") if e["estimate_ms"] is not None else "",
             "" if e["estimate_ms"] is None else ("extrapolated" if e["extrapolated"] else
                                                  f"{e['calibration']['device_rows']} own rows"))
            for e in estimates]
    return (f"{LABEL}S (not measurements; method: per-op linear cost model fitted to published phone latencies, "
            "see --json for details)\n" + fmt_table(
                ["device", "delegate", "threads", "precision", "est. ms", "LOO median |err|",
                 "leave-family-out", "basis"], rows))


def chart(estimates, path, title="") -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tfalign.io import atomic_path
    es = [e for e in estimates if e["estimate_ms"] is not None]
    fig, ax = plt.subplots(figsize=(8, 0.25 * len(es) + 1.5))
    for i, e in enumerate(es):
        g = e["calibration"]["loo_error"]
        rel = (g["median_abs_pct"] or 0) / 100
        ax.barh(i, e["estimate_ms"], xerr=[[e["estimate_ms"] * rel / (1 + rel)], [e["estimate_ms"] * rel]],
                color="tab:orange" if e["extrapolated"] else "tab:green", capsize=2)
    ax.set_yticks(range(len(es)), [f"{e['device']} {e['delegate']}{' %dT' % e['threads'] if e.get('threads') else ''}"
                                   for e in es], fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("ESTIMATED ms (whisker: group leave-one-out median error; orange = extrapolated device)")
    ax.set_title(f"ESTIMATE, not measured: {title}", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return str(path)
