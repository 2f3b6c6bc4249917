"""Run an exported ``.tflite`` landmark model from its contract JSON alone.

This is the reference client of the model contract (``schemas/contract.schema.json``): it knows nothing about
architectures, only what the contract says — the crop to cut from a face box, the pixel normalisation, the input
quantization, which output holds the landmarks and how to dequantize and un-normalise it. The evaluator,
``python -m tfalign.predict`` and the apps follow the same steps:

1. box (x, y, w, h) → square crop: side = ``crop.scale`` × max(w, h), centre = box centre + (shift_x, shift_y) ×
   side (``tfalign.data.geometry``);
2. resample the crop to ``input.height`` × ``input.width`` (``crop.interpolation``, bilinear; black outside the
   image), converted to gray when ``input.color`` is ``GRAY``;
3. ``x = (pixel_0_255 - mean) / std``; for a quantized input ``q = round(x / scale) + zero_point`` (clipped to the dtype);
4. invoke; dequantize the landmark output ``(q - zero_point) * scale``;
5. ``xy_normalized`` with origin ``edge`` → crop pixels ``u * W - 0.5`` → image pixels.

Only ``ai_edge_litert`` (LiteRT), NumPy and OpenCV (through ``geometry``) are imported: no TensorFlow, no
exporter code.
"""
from __future__ import annotations

import json
import os
import pathlib
import types
from typing import Optional, Sequence

import numpy as np

from tfalign.data import geometry

CONTRACT_SUFFIX = ".contract.json"
METADATA_NAME = "tfalign_contract"  # name of the flatbuffer metadata entry holding the contract JSON
SCHEMA_PATH = pathlib.Path(__file__).resolve().parents[1] / "schemas" / "contract.schema.json"

_NP_DTYPES = {"float32": np.float32, "int8": np.int8, "uint8": np.uint8, "float16": np.float16}


def contract_path_for(model_path: str) -> str:
    """``model.tflite`` → ``model.contract.json`` (the contract always sits beside its model)."""
    root, _ = os.path.splitext(os.fspath(model_path))
    return root + CONTRACT_SUFFIX


def _schema() -> dict:
    with open(SCHEMA_PATH, encoding="utf-8") as fh:
        return json.load(fh)


def validate_contract(contract: dict, where: str = "contract") -> dict:
    """Check ``contract`` against the versioned JSON Schema; ValueError names the first bad field."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(_schema())
    errors = sorted(validator.iter_errors(contract), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        path = "/".join(str(p) for p in err.absolute_path) or "(top level)"
        raise ValueError(f"{where}: invalid model contract at {path}: {err.message}")
    # Facts the schema cannot express: point names match the count, the landmark output has N points.
    n = contract["scheme"]["num_points"]
    if len(contract["scheme"]["point_names"]) != n:
        raise ValueError(f"{where}: scheme.point_names has {len(contract['scheme']['point_names'])} names "
                         f"for num_points={n}")
    out = landmark_output(contract, where)
    if out["shape"][-2:] != [n, 2]:
        raise ValueError(f"{where}: landmark output shape {out['shape']} does not end in [{n}, 2]")
    if out["dtype"] != "float32" and ("scale" not in out or "zero_point" not in out):
        raise ValueError(f"{where}: quantized landmark output ({out['dtype']}) needs scale and zero_point")
    inp = contract["input"]
    if inp["dtype"] in ("int8", "uint8") and inp.get("normalization", "client") == "client" \
            and ("scale" not in inp or "zero_point" not in inp):
        raise ValueError(f"{where}: quantized input ({inp['dtype']}) needs scale and zero_point")
    return contract


def landmark_output(contract: dict, where: str = "contract") -> dict:
    outs = [o for o in contract.get("outputs", []) if o.get("kind") == "landmarks"]
    if len(outs) != 1:
        raise ValueError(f"{where}: expected exactly one output of kind 'landmarks', found {len(outs)}")
    return outs[0]


def load_contract(path: str) -> dict:
    """Read and validate a contract JSON file (ValueError naming the file on any problem)."""
    from tfalign.config import load_json

    if not os.path.isfile(path):
        raise ValueError(f"{path}: model contract not found (it is written beside every exported model)")
    return validate_contract(load_json(path), path)


def read_tflite_metadata(model_bytes: bytes, name: str = METADATA_NAME) -> Optional[bytes]:
    """The bytes of metadata entry ``name`` embedded in a ``.tflite`` flatbuffer, or None."""
    from ai_edge_litert import schema_py_generated as schema

    buf = bytearray(model_bytes)
    model = schema.Model.GetRootAs(buf, 0)
    for i in range(model.MetadataLength()):
        meta = model.Metadata(i)
        if meta.Name() is not None and meta.Name().decode("utf-8") == name:
            buffer = model.Buffers(meta.Buffer())
            if buffer.Offset() > 1:  # large models keep buffers after the flatbuffer, addressed by offset
                return bytes(buf[buffer.Offset(): buffer.Offset() + buffer.Size()])
            return buffer.DataAsNumpy().tobytes() if buffer.DataLength() else b""
    return None


def contract_spec(contract: dict) -> types.SimpleNamespace:
    """The contract's input and crop as the attribute set ``tfalign.data.geometry`` reads from an InputSpec."""
    inp, crop = contract["input"], contract["crop"]
    if crop.get("interpolation", "bilinear") != "bilinear":
        raise ValueError(f"crop.interpolation '{crop['interpolation']}' is not supported; tfalign crops bilinearly")
    return types.SimpleNamespace(height=inp["height"], width=inp["width"], channels=inp["channels"],
                                 mean=inp["mean"], std=inp["std"], crop_scale=crop["scale"],
                                 shift_x=crop.get("shift_x", 0.0), shift_y=crop.get("shift_y", 0.0))


