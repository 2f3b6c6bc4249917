"""Build the model contract (``schemas/contract.schema.json``) from the architecture's InputSpec and the exported
model's own tensors, so that the JSON cannot disagree with the file it describes.

The input and crop come from ``config.input`` (the numbers training and evaluation used); tensor names, indices,
shapes, dtypes and quantization parameters are read back from the exported model. Validation lives in the core
(``tfalign.runtime.validate_contract``) because every client validates the same way.
"""
from __future__ import annotations

import numpy as np

import tfalign
from tfalign.losses import scheme_slices
from tfalign.runtime import validate_contract
from tfalign.schemes import get_scheme

FORMAT_VERSION = "1.0"
BOX_DESCRIPTION = ("tight bounding box (x, y, w, h) of the scheme's points, 0-based pixels with pixel centres at "
                   "integers; map a detector box to it first (tfalign.detect)")


def scheme_block(schemes) -> dict:
    """``scheme`` for one markup, or several concatenated (names joined with '+', ``parts`` give the ranges)."""
    parts = scheme_slices(schemes)
    names = []
    for name, _, _ in parts:
        sch = get_scheme(name)
        prefix = f"{sch.name}:" if len(parts) > 1 else ""
        names.extend(prefix + p for p in sch.point_names)
    block = {"name": "+".join(get_scheme(n).name for n, _, _ in parts), "num_points": len(names),
             "point_names": names}
    if len(parts) > 1:
        block["parts"] = [{"name": get_scheme(n).name, "start": a, "stop": b} for n, a, b in parts]
    return block


def crop_block(input_spec) -> dict:
    from tfalign.data import geometry

    return {"box": "landmarks_tight", "box_description": BOX_DESCRIPTION, "scale": float(input_spec.crop_scale),
            "shift_x": float(input_spec.shift_x), "shift_y": float(input_spec.shift_y),
            "interpolation": "bilinear", "border": float(geometry.PAD_VALUE)}


def _input_base(input_spec) -> dict:
    return {"height": int(input_spec.height), "width": int(input_spec.width), "channels": int(input_spec.channels),
            "color": input_spec.color, "mean": float(input_spec.mean), "std": float(input_spec.std)}


def _quant(detail: dict) -> dict:
    scale, zero = detail["quantization"]
    if np.dtype(detail["dtype"]).name in ("int8", "uint8"):
        return {"scale": float(scale), "zero_point": int(zero)}
    return {}


def tflite_contract(input_spec, model_bytes: bytes, model_info: dict) -> dict:
    """Contract of a ``.tflite`` model; ``model_info`` fills the informative ``model`` block (name, file...)."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=model_bytes)
    ins, outs = interp.get_input_details(), interp.get_output_details()
    if len(ins) != 1 or len(outs) != 1:
        raise ValueError(f"exported model has {len(ins)} inputs and {len(outs)} outputs; the landmark "
                         "inference model must have exactly one of each")
    inp, out = ins[0], outs[0]
    contract = _assemble(input_spec, {**model_info, "format": "tflite"},
                         {"name": inp["name"], "index": 0, "shape": [int(d) for d in inp["shape"]],
                          "dtype": np.dtype(inp["dtype"]).name, "normalization": "client", **_quant(inp)},
                         {"name": out["name"], "index": 0, "shape": [int(d) for d in out["shape"]],
                          "dtype": np.dtype(out["dtype"]).name, **_quant(out)})
    return validate_contract(contract, model_info.get("file", "contract"))


def coreml_contract(input_spec, input_name: str, output_name: str, output_shape, model_info: dict) -> dict:
    """Contract of an ``.mlpackage``: an image input that applies mean/std itself (``normalization: model``)."""
    h, w, c = int(input_spec.height), int(input_spec.width), int(input_spec.channels)
    contract = _assemble(input_spec, {**model_info, "format": "mlpackage"},
                         {"name": input_name, "shape": [1, h, w, c], "dtype": "uint8", "normalization": "model"},
                         {"name": output_name, "shape": [int(d) for d in output_shape], "dtype": "float32"})
    return validate_contract(contract, model_info.get("file", "contract"))


def output_schemes(schemes, num_points: int) -> tuple:
    """The leading markups of ``schemes`` whose points the landmark output carries: an inference model gives the
    primary markup only (``tfalign.models.base``), e.g. the 68 points of a (68, 5) DeCaFA."""
    total = 0
    for i, name in enumerate(schemes):
        total += get_scheme(name).num_points
        if total == num_points:
            return tuple(schemes[:i + 1])
    return tuple(schemes)  # no prefix matches: validate_contract names the mismatch


def _assemble(input_spec, model_info: dict, inp: dict, out: dict) -> dict:
    return {
        "format_version": FORMAT_VERSION,
        "model": {"tfalign_version": tfalign.__version__, **model_info},
        "scheme": scheme_block(output_schemes(input_spec.schemes, int(out["shape"][-2]))),
        "input": {**_input_base(input_spec), **inp},
        "crop": crop_block(input_spec),
        "outputs": [{"kind": "landmarks", **out, "layout": "xy_normalized", "origin": "edge"}],
    }
