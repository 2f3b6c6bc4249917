"""Keras inference model → CoreML ML Program (``.mlpackage``, iOS 16+), and how it is checked on Linux.

* Input: ``ImageType`` named like the Keras input, RGB or GRAYSCALE per the contract, with
  ``scale = 1 / std`` and ``bias = -mean / std`` so the model applies the contract's normalisation itself
  (the contract says ``normalization: "model"``; the app hands over a pixel buffer of the crop).
* Output: ``landmarks`` [1, N, 2] float32 (xy normalised, edge origin), computed in FLOAT16.
* Optional weight compression (``coremltools.optimize.coreml``): int8 linear (symmetric, per channel) and k-means
  palettization (2/4/6/8 bits). Activations stay float16 either way.
* User metadata: the whole contract (``tfalign_contract``), scheme, license, training data.

coremltools cannot predict on Linux, so :func:`verify` checks the converted program instead: input/output names,
shapes and types, the op set (no custom ops), and that every Keras kernel appears among the program's weights —
exactly, or up to a per-output-channel scale where batch norm was folded into it. Compressed weights are checked
against their own quantization grid (:func:`_match`, ``grid=True``): each stored value must be the grid value
nearest to the (scaled) Keras weight, the grid being the values the compressed tensor actually takes in that
output channel (the palette entries it uses, or the int8 levels times the channel's scale). A plain relative
tolerance cannot do this: a 4-bit palette's error depends on how the k-means clusters fall (0.187 of the
largest weight on the trained mobile_two_stage), while a wrong weight can stay under any loose bound.
:func:`predict_parity` runs the model against Keras where CoreML can run (macOS) and returns None elsewhere.
"""
from __future__ import annotations

import collections
import json
import platform
from typing import Optional

import numpy as np

from mobile_export.contract import coreml_contract
from tfalign.runtime import METADATA_NAME

OUTPUT_NAME = "landmarks"
PALETTE_BITS = (2, 4, 6, 8)
# Weight check tolerance, relative to the tensor's largest magnitude. Uncompressed: float16 storage. Compressed:
# how far a stored value may be from the nearest grid value of the Keras weight beyond that nearest distance —
# float16 rounding of the palette and the least-squares estimate of a folded batch-norm scale, nothing more.
_WEIGHT_TOL = {"float": 2e-3, "grid": 1e-2}