class LandmarkModel:
    """A ``.tflite`` landmark model driven by its contract.

    Args:
        model_path: the ``.tflite`` file.
        contract: the contract dict, or None to read ``<model>.contract.json`` beside it.
        num_threads: LiteRT CPU threads.
    """

    def __init__(self, model_path: str, contract: Optional[dict] = None, num_threads: int = 1):
        from ai_edge_litert.interpreter import Interpreter

        self.model_path = os.fspath(model_path)
        if not os.path.isfile(self.model_path):
            raise ValueError(f"{self.model_path}: model file not found")
        cpath = contract_path_for(self.model_path)
        self.contract = (validate_contract(contract, "contract") if contract is not None
                         else load_contract(cpath))
        try:
            self.interpreter = Interpreter(model_path=self.model_path, num_threads=num_threads)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ValueError(f"{self.model_path}: LiteRT cannot load this model ({exc})") from None
        self.spec = contract_spec(self.contract)
        inp = self.contract["input"]
        self._in = self.interpreter.get_input_details()[inp.get("index", 0)]
        out = landmark_output(self.contract)
        self._out = self.interpreter.get_output_details()[out["index"]]
        expect = [1, inp["height"], inp["width"], inp["channels"]]
        if list(self._in["shape"]) != expect:
            raise ValueError(f"{cpath}: contract input {expect} does not match the model's {list(self._in['shape'])}")
        if np.dtype(self._in["dtype"]).name != inp["dtype"]:
            raise ValueError(f"{cpath}: contract input dtype {inp['dtype']} but the model takes "
                             f"{np.dtype(self._in['dtype']).name}")

    @property
    def input_size(self) -> tuple:
        return self.contract["input"]["height"], self.contract["input"]["width"]

    def preprocess(self, image: np.ndarray, box: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
        """uint8 RGB (or gray) image + face box → (normalised crop [H, W, C] float32, 2×3 image→crop affine)."""
        return geometry.preprocess(image, box, self.spec)

    def run_normalized(self, x: np.ndarray) -> np.ndarray:
        """Invoke on one normalised crop [H, W, C] → landmarks [N, 2] (xy normalised, edge origin), dequantized."""
        inp = self.contract["input"]
        x = np.asarray(x, np.float32).reshape(self._in["shape"])
        dtype = _NP_DTYPES[inp["dtype"]]
        if inp["dtype"] in ("int8", "uint8"):
            info = np.iinfo(dtype)
            x = np.clip(np.round(x / inp["scale"]) + inp["zero_point"], info.min, info.max)
        self.interpreter.set_tensor(self._in["index"], x.astype(dtype))
        self.interpreter.invoke()
        return dequantize_landmarks(self.interpreter.get_tensor(self._out["index"]), landmark_output(self.contract))

    def predict(self, image: np.ndarray, box: Sequence[float]) -> np.ndarray:
        """Landmarks [N, 2] in image pixels (0-based, pixel centres at integers) for the face in ``box``."""
        x, affine = self.preprocess(image, box)
        points = self.run_normalized(x)
        if landmark_output(self.contract).get("origin", "edge") == "center":
            points = points + 0.5 / np.array([self.spec.width, self.spec.height], np.float32)
        return geometry.points_to_image(points, affine, self.spec)


def dequantize_landmarks(raw: np.ndarray, output: dict) -> np.ndarray:
    """Landmark tensor → float32 [N, 2], dequantized with the output's scale/zero_point when quantized."""
    raw = np.asarray(raw)
    if output["dtype"] in ("int8", "uint8"):
        raw = (raw.astype(np.float32) - output["zero_point"]) * output["scale"]
    return raw.astype(np.float32).reshape(output["shape"])[0]
