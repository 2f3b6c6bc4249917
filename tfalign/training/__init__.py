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

__all__ = ["init_weights", "load_model_dir", "read_run"]


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
    keras_file = (run.get("compression") or {}).get("keras_model")
    if keras_file:
        # A channel-pruned run (python -m quantization.prune --method channel): its widths are not expressible in
        # the config, so the whole Keras model was saved; there is only the final model (which is ignored).
        path = os.path.join(model_dir, keras_file)
        if not os.path.isfile(path):
            raise ValueError(f"{model_dir}: config.json names {keras_file}, which is missing")
        from tfalign._keras import keras
        import tfalign.layers  # noqa: F401  (registers the custom layers the file refers to)
        return arch, config, keras.models.load_model(path, compile=False)
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


def check_init(init: str, model_name: str) -> None:
    """Fail before training when ``--init`` names nothing loadable (ValueError naming the flag and the path)."""
    from tfalign.models.base import CONFIG_FILE, WEIGHTS_FILE, pretrained_folder
    if init == "pretrained":
        if pretrained_folder(model_name) is None:
            raise ValueError(f"--init pretrained: no trained weights ship for model '{model_name}'; give a run "
                             "folder, a weights folder or a .weights.h5 file instead")
        return
    if os.path.isfile(init):
        if not init.endswith(".h5"):
            raise ValueError(f"--init {init}: a weights file must be Keras HDF5 (.h5, e.g. best.weights.h5)")
        return
    if not os.path.isdir(init):
        raise ValueError(f"--init {init}: not found (expected 'pretrained', a training run folder, a weights folder "
                         "with config.json + weights.npz, or a .weights.h5 file)")
    if os.path.isfile(os.path.join(init, "best.weights.h5")):
        return
    if os.path.isfile(os.path.join(init, WEIGHTS_FILE)) and os.path.isfile(os.path.join(init, CONFIG_FILE)):
        return
    raise ValueError(f"--init {init}: folder holds neither best.weights.h5 (a training run) nor "
                     f"{CONFIG_FILE} + {WEIGHTS_FILE} (a weights folder)")


def init_weights(model, init: str, model_name: str) -> str:
    """Load starting weights into ``model`` (fine-tuning); returns the file read.

    ``init``: ``pretrained`` (the weights shipped for ``model_name``), a training run folder (its
    ``best.weights.h5``), a weights folder (``config.json`` + ``weights.npz``, as shipped) or a ``.h5`` file.
    The architecture config may differ from the one the weights were trained with (a longer schedule, other data),
    but every weight must keep its shape: a mismatch is a ValueError naming the file and the first differing weight.
    """
    import numpy as np
    from tfalign.models.base import WEIGHTS_FILE, pretrained_folder

    check_init(init, model_name)
    folder = pretrained_folder(model_name) if init == "pretrained" else init
    if os.path.isdir(folder) and not os.path.isfile(os.path.join(folder, "best.weights.h5")):
        path = os.path.join(folder, WEIGHTS_FILE)
        with np.load(path) as data:
            weights = [data[k].astype(np.float32) for k in sorted(data.files)]
    else:
        path = os.path.join(folder, "best.weights.h5") if os.path.isdir(folder) else folder
        try:
            # Keras checks every layer's shapes; a failure stops the run before any step, so a partly loaded
            # model is never trained.
            model.load_weights(path)
        except (ValueError, OSError) as exc:
            raise ValueError(f"--init {path}: does not fit model '{model_name}' ({exc})") from None
        return path
    expected = model.weights
    if len(weights) != len(expected):
        raise ValueError(f"--init {path}: {len(weights)} weight arrays for the {len(expected)} of model "
                         f"'{model_name}' (different architecture config?)")
    for w, v in zip(weights, expected):
        if tuple(w.shape) != tuple(v.shape):
            raise ValueError(f"--init {path}: weight {v.name} has shape {tuple(v.shape)} in model '{model_name}' "
                             f"but {tuple(w.shape)} in the file (different architecture config?)")
    model.set_weights(weights)
    return path
