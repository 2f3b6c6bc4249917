"""Knowledge distillation for compressed models: the trained model teaches its pruned copy while it fine-tunes.

A channel-pruned model restarts from a damaged copy of the trained one (LFPW val NME of mobile_two_stage pruned by
0.3: 26.7 % before fine-tuning) and, with only its own ground-truth loss, sees the same 733 faces the full model
needed hundreds of epochs for. The full model's outputs are a denser target: every augmented view of every face
gets the teacher's prediction, which the smaller student can match more easily than the annotation (Hinton et al.
2015, "Distilling the Knowledge in a Neural Network"; for landmarks, e.g. Wang et al. 2019 "Fast Human Pose
Estimation" distil heatmaps the same way).

:func:`with_teacher` wraps the student in a functional model whose outputs are the student's (so the architecture's
loss, the trainer's validation and checkpoints work unchanged) and which carries the distillation term as a model
loss (the trainer adds ``model.losses``): ``Σ_k w_k · mean over faces and points of ||student_k − teacher_k||²``
for the chosen outputs ``k`` (normalised landmark coordinates, heatmaps). The teacher is frozen and runs in
inference mode. :func:`student_of` takes the trained student back out.

Example::

    build = lambda: distill.with_teacher(pruning.copy_model(slim), pruning.copy_model(base),
                                         {"landmarks": 300.0, "coarse": 300.0})
    trained, history = pruning.fine_tune(build, run, "runs/slim")
    slim = distill.student_of(trained)
"""
from __future__ import annotations

from tfalign._keras import keras, tf

STUDENT, TEACHER = "student", "teacher"


def _outputs(model) -> dict:
    out = model.output
    if not isinstance(out, dict):
        raise ValueError(f"distill: model '{model.name}' must return a dict of named outputs, got {type(out).__name__}")
    return out


def point_outputs(model) -> list:
    """Names of the outputs that are point coordinates, [B, N, 2] (``landmarks``, ``coarse``...): what
    ``--distill W`` distils."""
    return [k for k, t in _outputs(model).items() if len(t.shape) == 3 and t.shape[-1] == 2]


def with_teacher(student, teacher, weights: dict, match=None):
    """The student, trained with ``weights[k] × ||student[k] − teacher[k]||²`` added for each output ``k``.

    ``match(key, student_tensor, teacher_tensor)``: a scalar term replacing the squared distance for that output,
    or None to keep it (``Architecture.distill_loss``: e.g. the dense U-Net matches heatmap probabilities).

    ``student`` and ``teacher`` are functional models with one input and a dict of outputs (every tfalign training
    model); they may differ in width (a pruned copy) but the distilled outputs must have the same shapes.
    """
    if not weights:
        raise ValueError("distill: weights is empty: name at least one output to distil, e.g. {'landmarks': 1.0}")
    s_out, t_out = _outputs(student), _outputs(teacher)
    for key, w in weights.items():
        if key not in s_out or key not in t_out:
            raise ValueError(f"distill: output '{key}' is not an output of both models (student: {sorted(s_out)}, "
                             f"teacher: {sorted(t_out)})")
        if tuple(s_out[key].shape[1:]) != tuple(t_out[key].shape[1:]):
            raise ValueError(f"distill: output '{key}' has shape {tuple(s_out[key].shape)} in the student and "
                             f"{tuple(t_out[key].shape)} in the teacher")
        if not w > 0:
            raise ValueError(f"distill: weight of '{key}' must be > 0, got {w}")
    if len(student.inputs) != 1 or len(teacher.inputs) != 1:
        raise ValueError("distill: student and teacher must each take one input (the image)")
    teacher.trainable = False
    inp = keras.Input(student.inputs[0].shape[1:], name=student.input_names[0])
    # Nested under fixed names so the student's own layer names stay inside it (the teacher has the same ones).
    original_name = student.name
    student._name, teacher._name = STUDENT, TEACHER
    s = student(inp)
    t = teacher(inp, training=False)
    model = keras.Model(inp, s, name="distilled")
    terms = []
    for key, w in weights.items():
        own = match(key, s[key], tf.stop_gradient(t[key])) if match is not None else None
        if own is not None:
            terms.append(float(w) * own)
            continue
        diff = tf.reshape(s[key] - tf.stop_gradient(t[key]), [tf.shape(s[key])[0], -1])
        # Coordinates [B, N, 2]: mean over points of the squared distance; maps: mean over cells.
        per = int(s[key].shape[-1]) if len(s[key].shape) == 3 else 1
        terms.append(float(w) * tf.reduce_mean(tf.square(diff)) * per)
    model.add_loss(tf.add_n(terms))
    model.student_name = original_name
    return model


