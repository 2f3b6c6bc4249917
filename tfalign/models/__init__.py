"""Architectures. Each module registers itself with ``tfalign.models.base``; importing this package loads all."""
import importlib

from tfalign.models.base import (Architecture, InputSpec, TrainSpec, get_architecture, list_models,  # noqa: F401
                                 register_architecture, register_preset, resolve)

# One module per architecture; a module that is not written yet is simply absent.
for _name in ("mobile_two_stage", "pipnet", "decafa", "dense_unet", "pose_tree_moe"):
    try:
        importlib.import_module(f"tfalign.models.{_name}")
    except ModuleNotFoundError as _exc:
        if _exc.name != f"tfalign.models.{_name}":
            raise
