"""Learning-rate schedules and optimizers built from a :class:`tfalign.models.base.TrainSpec`.

The schedule is a function of the optimizer's step counter, which lives in the checkpoint, so a resumed run
continues the schedule exactly where the killed one stopped.
"""
from __future__ import annotations

import math

from tfalign._keras import keras, register, tf


@register("EpochSchedule")
class EpochSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """The four schedules of :class:`TrainSpec`, stated in epochs and evaluated per step.

    * ``constant``: ``lr``.
    * ``step``: ``lr * decay ** k`` where k = number of ``milestones`` (epochs, 0-based count of finished epochs)
      already reached. Decays happen at epoch boundaries, as in the papers ("divide by 10 at epochs 30 and 50").
    * ``poly``: ``lr * (1 - step / total_steps) ** power`` (power 0.9 in the papers that use it).
    * ``cosine``: ``lr * 0.5 * (1 + cos(pi * step / total_steps))``.
    """

    KINDS = ("constant", "step", "poly", "cosine")

    def __init__(self, kind: str, learning_rate: float, steps_per_epoch: int, epochs: int,
                 milestones=(), decay: float = 0.1, power: float = 0.9):
        if kind not in self.KINDS:
            raise ValueError(f"unknown schedule '{kind}' ({', '.join(self.KINDS)})")
        if steps_per_epoch <= 0 or epochs <= 0:
            raise ValueError(f"steps_per_epoch and epochs must be > 0, got {steps_per_epoch} and {epochs}")
        self.kind = kind
        self.learning_rate = float(learning_rate)
        self.steps_per_epoch = int(steps_per_epoch)
        self.epochs = int(epochs)
        self.milestones = tuple(int(m) for m in milestones)
        self.decay = float(decay)
        self.power = float(power)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        lr = tf.constant(self.learning_rate, tf.float32)
        if self.kind == "constant":
            return lr
        if self.kind == "step":
            epoch = tf.floor(step / self.steps_per_epoch)
            reached = tf.add_n([tf.cast(epoch >= m, tf.float32) for m in self.milestones]) if self.milestones \
                else tf.constant(0.0)
            return lr * tf.pow(self.decay, reached)
        # Clamp so steps past the planned end (e.g. a longer resumed run) keep the final rate instead of NaN.
        t = tf.minimum(step / float(self.steps_per_epoch * self.epochs), 1.0)
        if self.kind == "poly":
            return lr * tf.pow(1.0 - t, self.power)
        return lr * 0.5 * (1.0 + tf.cos(math.pi * t))

    def get_config(self):
        return {"kind": self.kind, "learning_rate": self.learning_rate, "steps_per_epoch": self.steps_per_epoch,
                "epochs": self.epochs, "milestones": list(self.milestones), "decay": self.decay,
                "power": self.power}


def make_schedule(train_spec, steps_per_epoch: int, epochs: int | None = None) -> EpochSchedule:
    return EpochSchedule(train_spec.schedule, train_spec.learning_rate, steps_per_epoch,
                         epochs or train_spec.epochs, train_spec.milestones, train_spec.decay, train_spec.power)


def make_optimizer(train_spec, steps_per_epoch: int, epochs: int | None = None):
    """Optimizer named by ``train_spec.optimizer`` with its schedule, weight decay and gradient clipping.

    ``weight_decay`` is decoupled (AdamW-style) for every optimizer, as in the Keras 2.11+ optimizers; clipping is
    by global norm and applied after the gradients of all replicas are summed, so it means the same on 1 or N GPUs.
    """
    lr = make_schedule(train_spec, steps_per_epoch, epochs)
    common = {"global_clipnorm": train_spec.clip_norm}
    wd = train_spec.weight_decay or None
    opt = keras.optimizers
    name = train_spec.optimizer
    if name == "adam":
        return opt.Adam(lr, weight_decay=wd, **common)
    if name == "nadam":
        return opt.Nadam(lr, weight_decay=wd, **common)
    if name == "adamw":
        return opt.AdamW(lr, weight_decay=train_spec.weight_decay, **common)
    if name == "sgd":
        return opt.SGD(lr, momentum=train_spec.momentum, weight_decay=wd, **common)
    if name == "rmsprop":
        return opt.RMSprop(lr, momentum=train_spec.momentum, weight_decay=wd, **common)
    raise ValueError(f"unknown optimizer '{name}' (adam, nadam, sgd, rmsprop, adamw)")
