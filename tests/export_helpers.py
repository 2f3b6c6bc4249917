"""A tiny architecture registered for the exporter's tests, so they do not depend on any real model.

``export_tiny``: two convolutions and a :class:`tfalign.layers.SoftArgmax` (spatial softmax) head on a 32×32 RGB
crop, 68 points (300w_68, the synthetic faces' markup). It goes through the same registry as the real models: the
exporter has no special case for it.
"""
import dataclasses

from tfalign.losses import masked_point_loss
from tfalign.models.base import Architecture, InputSpec, TrainSpec, register_architecture, register_preset

NAME = "export_tiny"
WIDE = "export_tiny_wide"  # 32 filters: enough for channel pruning (it keeps at least 8 per layer)


@dataclasses.dataclass(frozen=True)
class ExportTinyConfig:
    input: InputSpec = InputSpec(height=32, width=32, channels=3, mean=127.5, std=127.5, crop_scale=1.3,
                                 shift_y=0.02, schemes=("300w_68",))
    train: TrainSpec = TrainSpec(batch_size=4, epochs=1, schedule="constant")
    filters: int = 8
    normalize: str = "softmax"


@register_architecture
class ExportTiny(Architecture):
    name = NAME
    config_class = ExportTinyConfig

    def build(self, config):
        from tfalign._keras import keras, layers
        from tfalign.layers import SoftArgmax

        spec = config.input
        inp = keras.Input((spec.height, spec.width, spec.channels), name="image")
        x = layers.Conv2D(config.filters, 3, padding="same", activation="relu", name="conv1",
                          kernel_initializer=keras.initializers.GlorotUniform(seed=1))(inp)
        x = layers.Conv2D(spec.num_points, 3, strides=2, padding="same", name="heatmaps",
                          kernel_initializer=keras.initializers.GlorotUniform(seed=2))(x)
        if config.normalize == "sum":
            x = layers.Activation("sigmoid", name="sigmoid")(x)
        landmarks = SoftArgmax(normalize=config.normalize, temperature=0.25, name="soft_argmax")(x)
        return keras.Model(inp, {"landmarks": landmarks}, name=NAME)

    def loss(self, config, outputs, batch):
        point = masked_point_loss(outputs["landmarks"], batch["points"], batch["mask"])
        return point, {"point": point}


register_preset(WIDE, NAME, {"filters": 32}, "export_tiny with 32 filters (exporter tests)")


def tiny(normalize="softmax"):
    """(arch, config, inference keras model) of export_tiny."""
    from tfalign.config import replace
    from tfalign.models.base import resolve

    arch, config = resolve(NAME)
    config = replace(config, normalize=normalize)
    return arch, config, arch.inference_model(config, arch.build(config))


def synthetic(n, config, seed=0):
    from mobile_export.conformance import synthetic_records

    return synthetic_records(n, config.input, seed)


def filter_noise(text):
    """Drop TensorFlow/LiteRT log lines from captured output."""
    return "\n".join(l for l in text.splitlines() if not l[:5] in ("I0000", "W0000", "E0000", "WARNI", "INFO:"))
