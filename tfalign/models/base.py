"""What every architecture gives the trainer, evaluator and exporter, and the registry that finds it.

An architecture is a class registered with :func:`register_architecture`. It has a config dataclass with the
paper's defaults (including an ``input: InputSpec`` and a ``train: TrainSpec``) and three methods:

* ``build(config) -> keras.Model``: a *functional* model (tfmot needs functional models) taking the normalised
  image ``[B, H, W, C]`` and returning a dict of outputs. ``outputs["landmarks"]`` is ``[B, N, 2]``: (x, y)
  normalised to the crop, origin at the crop's top-left edge (``u = (x_pixel + 0.5) / W``). N is the sum of the
  points of ``config.input.schemes`` in order.
* ``loss(config, outputs, batch) -> (total, {name: scalar})``: ``batch`` is a dict with ``image``, ``points``
  ``[B, N, 2]`` (same normalisation as ``landmarks``), ``mask`` ``[B, N]`` (1 where the point is annotated),
  and any extras the input spec asks for (``pose``, ``image2``/``points2``/``affine`` for paired views).
* ``inference_model(config, model) -> keras.Model``: single input, single output: the landmarks of the primary
  markup ``config.input.schemes[0]`` ([B, N0, 2], normalised), for export. The contract's scheme is that markup.

Presets (``pipnet_r18``, ``mobile_two_stage``...) map a user-facing name to (architecture, config overrides).
The trainer, evaluator and exporter only talk to this interface: no per-model special cases anywhere else.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Optional

from tfalign import config as cfg_lib


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """What the model eats; the same numbers drive training, evaluation, export metadata and the apps.

    ``x = (pixel_0_255 - mean) / std``; the square crop has side ``crop_scale * max(w, h)`` of the tight box of the
    scheme's points, centred at the box centre shifted by (shift_x, shift_y) * side.
    """
    height: int = 256
    width: int = 256
    channels: int = 3  # 1 = grayscale
    mean: float = 127.5
    std: float = 127.5
    crop_scale: float = 1.25
    shift_x: float = 0.0
    shift_y: float = 0.0
    schemes: tuple = ("300w_68",)  # markups predicted, concatenated in this order
    pair: bool = False  # two augmented views of each face per sample (coherent / consistency losses)
    extras: tuple = ()  # extra labels needed, e.g. ("pose",)

    def __post_init__(self):
        if self.height <= 0 or self.width <= 0:
            raise ValueError(f"input size must be positive, got {self.height}x{self.width}")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 (gray) or 3 (RGB), got {self.channels}")
        if self.std <= 0:
            raise ValueError(f"std must be > 0, got {self.std}")
        if self.crop_scale <= 0:
            raise ValueError(f"crop_scale must be > 0, got {self.crop_scale}")
        if not self.schemes:
            raise ValueError("schemes must name at least one landmark scheme")

    @property
    def num_points(self) -> int:
        from tfalign.schemes import get_scheme
        return sum(get_scheme(s).num_points for s in self.schemes)

    @property
    def color(self) -> str:
        return "GRAY" if self.channels == 1 else "RGB"


@dataclasses.dataclass(frozen=True)
class TrainSpec:
    """Optimisation defaults from the paper. ``schedule``: constant | step | poly | cosine.

    ``step``: multiply the rate by ``decay`` at each epoch in ``milestones``; ``poly``: (1 - t/T) ** power.
    """
    batch_size: int = 16
    epochs: int = 60
    optimizer: str = "adam"  # adam | nadam | sgd | rmsprop | adamw
    learning_rate: float = 1e-4
    schedule: str = "step"
    milestones: tuple = (30, 50)
    decay: float = 0.1
    power: float = 0.9
    momentum: float = 0.9
    weight_decay: float = 0.0
    clip_norm: Optional[float] = None

    def __post_init__(self):
        if self.optimizer not in ("adam", "nadam", "sgd", "rmsprop", "adamw"):
            raise ValueError(f"unknown optimizer '{self.optimizer}' (adam, nadam, sgd, rmsprop, adamw)")
        if self.schedule not in ("constant", "step", "poly", "cosine"):
            raise ValueError(f"unknown schedule '{self.schedule}' (constant, step, poly, cosine)")
        if self.batch_size <= 0 or self.epochs <= 0 or self.learning_rate <= 0:
            raise ValueError("batch_size, epochs and learning_rate must be > 0")


class Architecture:
    """Base class; subclasses set ``name`` and ``config_class`` and implement ``build`` and ``loss``."""

    name: str = ""
    config_class: type = None

    def default_config(self):
        return self.config_class()

    def build(self, config):  # -> keras.Model
        raise NotImplementedError

    def loss(self, config, outputs: dict, batch: dict):
        raise NotImplementedError

    def distill_loss(self, config, key: str, student, teacher):
        """How a pruned student matches its teacher on output ``key`` (``quantization.distill``): a scalar tensor,
        zero when they agree, or None for the generic term (mean squared difference). Architectures override it
        for outputs whose meaning the generic term misses, e.g. per-cell sigmoid heatmaps."""
        return None

    def inference_model(self, config, model):
        from tfalign._keras import keras
        return keras.Model(model.inputs, model.outputs[0] if not isinstance(model.output, dict)
                           else model.output["landmarks"], name=f"{model.name}_landmarks")

    def config_from_dict(self, data: dict, where: str = "config"):
        return cfg_lib.from_dict(self.config_class, data, where)


_ARCHITECTURES: dict[str, Architecture] = {}
_PRESETS: dict[str, tuple[str, dict[str, Any], str]] = {}


def register_architecture(cls):
    """Class decorator: ``@register_architecture class PIPNet(Architecture): name = "pipnet" ...``."""
    inst = cls()
    if not inst.name or inst.config_class is None:
        raise TypeError(f"{cls.__name__} must set name and config_class")
    _ARCHITECTURES[inst.name] = inst
    return cls


def register_preset(name: str, architecture: str, overrides: Optional[dict] = None, description: str = ""):
    """A user-facing model name: an architecture plus config overrides (dotted keys for nested fields)."""
    _PRESETS[name] = (architecture, dict(overrides or {}), description)


def _ensure_loaded():
    # Importing the package modules runs their registrations.
    import tfalign.models  # noqa: F401


def get_architecture(name: str) -> Architecture:
    _ensure_loaded()
    if name not in _ARCHITECTURES:
        raise KeyError(f"unknown architecture '{name}'; known: {', '.join(sorted(_ARCHITECTURES))}")
    return _ARCHITECTURES[name]


def list_models() -> dict[str, str]:
    """Preset and architecture names with one-line descriptions."""
    _ensure_loaded()
    out = {n: d for n, (_, _, d) in _PRESETS.items()}
    for n in _ARCHITECTURES:
        out.setdefault(n, f"architecture {n} with paper defaults")
    return dict(sorted(out.items()))


def resolve(name: str, config_data: Optional[dict] = None, where: str = "config"):
    """Model name (preset or architecture) + optional config dict → (Architecture, config)."""
    _ensure_loaded()
    if name in _PRESETS:
        arch_name, overrides, _ = _PRESETS[name]
    elif name in _ARCHITECTURES:
        arch_name, overrides = name, {}
    else:
        raise KeyError(f"unknown model '{name}'; known: {', '.join(list_models())}")
    arch = _ARCHITECTURES[arch_name]
    config = arch.config_from_dict(config_data, where) if config_data else arch.default_config()
    if overrides and not config_data:
        config = cfg_lib.replace(config, **overrides)
    return arch, config


#: Shipped trained weights: ``tfalign/weights/<preset>/`` (``config.json`` + ``weights.npz``, written by
#: :func:`save_weights_folder`), for any architecture.
WEIGHTS_ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "weights")


WEIGHTS_FILE = "weights.npz"
CONFIG_FILE = "config.json"


def save_weights_folder(model, config, folder: str, dtype: str = "float16") -> str:
    """Write ``config.json`` + ``weights.npz`` (weights in model order, as ``dtype``) atomically into ``folder``.

    The format of the shipped weights: small (float16 halves them), loadable without TensorFlow's checkpoint
    machinery, and rebuilt by :func:`load_weights_folder` from the config alone.
    """
    import numpy as np
    from tfalign.io import atomic_path, atomic_write_json

    if dtype not in ("float16", "float32"):
        raise ValueError(f"dtype must be float16 or float32, got '{dtype}'")
    os.makedirs(folder, exist_ok=True)
    with atomic_path(os.path.join(folder, WEIGHTS_FILE)) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **{f"w{i:03d}": np.asarray(w, dtype) for i, w in enumerate(model.get_weights())})
    atomic_write_json(os.path.join(folder, CONFIG_FILE), cfg_lib.to_dict(config))
    return folder


def load_weights_folder(arch: "Architecture", folder: str, what: str = ""):
    """``(keras.Model, config)`` from a folder written by :func:`save_weights_folder`; errors name the file."""
    import numpy as np

    what = what or arch.name
    cfg_path, w_path = os.path.join(folder, CONFIG_FILE), os.path.join(folder, WEIGHTS_FILE)
    for path in (cfg_path, w_path):
        if not os.path.isfile(path):
            raise ValueError(f"{path}: pretrained {what} file not found")
    config = arch.config_from_dict(cfg_lib.load_json(cfg_path), cfg_path)
    model = arch.build(config)
    with np.load(w_path) as data:
        weights = [data[k].astype(np.float32) for k in sorted(data.files)]
    expected = model.get_weights()
    if len(weights) != len(expected) or any(a.shape != b.shape for a, b in zip(weights, expected)):
        raise ValueError(f"{w_path}: weights do not match the model built from {cfg_path} "
                         f"({len(weights)} arrays for {len(expected)} model weights)")
    model.set_weights(weights)
    return model, config


def pretrained_folder(name: str, root: Optional[str] = None) -> Optional[str]:
    """``root/<name>`` when trained weights for model ``name`` ship there, else None."""
    resolve(name)  # unknown names fail here, naming the known ones
    folder = os.path.join(root or WEIGHTS_ROOT, name)
    return folder if os.path.isfile(os.path.join(folder, WEIGHTS_FILE)) else None


def load_pretrained(name: str, root: Optional[str] = None):
    """The shipped trained model ``name``: ``(arch, config, keras model)``; ValueError when none ships."""
    folder = pretrained_folder(name, root)
    if folder is None:
        shipped = [n for n in list_models() if n in _PRESETS and pretrained_folder(n, root)]
        raise ValueError(f"model '{name}': no trained weights ship in {os.path.join(root or WEIGHTS_ROOT, name)} "
                         f"(models with shipped weights: {', '.join(shipped) or 'none'}); train one "
                         "(python -m tfalign.train --model NAME --out DIR) and load DIR instead")
    arch, _ = resolve(name)
    model, config = load_weights_folder(arch, folder, name)
    return arch, config, model
