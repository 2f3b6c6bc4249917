"""Magnitude (unstructured) pruning with tensorflow-model-optimization.

Weights of every ``Conv2D``/``Dense`` are zeroed smallest-magnitude first, the sparsity ramping from
``initial_sparsity`` to ``target_sparsity`` along tfmot's ``PolynomialDecay`` while the model fine-tunes through
the shared trainer (:func:`fine_tune`); :func:`strip` removes the wrappers for export.

What it buys on a phone: a smaller *compressed* download (zeros gzip well: :func:`gzip_size`), no speed-up —
TFLite kernels run dense. Latency comes from :mod:`quantization.channel_pruning` (whole filters removed) and
int8 (:mod:`quantization.presets`).

What is wrapped (``../shared/STACK.md``): ``prune_low_magnitude(model)`` refuses models holding custom layers or
TFOpLambdas, so the model is cloned with a ``clone_function`` that wraps each prunable layer and reuses every
other layer as it is. Prunable are Conv2D and Dense, SeparableConv2D (its pointwise kernel, as tfmot's registry
says) and any layer with a ``get_prunable_weights()`` method, tfmot's protocol for custom layers: the package's
layers that hold a model's big matrices define it (``DeformableConv2D``; Pose-Tree-MoE's ``ExpertCNNs``,
``ExpertRegressors`` and ``MoEGate``, 97 % of that model's weights). DepthwiseConv2D has no prunable weights in
tfmot's registry; the package's ``GroupConv2D`` (per-landmark predict kernels) is left dense: it is a few thousand
weights.

Example::

    pruned = pruning.prune_model(model, 0.5, end_step=2000)
    pruned, history = pruning.fine_tune(
        lambda: pruning.prune_model(pruning.copy_model(model), 0.5, end_step=2000), run_settings, "runs/pruned")
    final = pruning.strip(pruned)
    print(pruning.format_report(pruning.sparsity_report(final)))
"""
from __future__ import annotations

import gzip
import io
from typing import Iterable, Optional

import numpy as np

from tfalign._keras import keras


def _tfmot():
    import tensorflow_model_optimization as tfmot  # heavy import: only when pruning is used
    return tfmot


def prunable_weights(layer) -> list:
    """The weights magnitude pruning zeroes in ``layer`` ([] when it is left dense).

    Conv2D (incl. Conv2DTranspose, not grouped) and Dense: the kernel; SeparableConv2D: the pointwise kernel
    (tfmot's registry; the depthwise one is tiny); a layer with ``get_prunable_weights()`` (tfmot's protocol for
    custom layers): what it returns.
    """
    if isinstance(layer, keras.layers.SeparableConv2D):
        return [layer.pointwise_kernel]
    if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
        return [layer.kernel] if not getattr(layer, "groups", 1) > 1 else []
    if hasattr(layer, "get_prunable_weights"):
        return list(layer.get_prunable_weights())
    return []


def prunable(layer) -> bool:
    """Whether :func:`prune_model` wraps ``layer``: it has :func:`prunable_weights`."""
    builtin = isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense, keras.layers.SeparableConv2D))
    if not builtin and hasattr(layer, "get_prunable_weights") and not layer.built:
        return True  # its weights do not exist yet; an averaging gate, once built, may hold no matrix
    return bool(prunable_weights(layer))