def convert(keras_model, input_spec, model_info: dict, quantize: str = "none", palettize: Optional[int] = None):
    """→ (ct.models.MLModel, contract). ``quantize`` int8/dynamic → int8 linear weights; none/float16 → fp16."""
    import coremltools as ct

    from mobile_export.tflite import static_function

    if palettize is not None and palettize not in PALETTE_BITS:
        raise ValueError(f"--palettize: bits must be one of {PALETTE_BITS}, got {palettize}")
    if quantize in ("int8", "dynamic") and palettize:
        raise ValueError("--palettize and int8 weight quantization are alternatives: pick one")
    fn = static_function(keras_model)
    in_name = keras_model.inputs[0].name.split(":")[0]
    s = input_spec
    image = ct.ImageType(name=in_name, shape=(1, s.height, s.width, s.channels), scale=1.0 / s.std,
                         bias=-s.mean / s.std if s.channels == 1 else [-s.mean / s.std] * 3,
                         color_layout=ct.colorlayout.GRAYSCALE if s.channels == 1 else ct.colorlayout.RGB)
    out_name = fn.structured_outputs.name.split(":")[0] if hasattr(fn.structured_outputs, "name") else None
    outputs = [ct.TensorType(name=out_name, dtype=np.float32)] if out_name else None
    try:
        mlmodel = ct.convert([fn], source="tensorflow", convert_to="mlprogram", inputs=[image], outputs=outputs,
                             minimum_deployment_target=ct.target.iOS16, compute_precision=ct.precision.FLOAT16)
    except Exception as exc:  # the converter raises bare NotImplementedError/ValueError with the op name
        raise ValueError(f"CoreML conversion failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                         ) from None
    spec = mlmodel.get_spec()
    old = spec.description.output[0].name
    if old != OUTPUT_NAME:
        ct.utils.rename_feature(spec, old, OUTPUT_NAME)
        mlmodel = ct.models.MLModel(spec, weights_dir=mlmodel.weights_dir)
    mlmodel = _compress(mlmodel, quantize, palettize)
    shape = [int(d) for d in mlmodel.get_spec().description.output[0].type.multiArrayType.shape]
    contract = coreml_contract(input_spec, in_name, OUTPUT_NAME, shape, model_info)
    _describe(mlmodel, contract)
    return mlmodel, contract


def _compress(mlmodel, quantize: str, palettize: Optional[int]):
    import coremltools.optimize.coreml as cto

    if quantize in ("int8", "dynamic"):
        cfg = cto.OptimizationConfig(global_config=cto.OpLinearQuantizerConfig(mode="linear_symmetric",
                                                                              dtype="int8"))
        return cto.linear_quantize_weights(mlmodel, cfg)
    if palettize:
        cfg = cto.OptimizationConfig(global_config=cto.OpPalettizerConfig(mode="kmeans", nbits=palettize))
        return cto.palettize_weights(mlmodel, cfg)
    return mlmodel


def _describe(mlmodel, contract: dict) -> None:
    info = contract["model"]
    mlmodel.author = "tfalign"
    mlmodel.license = info.get("license", "unspecified")
    mlmodel.short_description = (f"{info.get('name')} face landmarks ({contract['scheme']['name']}, "
                                 f"{contract['scheme']['num_points']} points): input = square face crop per the "
                                 f"tfalign contract, output xy normalised to the crop")
    mlmodel.version = contract["model"].get("tfalign_version", "")
    meta = mlmodel.user_defined_metadata
    meta[METADATA_NAME] = json.dumps(contract, separators=(",", ":"))
    meta["scheme"] = contract["scheme"]["name"]
    meta["license"] = info.get("license", "unspecified")
    meta["training_data"] = info.get("training_data", "unspecified")
    meta["weights"] = info.get("weights", "")
    mlmodel.input_description[contract["input"]["name"]] = (
        f"{contract['input']['color']} crop {contract['input']['width']}x{contract['input']['height']}: "
        f"side = {contract['crop']['scale']} x max(w, h) of the landmark box")
    mlmodel.output_description[OUTPUT_NAME] = "[1, N, 2] x, y in [0, 1] of the crop (0 = crop edge)"


def _program_ops(mlmodel) -> list:
    prog = getattr(mlmodel, "_mil_program", None)
    if prog is None:
        from coremltools.converters.mil.frontend.milproto.load import load as milproto_load
        prog = milproto_load(mlmodel.get_spec(), specification_version=mlmodel.get_spec().specificationVersion,
                             file_weights_dir=mlmodel.weights_dir)
    return list(prog.functions["main"].operations)


def _kernel_views(kernel: np.ndarray) -> list:
    """How a Keras kernel may be laid out in MIL: HWIO → OIHW, depthwise HWC1 → C1HW, Dense IO → OI.

    A grouped kernel [k, k, C/g, O] that ``GroupConv2D(impl="depthwise")`` runs as a depthwise convolution is
    stored as [C·m, 1, k, k]; its group count is not known here, so every divisor of O that makes the layout
    distinct is tried (the match still needs the whole tensor, value by value).
    """
    if kernel.ndim == 4:
        views = [kernel.transpose(3, 2, 0, 1), kernel.transpose(2, 3, 0, 1), kernel]
        kh, kw, cin_g, out = kernel.shape
        if cin_g > 1:
            for m in (d for d in range(1, out + 1) if out % d == 0):
                g = out // m
                views.append(kernel.reshape(kh, kw, cin_g, g, m).transpose(3, 2, 4, 0, 1)
                             .reshape(g * cin_g * m, 1, kh, kw))
        return views
    if kernel.ndim == 2:
        return [kernel.T, kernel]
    return [kernel]


def _grid_excess(target: np.ndarray, stored: np.ndarray) -> np.ndarray:
    """Per element: |stored - target| minus the distance from target to the nearest value of its row's grid.

    The grid of a row (output channel) is the set of values the stored row takes. 0 where the stored value is
    the nearest grid value to the target — what k-means palettization (nearest centroid) and linear quantization
    (round to the nearest level) produce; clearly > 0 where a weight was stored in the wrong place. ``stored`` is
    [R, n]; ``target`` [R, n] or [S, R, n] (S candidate targets per row).
    """
    t3 = target if target.ndim == 3 else target[None]
    out = np.empty_like(t3, dtype=np.float64)
    for r in range(stored.shape[0]):
        grid = np.unique(stored[r])
        t = t3[:, r, :]
        pos = np.clip(np.searchsorted(grid, t), 1, max(len(grid) - 1, 1))
        lo, hi = grid[pos - 1], grid[np.minimum(pos, len(grid) - 1)]
        nearest = np.minimum(np.abs(t - lo), np.abs(t - hi))
        out[:, r, :] = np.abs(stored[r][None] - t) - nearest
    return out if target.ndim == 3 else out[0]


def _grid_fit(k: np.ndarray, v: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Per output channel, the smallest max grid excess of ``v`` [R, n] over scales near ``scale`` [R] × ``k``.

    A palette is shared by all channels, so one channel's folding scale cannot be read off its few stored values:
    with 2 bits the estimate is off by several %, and k-means palettes do not reach the extreme weights (on the
    trained mobile_two_stage a depthwise weight of 2.08 is stored as the top entry 1.30), which pulls a channel's
    estimate down by up to ~30 %. A weight near a palette boundary flips with the scale. So the scale is
    searched: ×0.5 to ×2 of the estimate in 1 % steps (and exactly 1, the unfolded case), then ±1 % in 0.05 %
    steps around the best; the excess left is then at most ~5e-4 of the weight for a correctly stored tensor.
    """
    steps = np.exp(np.linspace(np.log(0.5), np.log(2.0), 141))
    coarse = np.vstack([scale[None] * steps[:, None], np.ones_like(scale)[None]])
    e = _grid_excess(coarse[:, :, None] * k[None], v).max(2)                         # [S, R]
    rows = np.arange(len(scale))
    best_s = coarse[e.argmin(0), rows]
    fine = best_s[None] * (1 + np.linspace(-0.01, 0.01, 41))[:, None]
    e2 = _grid_excess(fine[:, :, None] * k[None], v).max(2)
    return np.minimum(e.min(0), e2.min(0))


def _match(kernel: np.ndarray, consts: list, grid: bool = False) -> tuple:
    """Best (error, folded) of ``kernel`` against MIL constants, allowing one scale per output channel.

    ``grid=False``: max |stored - scale * kernel| / max |stored|. ``grid=True`` (compressed weights): the same
    ratio for the excess over each value's own quantization error (:func:`_grid_excess`).
    """
    best = (np.inf, False)
    candidates = []
    for view in _kernel_views(kernel):
        for c in consts:
            if c.shape != view.shape:
                # A constant the converter stored with singleton axes for broadcasting, e.g. a bias [E, O]
                # used as [E, 1, O], is still that weight.
                if c.size != view.size or np.squeeze(c).shape != np.squeeze(view).shape:
                    continue
                c = c.reshape(view.shape)
            k = view.reshape(view.shape[0], -1).astype(np.float64)
            v = c.reshape(c.shape[0], -1).astype(np.float64)
            scale = (k * v).sum(1) / np.maximum((k * k).sum(1), 1e-30)
            err = np.abs(v - scale[:, None] * k).max() / max(np.abs(v).max(), 1e-12)
            candidates.append((float(err), k, v, scale))
    if not grid:
        for err, _, _, scale in candidates:
            if err < best[0]:
                best = (err, bool(np.abs(scale - 1.0).max() > 1e-3))
        return best
    # The grid search is costly: run it on the constants closest in plain error (the right one is among them).
    for _, k, v, _ in sorted(candidates, key=lambda c: c[0])[:2]:
        # v·v / k·v, not the least-squares k·v / k·k: a k-means centroid is the mean of its cluster, so
        # k·v = v·v / scale for the tensor as a whole, while least squares shrinks the scale by the
        # quantization variance.
        kv = (k * v).sum(1)
        scale = np.where(np.abs(kv) > 1e-30, (v * v).sum(1) / np.where(np.abs(kv) > 1e-30, kv, 1.0), 1.0)
        err = float(_grid_fit(k, v, scale).max() / max(np.abs(v).max(), 1e-12))
        if err < best[0]:
            best = (err, bool(np.abs(scale - 1.0).max() > 1e-2))
    return best


def verify(mlmodel, keras_model, contract: dict, palettize: Optional[int] = None) -> dict:
    """Structure and weights of a converted model vs the contract and Keras. Raises ValueError on a mismatch.

    The weight compression is read from the program itself (``constexpr_*`` ops), so ``palettize`` is only
    accepted for the callers that pass it.
    """
    import coremltools.optimize.coreml as cto

    spec = mlmodel.get_spec()
    where = contract["model"].get("file", "mlpackage")
    if spec.WhichOneof("Type") != "mlProgram":
        raise ValueError(f"{where}: not an ML Program")
    if spec.specificationVersion < 7:
        raise ValueError(f"{where}: specification version {spec.specificationVersion} < 7 (iOS 16)")
    inp, out = spec.description.input, spec.description.output
    if len(inp) != 1 or inp[0].name != contract["input"]["name"] or inp[0].type.WhichOneof("Type") != "imageType":
        raise ValueError(f"{where}: expected one image input '{contract['input']['name']}'")
    img = inp[0].type.imageType
    color = "GRAY" if img.colorSpace == img.GRAYSCALE else "RGB"
    if (img.height, img.width, color) != (contract["input"]["height"], contract["input"]["width"],
                                          contract["input"]["color"]):
        raise ValueError(f"{where}: image input {img.width}x{img.height} {color} disagrees with the contract")
    land = contract["outputs"][0]
    arr = out[0].type.multiArrayType
    if len(out) != 1 or out[0].name != land["name"] or list(arr.shape) != land["shape"]:
        raise ValueError(f"{where}: output {out[0].name} {list(arr.shape)} disagrees with the contract "
                         f"{land['name']} {land['shape']}")
    if arr.dataType != arr.FLOAT32:
        raise ValueError(f"{where}: landmark output is not float32")
    ops = _program_ops(mlmodel)
    hist = collections.Counter(op.op_type for op in ops)
    custom = [t for t in hist if t.startswith("custom")]
    if custom:
        raise ValueError(f"{where}: custom ops {custom} would not run on device")
    compressed = sorted(t for t in hist if t.startswith("constexpr"))
    plain = _program_ops(cto.decompress_weights(mlmodel)) if compressed else ops
    consts = [op.outputs[0].val for op in plain if op.op_type == "const"
              and isinstance(op.outputs[0].val, np.ndarray) and op.outputs[0].val.ndim >= 2]
    kernels = [w.numpy() for w in keras_model.weights if len(w.shape) >= 2]
    # An all-zero tensor (e.g. an untrained bias) is folded away by the converter: nothing to find, nothing lost.
    grid = bool(compressed)
    matches = [(0.0, True) if not np.any(k) else _match(k, consts, grid) for k in kernels]
    tol = _WEIGHT_TOL["grid" if grid else "float"]
    bad = [i for i, (err, _) in enumerate(matches) if not err <= tol]
    if bad:
        names = [keras_model.weights[j].name for j in range(len(keras_model.weights))
                 if len(keras_model.weights[j].shape) >= 2]
        what = "error beyond the quantization grid" if grid else "relative error"
        raise ValueError(f"{where}: {len(bad)} Keras kernels not found among the CoreML weights "
                         f"(first: {names[bad[0]]}, {what} {matches[bad[0]][0]:.3g} > {tol:g})")
    return {
        "coreml_ops": dict(sorted(hist.items())),
        "spec_version": int(spec.specificationVersion),
        "compute_precision": "FLOAT16",
        "weight_compression": compressed,
        "weights_checked": len(kernels),
        "weights_folded": int(sum(f for _, f in matches)),
        "weights_check": ("nearest value of the compressed tensor's own grid (palette / int8 levels) per output "
                          "channel" if grid else "relative error"),
        "weights_max_rel_err": float(max((e for e, _ in matches), default=0.0)),
        "weights_tolerance": tol,
    }


def can_predict() -> bool:
    return platform.system() == "Darwin"


def predict_parity(path: str, keras_model, records, input_spec, quantize: str) -> Optional[dict]:
    """Keras vs CoreML predictions on ``records`` (macOS only; None elsewhere)."""
    if not can_predict():
        return None
    import coremltools as ct
    import cv2
    from PIL import Image

    from mobile_export import conformance
    from tfalign.data import geometry
    from tfalign.data.pipeline import load_image

    model = ct.models.MLModel(path)
    x, truth, mask = conformance.crops(records, input_spec)
    name = model.get_spec().description.input[0].name
    preds = []
    for rec in records:
        box = geometry.face_box(rec.points, rec.scheme, input_spec.schemes[0])
        crop = geometry.crop_image(load_image(rec), box, input_spec)
        if input_spec.channels == 1:
            crop = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
        pil = Image.fromarray(crop)
        preds.append(np.asarray(model.predict({name: pil})[OUTPUT_NAME]).reshape(-1, 2))
    # FLOAT16 compute: judge CoreML like the quantized exports (NME), not at the float32 1e-3 bound.
    return conformance.compare(conformance.keras_points(keras_model, x), np.stack(preds), truth, mask,
                               input_spec.schemes, "int8" if quantize in ("int8", "dynamic") else "dynamic")