def gradient_free(model, keys, seed: int = 0) -> list:
    """The outputs among ``keys`` that pass no gradient to ``model``'s weights, e.g. points decoded by an argmax
    (the dense U-Net's ``HeatmapDecode``: argmax cell plus a sign step, whose gradient is zero everywhere).
    Distilling those would add a loss that trains nothing, so :func:`builder` refuses them. One backward pass on a
    random image, each output weighted by random numbers so that no gradient cancels out by symmetry."""
    import numpy as np

    shape = [1] + [int(d) for d in model.inputs[0].shape[1:]]
    x = tf.cast(tf.random.stateless_uniform(shape, seed=[seed, 1], minval=-1.0, maxval=1.0), model.inputs[0].dtype)
    with tf.GradientTape(persistent=True) as tape:
        out = model(x, training=False)
        targets = {k: tf.reduce_sum(out[k] * tf.random.stateless_normal(tf.shape(out[k]), seed=[seed, 2 + i]))
                   for i, k in enumerate(keys)}
    dead = []
    for k in keys:
        grads = tape.gradient(targets[k], model.trainable_variables)
        if not any(g is not None and np.any(tf.convert_to_tensor(g).numpy()) for g in grads):
            dead.append(k)
    del tape
    return dead


def builder(student, teacher, weight: float, prepare=None, outputs=None, match=None):
    """``(build, weights)`` for :func:`quantization.pruning.fine_tune`: ``build()`` copies ``student`` (and, when
    ``weight > 0``, ``teacher``) inside the trainer's scope and wraps them with the teacher's ``outputs`` distilled
    at ``weight``; ``weights`` is what is distilled ({} when ``weight`` is 0).

    ``outputs``: names of the outputs to distil; default every point output ([B, N, 2]). A model whose points come
    from an argmax passes no gradient through them (:func:`gradient_free`): name its maps instead, e.g.
    ``["heatmaps1", "heatmaps2"]`` for the dense U-Net. ``match``: see :func:`with_teacher`; pass
    :func:`architecture_match` so the architecture decides how its maps are compared.

    ``prepare``: applied to the student's copy before it is wrapped, e.g. ``lambda m: pruning.prune_model(m, 0.5,
    end_step=...)`` for magnitude pruning with a teacher (tfmot's step callback finds the wrappers inside)."""
    from quantization.pruning import copy_model

    def make():
        copy = copy_model(student)
        return prepare(copy) if prepare is not None else copy

    if not weight:
        return make, {}
    available = sorted(_outputs(teacher))
    if outputs:
        unknown = [k for k in outputs if k not in available]
        if unknown:
            raise ValueError(f"distill: {', '.join(map(repr, unknown))} not an output of model '{teacher.name}' "
                             f"(its outputs: {', '.join(available)})")
        keys = list(outputs)
    else:
        keys = point_outputs(teacher)
        if not keys:
            raise ValueError(f"distill: model '{teacher.name}' has no [B, N, 2] point output to distil; name the "
                             f"outputs to distil (its outputs: {', '.join(available)})")
    dead = gradient_free(student, keys)
    if dead:
        raise ValueError(f"distill: output {', '.join(map(repr, dead))} of model '{student.name}' passes no gradient "
                         f"to its weights (an argmax decode?), so distilling it would train nothing; name outputs "
                         f"that do, e.g. its maps (its outputs: {', '.join(available)})")
    weights = {k: float(weight) for k in keys}
    return (lambda: with_teacher(make(), copy_model(teacher), weights, match=match)), weights


def architecture_match(arch, config):
    """``match`` for :func:`with_teacher` from the architecture's ``distill_loss``."""
    return lambda key, s, t: arch.distill_loss(config, key, s, t)


def inner_student(model):
    """The student network inside a :func:`with_teacher` model, as it is (``model`` itself when it is not one);
    unlike :func:`student_of` it leaves the wrapper untouched, so it is safe while the wrapper trains."""
    names = [layer.name for layer in model.layers]
    return model.get_layer(STUDENT) if STUDENT in names and TEACHER in names else model


def student_of(model):
    """The trained student inside a :func:`with_teacher` model (the model itself when it is not one)."""
    names = [layer.name for layer in model.layers]
    if STUDENT not in names or TEACHER not in names:
        return model
    student = model.get_layer(STUDENT)
    student._name = getattr(model, "student_name", student.name)
    return student


__all__ = ["point_outputs", "gradient_free", "with_teacher", "builder", "architecture_match", "inner_student",
           "student_of"]