def schedule(target_sparsity: float, end_step: int, begin_step: int = 0, initial_sparsity: float = 0.0,
             power: float = 3.0, frequency: int = 100):
    """tfmot ``PolynomialDecay`` from ``initial_sparsity`` at ``begin_step`` to ``target_sparsity`` at ``end_step``.

    ``end_step == begin_step`` (one-shot pruning, no fine-tuning) is a ``ConstantSparsity`` at ``target_sparsity``.
    """
    if not 0.0 <= target_sparsity < 1.0:
        raise ValueError(f"target_sparsity must be in [0, 1), got {target_sparsity}")
    if not 0.0 <= initial_sparsity <= target_sparsity:
        raise ValueError(f"initial_sparsity must be in [0, target_sparsity={target_sparsity}], got {initial_sparsity}")
    if begin_step < 0 or end_step < begin_step:
        raise ValueError(f"need 0 <= begin_step <= end_step, got begin_step={begin_step}, end_step={end_step}")
    if frequency <= 0:
        raise ValueError(f"frequency must be > 0, got {frequency}")
    sparsity = _tfmot().sparsity.keras
    if end_step == begin_step:
        return sparsity.ConstantSparsity(target_sparsity, begin_step=begin_step, frequency=1)
    return sparsity.PolynomialDecay(initial_sparsity, target_sparsity, begin_step=begin_step, end_step=end_step,
                                    power=power, frequency=min(frequency, max(1, end_step - begin_step)))


def prune_model(model, target_sparsity: float, *, end_step: int, begin_step: int = 0,
                initial_sparsity: float = 0.0, power: float = 3.0, frequency: int = 100,
                skip: Iterable[str] = ()):
    """A copy of ``model`` whose prunable layers (:func:`prunable`) are wrapped by ``prune_low_magnitude``.

    The wrapped layers are the model's own (weights shared, nothing retrained yet); outputs keep their structure
    (a dict stays a dict). ``skip``: layer names left dense (e.g. a tiny output head).
    """
    skip = set(skip)
    unknown = skip - {layer.name for layer in model.layers}
    if unknown:
        raise ValueError(f"skip: no layer named {sorted(unknown)} in model '{model.name}'")
    sched = schedule(target_sparsity, end_step, begin_step, initial_sparsity, power, frequency)
    sparsity = _tfmot().sparsity.keras
    wrapped = []

    def clone(layer):
        if prunable(layer) and layer.name not in skip:
            wrapped.append(layer.name)
            return sparsity.prune_low_magnitude(layer, pruning_schedule=sched)
        return layer

    out = keras.models.clone_model(model, clone_function=clone)
    if not wrapped:
        raise ValueError(f"model '{model.name}' has no layer to prune (Conv2D, Dense, SeparableConv2D or a layer "
                         "with get_prunable_weights())")
    return out


def one_shot(model, target_sparsity: float, skip: Iterable[str] = ()):
    """Magnitude-prune ``model`` to ``target_sparsity`` at once (no fine-tuning) and strip the wrappers.

    This is what ``python -m tfalign.export --prune magnitude:S`` does; accuracy recovers only with
    :func:`fine_tune`, so prefer a fine-tuned run for anything but size experiments.
    """
    # The wrappers share weights with the layers they wrap: prune a copy, not the caller's model.
    pruned = prune_model(copy_model(model), target_sparsity, end_step=0, skip=skip)
    step = _tfmot().sparsity.keras.UpdatePruningStep()
    step.set_model(pruned)
    step.on_train_begin()
    step.on_train_batch_begin(0)
    # The wrappers' own mask update (what a training step runs), without a forward pass: BN statistics untouched.
    for layer in pruned.layers:
        if hasattr(layer, "pruning_obj"):
            layer.pruning_obj.conditional_mask_update()
            layer.pruning_obj.weight_mask_op()
    return strip(pruned)


def pruning_callbacks(log_dir: Optional[str] = None) -> list:
    """The callbacks a fine-tuning loop must drive: the pruning step counter (and TensorBoard sparsity logs)."""
    sparsity = _tfmot().sparsity.keras
    out = [sparsity.UpdatePruningStep()]
    if log_dir:
        out.append(sparsity.PruningSummaries(log_dir=log_dir))
    return out


