"""What a training run is: model + full config + data + seed + ..., stored in ``DIR/config.json``.

The config a run trains with is built in one order: the preset's (or architecture's) paper defaults, then the
``--config`` JSON file (partial: only the fields it names change), then every ``--set key=value`` (dotted keys,
values parsed as JSON where they parse, else taken as strings), then the dedicated flags (``--epochs``,
``--batch-size``). The *full* resulting config is stored, so ``resolve(model, stored_config)`` rebuilds it exactly,
whatever the presets say later.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import os
import platform
import sys
from typing import Optional

from tfalign import config as cfg_lib


@dataclasses.dataclass
class RunSettings:
    model: str
    config: dict
    data: list
    val: list
    epochs: int
    batch_size: int
    seed: int = 0
    steps_per_epoch: Optional[int] = None
    strategy: str = "default"
    skip_bad: bool = False  # go on past unreadable records (listed in config.json) instead of stopping
    init: Optional[str] = None  # starting weights (fine-tuning): 'pretrained', a run or weights folder, a .h5 file

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict, where: str) -> "RunSettings":
        names = {f.name for f in dataclasses.fields(cls)}
        try:
            return cls(**{k: v for k, v in data.items() if k in names})
        except TypeError as exc:
            raise ValueError(f"{where}: not a tfalign run description ({exc})") from None


def resolve_model(name: str, config_data: Optional[dict] = None):
    """``tfalign.models.resolve`` with the trainer's test architecture registered too; errors as ValueError."""
    from tfalign.models.base import resolve
    from tfalign.training import testing  # noqa: F401  (registers tiny_test)
    try:
        return resolve(name, config_data)
    except KeyError as exc:
        raise ValueError(f"--model: {exc.args[0]}") from None


def build_config(model: str, config_file: Optional[str] = None, sets=(), **train_overrides):
    """(arch, config, full config dict) for ``model`` with the file, ``--set`` and flag overrides applied."""
    arch, config = resolve_model(model)
    data = cfg_lib.to_dict(config)
    if config_file:
        _merge(data, cfg_lib.load_json(config_file), where=config_file)
    apply_sets(data, sets)
    for key, value in train_overrides.items():
        if value is not None:
            data.setdefault("train", {})[key] = value
    config = arch.config_from_dict(data, where=f"config of model '{model}'")
    return arch, config, _jsonable(cfg_lib.to_dict(config))


def apply_sets(data: dict, sets) -> dict:
    """Apply ``--set key=value`` items (dotted keys, JSON values) to a config dict in place; returns it."""
    for item in sets:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set {item!r}: expected key=value, e.g. --set train.learning_rate=1e-3")
        _set_dotted(data, key.strip(), _parse_value(raw), where=f"--set {item}")
    return data


def versions() -> dict:
    from importlib import metadata

    import tfalign
    out = {"tfalign": tfalign.__version__, "python": sys.version.split()[0], "platform": platform.platform()}
    for dist in ("tensorflow", "tf-keras", "numpy", "opencv-python-headless", "ai-edge-litert"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    out["cpu"] = cpu_info()
    return out


# XNNPACK picks its kernels by these at run time: the same .tflite measured 1.40x faster in int8 than in float32 on
# one of this workplace's hosts and 0.78x on another with the same packages, so a timing is only comparable with
# timings from the same CPU.
_ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni",
              "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16", "asimd", "asimddp", "i8mm", "sve")


def cpu_info(cpuinfo: str = "/proc/cpuinfo") -> dict:
    """The CPU timings ran on: model name, family/model/stepping, cores and the SIMD features XNNPACK dispatches on.

    Linux only (reads ``cpuinfo``); elsewhere the platform module's processor string and core count.
    """
    info = {"model_name": platform.processor() or platform.machine(), "cores": os.cpu_count()}
    try:
        with open(cpuinfo) as f:
            text = f.read()
    except OSError:
        return info
    first = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip()
        if not sep:
            if first:
                break  # one processor's block is enough: the cores of a VM are alike
            continue
        first.setdefault(key, value.strip())
    name = first.get("model name") or first.get("Model") or first.get("CPU part")
    if name:
        info["model_name"] = name
    ident = [first[k] for k in ("cpu family", "model", "stepping") if k in first]
    if ident:
        info["family_model_stepping"] = "/".join(ident)
    flags = set((first.get("flags") or first.get("Features") or "").split())
    info["isa"] = [f for f in _ISA_FLAGS if f in flags]
    return info


def _parse_value(raw: str):
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _merge(base: dict, extra: dict, where: str, path: str = "") -> None:
    if not isinstance(extra, dict):
        raise ValueError(f"{where}: {path or 'config'} must be a JSON object, got {type(extra).__name__}")
    for key, value in extra.items():
        full = f"{path}.{key}" if path else key
        if key not in base:
            raise ValueError(f"{where}: unknown config field '{full}'; valid here: {sorted(base)}")
        if isinstance(base[key], dict) and isinstance(value, dict):
            _merge(base[key], value, where, full)
        else:
            base[key] = copy.deepcopy(value)


def _set_dotted(data: dict, key: str, value, where: str) -> None:
    node, parts = data, key.split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, dict) or part not in node:
            valid = sorted(node) if isinstance(node, dict) else []
            raise ValueError(f"{where}: unknown config field '{'.'.join(parts[:i + 1])}'; valid here: {valid}")
        if i == len(parts) - 1:
            node[part] = value
        else:
            node = node[part]


def _jsonable(obj):
    """Tuples → lists so the stored JSON equals what ``json.load`` gives back."""
    return json.loads(json.dumps(obj))
