"""Learning-rate schedules and optimizers built from a TrainSpec."""
import math

import pytest

from tfalign.models.base import TrainSpec


def _lr(spec, steps_per_epoch, step, epochs=None):
    from tfalign.training.schedules import make_schedule
    return float(make_schedule(spec, steps_per_epoch, epochs)(step))


def test_step_decays_at_milestone_epochs():
    spec = TrainSpec(learning_rate=1e-3, schedule="step", milestones=(30, 50), decay=0.1, epochs=60)
    assert _lr(spec, 10, 0) == pytest.approx(1e-3)
    assert _lr(spec, 10, 299) == pytest.approx(1e-3)  # last step of epoch 30 (0-based 29)
    assert _lr(spec, 10, 300) == pytest.approx(1e-4)  # first step after 30 finished epochs
    assert _lr(spec, 10, 499) == pytest.approx(1e-4)
    assert _lr(spec, 10, 500) == pytest.approx(1e-5)


def test_poly_annealing_power_0_9():
    spec = TrainSpec(learning_rate=2e-3, schedule="poly", power=0.9, epochs=4)
    assert _lr(spec, 5, 0) == pytest.approx(2e-3)
    assert _lr(spec, 5, 10) == pytest.approx(2e-3 * 0.5 ** 0.9, rel=1e-5)
    assert _lr(spec, 5, 20) == pytest.approx(0.0, abs=1e-12)
    assert _lr(spec, 5, 25) == pytest.approx(0.0, abs=1e-12)  # past the end: stays at the final rate


def test_cosine_and_constant():
    cos = TrainSpec(learning_rate=1.0, schedule="cosine", epochs=2)
    assert _lr(cos, 4, 0) == pytest.approx(1.0)
    assert _lr(cos, 4, 4) == pytest.approx(0.5, abs=1e-6)
    assert _lr(cos, 4, 2) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)), rel=1e-5)
    assert _lr(TrainSpec(learning_rate=3e-4, schedule="constant"), 7, 12345) == pytest.approx(3e-4)


def test_epochs_flag_overrides_the_spec_for_poly():
    spec = TrainSpec(learning_rate=1.0, schedule="poly", power=1.0, epochs=100)
    assert _lr(spec, 1, 5, epochs=10) == pytest.approx(0.5)


def test_schedule_round_trips_through_keras_config():
    from tfalign._keras import keras
    from tfalign.training.schedules import EpochSchedule
    s = EpochSchedule("step", 0.1, 3, 10, (2, 4), 0.5)
    again = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(s))
    assert isinstance(again, EpochSchedule) and again.get_config() == s.get_config()


def test_schedule_rejects_bad_arguments():
    from tfalign.training.schedules import EpochSchedule
    with pytest.raises(ValueError, match="unknown schedule 'warmup'"):
        EpochSchedule("warmup", 0.1, 3, 10)
    with pytest.raises(ValueError, match="steps_per_epoch and epochs must be > 0"):
        EpochSchedule("poly", 0.1, 0, 10)


@pytest.mark.parametrize("name,cls", [("adam", "Adam"), ("nadam", "Nadam"), ("sgd", "SGD"), ("rmsprop", "RMSprop"),
                                      ("adamw", "AdamW")])
def test_optimizer_from_spec(name, cls):
    from tfalign.training.schedules import EpochSchedule, make_optimizer
    spec = TrainSpec(optimizer=name, learning_rate=0.01, momentum=0.8, weight_decay=1e-4, clip_norm=5.0,
                     schedule="constant")
    opt = make_optimizer(spec, steps_per_epoch=4)
    assert type(opt).__name__ == cls
    assert isinstance(opt.learning_rate, EpochSchedule) or isinstance(opt._learning_rate, EpochSchedule)
    assert opt.weight_decay == pytest.approx(1e-4) and opt.global_clipnorm == 5.0
    if name in ("sgd", "rmsprop"):
        assert opt.momentum == pytest.approx(0.8)


def test_global_clipnorm_bounds_the_update():
    from tfalign._keras import tf
    from tfalign.training.schedules import make_optimizer
    spec = TrainSpec(optimizer="sgd", learning_rate=1.0, momentum=0.0, clip_norm=1.0, schedule="constant")
    opt = make_optimizer(spec, steps_per_epoch=1)
    v = tf.Variable([0.0, 0.0])
    opt.apply_gradients([(tf.constant([30.0, 40.0]), v)])
    assert v.numpy().tolist() == pytest.approx([-0.6, -0.8])