def fine_tune(build, run, out_dir: str, callbacks=(), progress: bool = True):
    """Fine-tune a compressed model with the package trainer: returns ``(trained model, history)``.

    ``build`` is a zero-argument callable returning the model to train (pruned, channel-pruned or QAT copy of a
    trained model); the trainer calls it inside its ``tf.distribute`` scope, where the variables must be created,
    e.g. ``lambda: pruning.prune_model(copy_of(model), 0.5, end_step=1000)``.
    ``run`` is a :class:`tfalign.training.runconfig.RunSettings` (model name + config, data/val specs, epochs,
    batch size, ``steps_per_epoch``): the architecture's loss, data pipeline, validation and checkpoints are the
    trainer's. Pruning wrappers are stepped by :func:`pruning_callbacks` (added automatically when the model
    holds pruning wrappers).
    """
    from tfalign.training.loop import Trainer
    if not callable(build) or isinstance(build, keras.Model):
        raise ValueError("fine_tune: pass a callable that builds the model (it runs inside the trainer's "
                         "distribution scope), e.g. lambda: prune_model(copy, 0.5, end_step=1000)")
    cbs = list(callbacks)
    holder = []

    def model_fn():
        holder.append(build())
        if _has_pruning(holder[0]) and not any(type(c).__name__ == "UpdatePruningStep" for c in cbs):
            cbs[:0] = pruning_callbacks()
        return holder[0]

    trainer = Trainer(run, out_dir, model_fn=model_fn, callbacks=cbs, progress=progress)
    trainer.callbacks = cbs  # filled in by model_fn, which ran inside the constructor
    return trainer.model, trainer.fit()


def copy_model(model):
    """A copy of ``model`` with its own variables (created in the current ``tf.distribute`` scope)."""
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


def _has_pruning(model) -> bool:
    # Nested models too: a pruned student inside quantization.distill's wrapper still needs its step callback.
    return any(hasattr(layer, "pruning_obj") or (isinstance(layer, keras.Model) and _has_pruning(layer))
               for layer in model.layers)


def strip(model):
    """The model without pruning wrappers (plain layers holding the masked, sparse weights), ready to export."""
    return _tfmot().sparsity.keras.strip_pruning(model)


def sparsity_report(model) -> dict:
    """Fraction of exact zeros per prunable layer (and overall): ``{"layers": [...], "total": {...}}``.

    Works on pruned (wrapped) and stripped models; counts :func:`prunable_weights` only (biases and BN are never
    pruned). A layer with several (a custom layer's matrices) is one row over all of them.
    """
    rows = []
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)
        weights = [np.asarray(w) for w in prunable_weights(inner)]
        if not weights:
            continue
        size = sum(w.size for w in weights)
        zeros = sum(int(np.count_nonzero(w == 0)) for w in weights)
        rows.append({"layer": inner.name, "params": int(size), "zeros": zeros,
                     "sparsity": zeros / size if size else 0.0})
    params = sum(r["params"] for r in rows)
    zeros = sum(r["zeros"] for r in rows)
    return {"layers": rows, "total": {"params": params, "zeros": zeros, "sparsity": zeros / params if params else 0.0}}


def format_report(report: dict, top: int = 0) -> str:
    """A table of :func:`sparsity_report` (``top`` > 0: only the largest layers)."""
    rows = sorted(report["layers"], key=lambda r: -r["params"])[:top] if top else report["layers"]
    width = max([len(r["layer"]) for r in rows] + [5])
    lines = [f"{'layer':<{width}}  {'params':>9}  sparsity"]
    lines += [f"{r['layer']:<{width}}  {r['params']:>9}  {r['sparsity']:7.1%}" for r in rows]
    t = report["total"]
    lines.append(f"{'total':<{width}}  {t['params']:>9}  {t['sparsity']:7.1%}")
    return "\n".join(lines)


def gzip_size(data) -> int:
    """Bytes of ``data`` (bytes, or a file path) after gzip -9: the download size, where sparsity shows."""
    if not isinstance(data, (bytes, bytearray)):
        with open(data, "rb") as fh:
            data = fh.read()
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=9, mtime=0) as fh:
        fh.write(bytes(data))
    return len(buf.getvalue())


__all__ = ["prunable", "schedule", "prune_model", "one_shot", "pruning_callbacks", "fine_tune", "copy_model", "strip",
           "sparsity_report", "format_report", "gzip_size"]
