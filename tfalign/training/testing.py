"""A tiny architecture for the trainer's and evaluator's own tests (and for trying the CLIs in seconds).

``tiny_test``: three strided convolutions and a :class:`tfalign.layers.SoftArgmax` head on a 32×32 input, 5 points
(``mtfl_5``) by default. It goes through the same registry as the real models, so the trainer and evaluator are
tested without depending on any of them. Importing this module registers it.
"""
from __future__ import annotations

import dataclasses

from tfalign.losses import masked_point_loss
from tfalign.models.base import Architecture, InputSpec, TrainSpec, register_architecture


@dataclasses.dataclass(frozen=True)
class TinyConfig:
    input: InputSpec = InputSpec(height=32, width=32, channels=3, schemes=("mtfl_5",))
    train: TrainSpec = TrainSpec(batch_size=8, epochs=3, optimizer="adam", learning_rate=3e-3, schedule="constant")
    filters: int = 8
    loss: str = "l1"


@register_architecture
class TinyTest(Architecture):
    name = "tiny_test"
    config_class = TinyConfig

    def build(self, config):
        from tfalign._keras import keras, layers
        from tfalign.layers import SoftArgmax
        spec = config.input
        inp = keras.Input((spec.height, spec.width, spec.channels), name="image")
        x = layers.Conv2D(config.filters, 3, padding="same", activation="relu", name="conv1")(inp)
        x = layers.Conv2D(config.filters, 3, strides=2, padding="same", activation="relu", name="conv2")(x)
        x = layers.Conv2D(spec.num_points, 3, padding="same", name="heatmaps")(x)
        landmarks = SoftArgmax(name="landmarks")(x)
        return keras.Model(inp, {"landmarks": landmarks}, name="tiny_test")

    def loss(self, config, outputs, batch):
        point = masked_point_loss(outputs["landmarks"], batch["points"], batch["mask"], config.loss)
        return point, {"point": point}
