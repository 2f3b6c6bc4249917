"""Training for every architecture: one loop, crash-safe checkpoints, tf.distribute, and the model dir format.

A training run writes ``DIR``::

    config.json          everything to reproduce the run: model, full config, data specs, seed, versions, command
    history.json         per-epoch losses, learning rate, validation NME/AUC/FR; one entry per (re)start
    best.weights.h5      weights of the best epoch by validation NME (Keras HDF5, no SavedModel)
    checkpoints/         last and best tf.train.Checkpoint (model, optimizer, epoch, RNG), see ``checkpoints``
    tensorboard/         tf.summary logs (``tensorboard --logdir DIR/tensorboard``)

:func:`load_model_dir` turns such a folder back into a model; the exporter and the evaluator use it.
"""
from __future__ import annotations

import json
import os

__all__ = ["load_model_dir", "read_run"]


def read_run(model_dir: str) -> dict:
    """``DIR/config.json`` of a training run (ValueError naming the folder when it is not one)."""
    path = os.path.join(model_dir, "config.json")
    if not os.path.isdir(model_dir):
        raise ValueError(f"{model_dir}: model dir not found")
    try:
        with open(path, encoding="utf-8") as fh:
            run = json.load(fh)
    except FileNotFoundError:
        raise ValueError(f"{model_dir}: not a tfalign training run (no config.json)") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(run, dict) or "model" not in run or "config" not in run:
        raise ValueError(f"{path}: not a tfalign run description (needs 'model' and 'config')")
    return run


def load_model_dir(model_dir: str, which: str = "best"):
    """A trained model from a training run folder: ``(arch, config, keras_model)``.

    Args:
        model_dir: the ``--out`` folder of ``python -m tfalign.train``.
        which: ``best`` (``best.weights.h5``, the epoch with the lowest validation NME) or ``last`` (the last
            complete checkpoint, e.g. of a run still going).

    The model is rebuilt by its architecture from the stored full config (``arch.build(config)``), so it is the
    training model (dict outputs); ``arch.inference_model(config, model)`` gives the single-output export model.

    Example::

        arch, config, model = load_model_dir("runs/pipnet")
        landmarks = model(images)["landmarks"]   # [B, N, 2], normalised to the crop of config.input
    """
    from tfalign.training.runconfig import resolve_model
    run = read_run(model_dir)
    arch, config = resolve_model(run["model"], run["config"])
    model = arch.build(config)
    if which == "best":
        path = os.path.join(model_dir, "best.weights.h5")
        if not os.path.exists(path):
            raise ValueError(f"{model_dir}: no best.weights.h5 yet (no epoch has finished)")
        model.load_weights(path)
    elif which == "last":
        from tfalign._keras import tf
        from tfalign.training.checkpoints import CheckpointStore
        prefix = CheckpointStore(model_dir).prefix("last")
        if prefix is None:
            raise ValueError(f"{model_dir}: no complete checkpoint yet")
        tf.train.Checkpoint(model=model).read(prefix).expect_partial()
    else:
        raise ValueError(f"which must be 'best' or 'last', got '{which}'")
    return arch, config, model
