"""Structured (channel) pruning: remove whole filters, rebuild a slimmer Keras model, fine-tune.

tfmot's magnitude pruning zeroes single weights; TFLite kernels still run every multiply, so phones see no speed-up
(tensorflow/model-optimization #173, #611, #391). Removing whole output channels of a convolution, together with
every weight that reads them, shrinks the dense tensors themselves: fewer MACs *and* lower measured latency.

How the model is cut (on the functional graph, no per-architecture code):

1. **Channel spaces.** Every tensor's last axis is a list of segments, each a *channel space* (union-find id).
   ``Conv2D``/``Dense``/``Conv2DTranspose``/``SeparableConv2D`` start a new space (their filters). Per-channel layers
   (``BatchNormalization``, activations, padding, pooling, resizing, ``DepthwiseConv2D`` with multiplier 1,
   layers declaring ``elementwise = True`` such as the MobileNetV3 ``HardSwish``, elementwise ``TFOpLambda`` with
   scalars) pass their input's space through. ``Add``/``Multiply``/... tie their
   inputs' spaces into one (a residual stage, a squeeze-excite gate): they share one kept-index set.
   ``Concatenate`` lays its inputs' segments side by side; a layer declaring ``repeats_channels = k`` (dense
   U-Net's ``ReplicateChannels``) lays its input's segments side by side k times. Where a merge's inputs have
   different segment boundaries (CAB's ``[S, S]`` replicated branch added to a trunk ``[T]`` twice as wide), the
   wider spaces are cut at the other inputs' boundaries first, so T's halves tie to S: removing channel j of S
   removes channels j and j + |S| of every producer of T (the producers keep their offsets).
   A custom layer that is a convolution in disguise declares ``channel_producer = True`` (``DeformableConv2D``:
   its filters start a space, its input channels are sliced; see :func:`_is_custom_producer`).
   A custom layer whose channels never leave it can prune its inside itself: it defines
   ``internal_channel_scores()`` (per internal feature map, ``[groups, width]`` filter scores) and
   ``internal_pruned(keep)`` (the config and weights of the copy keeping ``keep[map][group]``); Pose-Tree-MoE's
   ``ExpertCNNs`` and ``ExpertRegressors`` do (each expert keeps its own best filters, by L1 norm, whatever
   ``criterion``; ``ratio``, per-layer ``ratios`` and ``skip`` apply by layer name; no ``divisor``: the widths are
   per expert). Gradual pruning (:func:`decay_targets`) does not fade them: they are cut at once.
2. **What may not change.** Model inputs and outputs, and every input of a layer the rules above do not cover
   (custom layers such as ``PointPatches``/``SoftArgmax``/``PIPDecode``, ``GroupConv2D``, reshapes, layers used
   twice) keep all their channels. A space is prunable when it is produced only by convolutions/dense layers
   and never reaches such a place.
3. **Importance.** ``l1``: L1 norm of each filter (Li et al. 2017, "Pruning Filters for Efficient ConvNets"),
   ``bn``: |γ| of the batch norms on the space (Liu et al. 2017, "Network Slimming"). Tied producers' scores are
   normalised per layer and summed. The lowest ``ratio`` of each space is removed; kept counts are rounded up
   to a multiple of ``divisor`` (SIMD-friendly widths; 8 by default) and never go below ``min_channels``.
4. **Rebuild.** The model's config is rewritten with the new ``filters``/``units`` and rebuilt with
   ``from_config`` (shapes follow), then every weight is copied sliced along its input/output channel axes.
   Removing filters whose output is identically zero (zero kernel, zero BN γ and β) leaves the model's outputs
   unchanged exactly (tests/test_channel_pruning.py).

Fine-tuning goes through the shared trainer: :func:`quantization.pruning.fine_tune`.

**Gradual pruning** (:func:`prune_gradually`). Cutting trained channels at once throws their information away in
one step (mobile_two_stage pruned by 0.3: 22 % NME before fine-tuning). Instead the full model can fine-tune while
:class:`ChannelDecay` shrinks the channels the plan removes towards zero along a cubic schedule (the same polynomial
tfmot uses for sparsity, Zhu & Gupta 2017, "To prune, or not to prune"; applied to whole channels as in soft filter
pruning, He et al. 2018): the network moves what they carried into the kept channels while it still trains. At the
end of the schedule they are exactly zero, so the cut changes no output (:func:`decay_targets` lists which
variables carry a channel's output: the space's BN γ/β, else the producer's filter and bias; depthwise biases).

Example::

    plan = channel_pruning.plan(model, ratio=0.35, criterion="l1")
    print(plan.summary())
    slim = channel_pruning.apply(model, plan)
"""
from __future__ import annotations

import dataclasses
import math
from typing import Iterable, Optional

import numpy as np

from tfalign._keras import keras

CRITERIA = ("l1", "bn")

_L = keras.layers
# Layers whose output channel c depends only on input channel c.
_PER_CHANNEL = (_L.BatchNormalization, _L.ReLU, _L.Activation, _L.LeakyReLU, _L.ELU, _L.Softmax,
                _L.ZeroPadding2D, _L.Cropping2D, _L.UpSampling2D, _L.MaxPooling2D, _L.AveragePooling2D,
                _L.GlobalAveragePooling2D, _L.GlobalMaxPooling2D, _L.Dropout, _L.SpatialDropout2D)
_MERGE = (_L.Add, _L.Multiply, _L.Subtract, _L.Maximum, _L.Minimum, _L.Average)
# TFOpLambda symbols that act per element (with scalars or same-shaped tensors): MobileNetV3's hard-swish.
_ELEMENTWISE_OPS = {"__operators__.add", "math.add", "math.multiply", "math.subtract", "math.truediv",
                    "math.divide", "nn.relu", "nn.relu6", "math.sigmoid", "math.tanh", "math.maximum",
                    "math.minimum", "math.negative", "__operators__.mul", "__operators__.sub"}


def _is_producer(layer) -> bool:
    if isinstance(layer, _L.SeparableConv2D):  # depthwise then pointwise: its filters are the pointwise ones
        return True
    if isinstance(layer, _L.DepthwiseConv2D):
        return False
    if isinstance(layer, _L.Conv2D):  # Conv2DTranspose included
        return getattr(layer, "groups", 1) == 1
    return isinstance(layer, _L.Dense)


def _is_custom_producer(layer) -> bool:
    """A custom layer that is a convolution in disguise (e.g. ``tfalign.layers.DeformableConv2D``): its output
    channels are its own filters and its input channels may be sliced. It declares ``channel_producer = True`` and
    defines ``output_channel_scores()`` (``[filters]`` importance, L1 norms), ``output_channel_variables()``
    (``[(variable, axis)]`` carrying each filter's output) and ``channels_sliced(in_idx, out_idx)`` (config
    update and weights of the copy keeping those input / output channels; ``None`` keeps all)."""
    return getattr(layer, "channel_producer", False) is True


def _is_passthrough(layer, inputs, outputs) -> bool:
    if len(inputs) != 1 or len(outputs) != 1:
        return False
    cin, cout = inputs[0].shape[-1], outputs[0].shape[-1]
    if cin != cout:
        return False
    if isinstance(layer, _L.DepthwiseConv2D):
        return layer.depth_multiplier == 1
    if isinstance(layer, _L.BatchNormalization):
        axis = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
        rank = len(inputs[0].shape)
        return [a % rank for a in axis] == [rank - 1]
    if isinstance(layer, _PER_CHANNEL):
        return not isinstance(layer, _L.Softmax) or layer.axis in (1, 2, -2, -3)
    if isinstance(layer, _L.Rescaling):
        return np.ndim(layer.scale) == 0 and np.ndim(layer.offset) == 0
    if getattr(layer, "elementwise", False) is True:  # e.g. backbones.HardSwish/HardSigmoid declare it
        return True
    return type(layer).__name__ == "TFOpLambda" and getattr(layer, "symbol", "") in _ELEMENTWISE_OPS


@dataclasses.dataclass
class Space:
    size: int
    # (layer name, channel offset): the layer's output channels offset .. offset + size are this space. The offset is
    # non-zero where a space was split (a replicated space added to a wider one, below).
    taps: list = dataclasses.field(default_factory=list)
    norm_taps: list = dataclasses.field(default_factory=list)  # (BN layer name, offset) applied to this space
    fixed: Optional[str] = None  # why it may not change

    @property
    def producers(self) -> list:
        """Names of the layers whose filters make this space (each once)."""
        return list(dict.fromkeys(name for name, _ in self.taps))

    @property
    def norms(self) -> list:
        return list(dict.fromkeys(name for name, _ in self.norm_taps))


class _Graph:
    """Channel spaces of a functional model (see the module docstring)."""

    def __init__(self, model):
        self.model = model
        self.parent: list[int] = []
        self.spaces: list[Space] = []
        self.tensors: dict = {}  # tensor key → [space ids]
        self.inputs_of: dict = {}  # layer name → [[space ids] per input]
        self.outputs_of: dict = {}
        self.split_into: dict = {}  # space id → the space ids it was cut into, in channel order
        self._walk()

    # union-find
    def new(self, size, fixed=None) -> int:
        self.parent.append(len(self.parent))
        self.spaces.append(Space(int(size), fixed=fixed))
        return len(self.parent) - 1

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        a, b = self.find(a), self.find(b)
        if a == b:
            return
        sa, sb = self.spaces[a], self.spaces[b]
        if sa.size != sb.size:
            self.fix([a, b], "tied spaces of different sizes")
            return
        self.parent[b] = a
        sa.taps += [t for t in sb.taps if t not in sa.taps]
        sa.norm_taps += [t for t in sb.norm_taps if t not in sa.norm_taps]
        sa.fixed = sa.fixed or sb.fixed

    def segs(self, ids) -> list:
        """Current root spaces of a segment list (split spaces replaced by their parts)."""
        out = []
        for i in ids:
            r = self.find(i)
            out += self.segs(self.split_into[r]) if r in self.split_into else [r]
        return out

    def split(self, root: int, cuts) -> None:
        """Cut space ``root`` at the channel offsets ``cuts`` into consecutive parts; every tensor holding it then
        holds the parts (:meth:`segs`). Producer and BN taps move with their offsets."""
        space = self.spaces[root]
        bounds = [0, *sorted(set(cuts)), space.size]
        parts = []
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            part = self.new(hi - lo, space.fixed)
            self.spaces[part].taps = [(n, off + lo) for n, off in space.taps]
            self.spaces[part].norm_taps = [(n, off + lo) for n, off in space.norm_taps]
            parts.append(part)
        self.split_into[root] = parts

    def align(self, inputs: list) -> list:
        """Segment lists of same-width tensors, cut until all have the same segment boundaries (so an Add of
        ``[S, S]`` (a space replicated) and ``[T]`` (twice as wide) ties T's halves to S)."""
        while True:
            inputs = [self.segs(segs) for segs in inputs]
            bounds = set()
            for segs in inputs:
                bounds |= set(np.cumsum([self.spaces[s].size for s in segs])[:-1].tolist())
            cut = False
            for segs in inputs:
                offset = 0
                for s in segs:
                    size = self.spaces[s].size
                    inner = [b - offset for b in bounds if offset < b < offset + size]
                    if inner and s not in self.split_into:
                        self.split(s, inner)
                        cut = True
                    offset += size
            if not cut:
                return inputs

    def fix(self, ids: Iterable[int], why: str) -> None:
        for i in self.segs(ids):
            space = self.spaces[i]
            space.fixed = space.fixed or why

    @staticmethod
    def key(tensor):
        layer, node_index, tensor_index = tensor._keras_history
        return layer.name, node_index, tensor_index

    def _walk(self):
        import tensorflow as tf
        model = self.model
        calls = {}
        for nodes in model._nodes_by_depth.values():
            for node in nodes:
                calls[node.layer.name] = calls.get(node.layer.name, 0) + 1
        for depth in sorted(model._nodes_by_depth, reverse=True):
            for node in model._nodes_by_depth[depth]:
                layer = node.layer
                inputs = list(node.keras_inputs)
                outputs = tf.nest.flatten(node.outputs)
                in_segs = [self.segs(self.tensors[self.key(t)]) for t in inputs]
                out_segs = self._visit(layer, inputs, outputs, in_segs, calls[layer.name] > 1)
                self.inputs_of[layer.name] = in_segs
                self.outputs_of[layer.name] = out_segs
                for t, segs in zip(outputs, out_segs):
                    self.tensors[self.key(t)] = segs
        for t in tf.nest.flatten(model.outputs):
            self.fix(self.segs(self.tensors[self.key(t)]), "model output")
        # A space cut after a layer was visited: every stored list names the parts.
        for table in (self.inputs_of, self.outputs_of):
            for name, lists in table.items():
                table[name] = [self.segs(segs) for segs in lists]
        self.tensors = {k: self.segs(v) for k, v in self.tensors.items()}

    def _visit(self, layer, inputs, outputs, in_segs, shared):
        def channels(t):
            c = t.shape[-1]
            return int(c) if c is not None else 0

        flat = [s for segs in in_segs for s in segs]
        if isinstance(layer, _L.InputLayer):
            return [[self.new(channels(t), "model input")] for t in outputs]
        if shared:
            self.fix(flat, f"layer '{layer.name}' is called more than once")
            return [[self.new(channels(t), f"output of shared layer '{layer.name}'")] for t in outputs]
        if (_is_producer(layer) or _is_custom_producer(layer)) and len(inputs) == 1 and len(outputs) == 1:
            space = self.new(channels(outputs[0]))
            self.spaces[space].taps.append((layer.name, 0))
            return [[space]]
        if _is_passthrough(layer, inputs, outputs):
            if isinstance(layer, _L.BatchNormalization):
                offset = 0
                for s in in_segs[0]:
                    self.spaces[s].norm_taps.append((layer.name, offset))
                    offset += self.spaces[s].size
            return [list(in_segs[0])]
        if isinstance(layer, _MERGE) and len(outputs) == 1 and len({channels(t) for t in inputs}) == 1:
            in_segs = self.align(in_segs)
            for segs in in_segs[1:]:
                for a, b in zip(in_segs[0], segs):
                    self.union(a, b)
            return [self.segs(in_segs[0])]
        if isinstance(layer, _L.Concatenate) and layer.axis in (-1, len(outputs[0].shape) - 1):
            return [[s for segs in in_segs for s in segs]]
        times = getattr(layer, "repeats_channels", 0)
        if times and len(inputs) == 1 and len(outputs) == 1:  # e.g. dense U-Net's ReplicateChannels: [x] * times
            return [list(in_segs[0]) * int(times)]
        why = f"read by {type(layer).__name__} '{layer.name}'"
        self.fix(flat, why)
        return [[self.new(channels(t), f"output of {type(layer).__name__} '{layer.name}'")] for t in outputs]

    def roots(self) -> dict:
        out = {}
        for i in range(len(self.spaces)):
            out.setdefault(self.find(i), None)
        return {r: self.spaces[r] for r in out if r not in self.split_into}


@dataclasses.dataclass
class PruningPlan:
    """Kept channel indices per prunable channel space, and why the other spaces stay whole."""
    kept: dict  # space id → sorted kept indices (only spaces that shrink)
    sizes: dict  # space id → original size
    members: dict  # space id → producer layer names
    fixed: dict  # space id → reason (spaces that may not change)
    graph: object = dataclasses.field(repr=False, default=None)
    # layer name → per internal feature map, [groups, kept] indices (layers pruning inside themselves)
    internal: dict = dataclasses.field(default_factory=dict)

    def summary(self) -> str:
        lines = []
        for r, idx in sorted(self.kept.items(), key=lambda kv: self.members[kv[0]][0]):
            names = ", ".join(self.members[r][:3]) + (" ..." if len(self.members[r]) > 3 else "")
            lines.append(f"{self.sizes[r]:>5} -> {len(idx):<5} {names}")
        sizes = self.internal_sizes
        for name, maps in self.internal.items():
            for i, keep in enumerate(maps):
                lines.append(f"{keep.shape[0]}x{sizes[name][i]} -> {keep.shape[0]}x{keep.shape[1]}  {name} "
                             f"(internal map {i}: groups x width)")
        return "\n".join(lines) if lines else "(no channel removed)"

    @property
    def internal_sizes(self) -> dict:
        graph_model = self.graph.model if self.graph is not None else None
        return {name: [s.shape[1] for s in graph_model.get_layer(name).internal_channel_scores()]
                for name in self.internal} if graph_model is not None else {}

    def removed(self, root: int) -> np.ndarray:
        """Indices of the channels of space ``root`` the plan removes."""
        return np.setdiff1d(np.arange(self.sizes[root]), self.kept[root])

    def rebind(self, model) -> "PruningPlan":
        """The same kept channels for ``model``, a copy of the planned model (same layers, other weights), e.g. the
        model after gradual pruning's fine-tune: :func:`apply` needs the plan of the model it cuts."""
        graph = _Graph(model)
        for root in self.kept:
            if root >= len(graph.spaces) or graph.find(root) != root or graph.spaces[root].size != self.sizes[root] \
                    or graph.spaces[root].producers != self.members[root]:
                raise ValueError(f"rebind: model '{model.name}' does not have the channel spaces of the planned model "
                                 f"(space of {self.members[root][:1]} differs); plan it with plan(model, ...)")
        return dataclasses.replace(self, graph=graph)

    def removed_fraction(self) -> float:
        total = sum(self.sizes[r] for r in self.kept)
        kept = sum(len(v) for v in self.kept.values())
        sizes = self.internal_sizes
        for name, maps in self.internal.items():
            for keep, size in zip(maps, sizes[name]):
                total += keep.shape[0] * size
                kept += keep.size
        return 1.0 - kept / total if total else 0.0


def _layer_scores(layer, criterion: str, model) -> np.ndarray:
    if _is_custom_producer(layer):
        return np.asarray(layer.output_channel_scores(), np.float64)
    kernel = np.asarray((layer.pointwise_kernel if isinstance(layer, _L.SeparableConv2D) else layer.kernel).numpy())
    if isinstance(layer, _L.Conv2DTranspose):
        kernel = np.moveaxis(kernel, 2, -1)
    return np.abs(kernel.reshape(-1, kernel.shape[-1])).sum(axis=0)


def importance(graph: _Graph, root: int, criterion: str) -> np.ndarray:
    """Per-channel importance of a space: summed over tied layers, each normalised by its mean."""
    space = graph.spaces[root]
    model = graph.model
    if criterion == "bn" and space.norm_taps:
        per_layer = [np.abs(model.get_layer(n).gamma.numpy())[off:off + space.size]
                     if model.get_layer(n).gamma is not None else np.ones(space.size) for n, off in space.norm_taps]
    else:
        per_layer = [_layer_scores(model.get_layer(n), criterion, model)[off:off + space.size]
                     for n, off in space.taps]
    total = np.zeros(space.size)
    for s in per_layer:
        mean = float(np.mean(s))
        total += s / mean if mean > 0 else s
    return total


def plan(model, ratio: float, criterion: str = "l1", divisor: int = 8, min_channels: int = 8,
         skip: Iterable[str] = (), ratios: Optional[dict] = None) -> PruningPlan:
    """Choose the filters to remove: the ``ratio`` least important of every prunable channel space.

    Args:
        model: functional Keras model (training or inference model).
        ratio: fraction of channels to remove from each prunable space, in [0, 1).
        criterion: ``l1`` (filter L1 norm) or ``bn`` (|BN γ|; spaces without a BN fall back to ``l1``).
        divisor: kept counts are rounded up to a multiple of this (1 = exact).
        min_channels: never keep fewer channels than this in a space.
        skip: producer layer names whose spaces are left whole.
        ratios: per producer layer name, a ratio overriding ``ratio`` for that layer's space.
    """
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"ratio must be in [0, 1), got {ratio}")
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got '{criterion}'")
    if divisor < 1 or min_channels < 1:
        raise ValueError(f"divisor and min_channels must be >= 1, got {divisor}, {min_channels}")
    ratios = dict(ratios or {})
    for name, value in ratios.items():
        if not 0.0 <= value < 1.0:
            raise ValueError(f"ratios[{name!r}] must be in [0, 1), got {value}")
    names = {layer.name for layer in model.layers}
    unknown = (set(skip) | set(ratios)) - names
    if unknown:
        raise ValueError(f"skip/ratios: no layer named {sorted(unknown)} in model '{model.name}'")
    graph = _Graph(model)
    kept, sizes, members, fixed = {}, {}, {}, {}
    for root, space in graph.roots().items():
        sizes[root], members[root] = space.size, list(space.producers)
        if space.fixed or not space.producers:
            fixed[root] = space.fixed or "no convolution produces it"
            continue
        if set(space.producers) & set(skip):
            fixed[root] = "skipped"
            continue
        r = max([ratios[n] for n in space.producers if n in ratios], default=ratio)
        keep = max(min_channels, math.ceil(space.size * (1.0 - r)))
        keep = min(space.size, int(math.ceil(keep / divisor) * divisor))
        if keep >= space.size:
            continue
        scores = importance(graph, root, criterion)
        order = np.argsort(-scores, kind="stable")
        kept[root] = np.sort(order[:keep])
    internal = {}
    for layer in model.layers:
        if not hasattr(layer, "internal_channel_scores") or layer.name in set(skip):
            continue
        r = ratios.get(layer.name, ratio)
        maps, changed = [], False
        for scores in layer.internal_channel_scores():  # [groups, width]: each group keeps its best filters
            groups, width = scores.shape
            keep = max(1, math.ceil(width * (1.0 - r)), math.ceil(min(min_channels, groups * width) / groups))
            keep = min(width, keep)
            changed |= keep < width
            maps.append(np.sort(np.argsort(-scores, axis=1, kind="stable")[:, :keep], axis=1))
        if changed:
            internal[layer.name] = maps
    return PruningPlan(kept, sizes, members, fixed, graph, internal)


def decay_targets(model, pruning_plan: PruningPlan) -> list:
    """``[(variable, removed indices, axis)]``, one entry per variable: the entries of ``model``'s variables that
    carry the output of the channels ``pruning_plan`` removes. Those are the γ/β of every BN that reads them, the
    filters and biases of their producers not followed by a BN of their own, and depthwise biases. Scaling them by s
    scales those channels by s (s² where a depthwise stage and its BN follow); at 0 the channels are identically zero
    after every layer that keeps zero at zero (ReLU, hard-swish, linear), which is what lets :func:`apply` cut them
    without changing any output. ``model`` has the planned model's layer names (the planned model, a copy of it, or
    a distillation wrapper's student)."""
    graph = pruning_plan.graph
    out = []
    for root in pruning_plan.kept:
        removed = pruning_plan.removed(root)
        norms = set(graph.spaces[root].norms)
        for name, offset in graph.spaces[root].taps:
            consumers = [node.layer.name for node in graph.model.get_layer(name)._outbound_nodes]
            if len(consumers) == 1 and consumers[0] in norms:
                continue  # its BN (below) carries the channel: a scaled filter would be normalised away
            layer = model.get_layer(name)
            if _is_custom_producer(layer):
                out += [(v, removed + offset, axis) for v, axis in layer.output_channel_variables()]
                continue
            kernel = layer.pointwise_kernel if isinstance(layer, _L.SeparableConv2D) else layer.kernel
            out.append((kernel, removed + offset,
                        2 if isinstance(layer, _L.Conv2DTranspose) else len(kernel.shape) - 1))
            if getattr(layer, "bias", None) is not None:
                out.append((layer.bias, removed + offset, 0))
        for layer in graph.model.layers:
            ins = graph.inputs_of.get(layer.name)
            if not ins or len(ins) != 1:
                continue
            offsets = np.cumsum([0] + [graph.spaces[graph.find(s)].size for s in ins[0]])
            for seg, offset in zip(ins[0], offsets):
                if graph.find(seg) != root:
                    continue
                target = model.get_layer(layer.name)
                if isinstance(layer, _L.BatchNormalization):
                    out += [(v, removed + offset, 0) for v in (target.gamma, target.beta) if v is not None]
                elif isinstance(layer, _L.DepthwiseConv2D) and getattr(target, "bias", None) is not None:
                    out.append((target.bias, removed + offset, 0))
    merged = {}  # a BN over a concatenation carries several spaces: one entry per variable
    for variable, idx, axis in out:
        key = id(variable)
        prev = merged.get(key, (variable, np.zeros(0, np.int64), axis))[1]
        merged[key] = (variable, np.union1d(prev, idx).astype(np.int64), axis)
    return list(merged.values())


class ChannelDecay(keras.callbacks.Callback):
    """Fades the channels a plan removes to zero while the full model fine-tunes (gradual channel pruning).

    Before each step the removed channels' variables (:func:`decay_targets`) are multiplied by s(t)/s(t−1), with
    s(t) = (1 − (t − begin)/(end − begin))³ between ``begin_step`` and ``end_step`` (the optimizer's step count, so
    a resumed run continues the schedule), so that at step t they carry s(t) of what training gave them; from
    ``end_step`` on they are held at exactly 0 (also after each epoch, so validation and checkpoints see the cut
    model's function). ``model_of(model)`` picks the network inside the trained model (e.g.
    :func:`quantization.distill.inner_student`).
    """

    def __init__(self, pruning_plan: PruningPlan, end_step: int, begin_step: int = 0, power: float = 3.0,
                 model_of=None):
        super().__init__()
        if end_step <= begin_step or begin_step < 0:
            raise ValueError(f"ChannelDecay: need 0 <= begin_step < end_step, got {begin_step}, {end_step}")
        if not power > 0:
            raise ValueError(f"ChannelDecay: power must be > 0, got {power}")
        self.plan, self.begin, self.end, self.power = pruning_plan, int(begin_step), int(end_step), float(power)
        self.model_of = model_of
        self._targets = []

    def scale(self, step: int) -> float:
        """s(step): the fraction of their trained value the removed channels keep."""
        if step <= self.begin:
            return 1.0
        if step >= self.end:
            return 0.0
        return (1.0 - (step - self.begin) / (self.end - self.begin)) ** self.power

    def on_train_begin(self, logs=None):
        import tensorflow as tf
        net = self.model_of(self.model) if self.model_of else self.model
        self._targets = []
        for variable, idx, axis in decay_targets(net, self.plan):
            mask = np.ones(variable.shape[axis], dtype=variable.dtype.as_numpy_dtype)
            mask[idx] = 0.0
            shape = [1] * len(variable.shape)
            shape[axis] = -1
            self._targets.append((variable, tf.constant(mask.reshape(shape))))

        @tf.function
        def multiply(factor):  # one graph call per step instead of two eager ops per variable
            for variable, keep in self._targets:
                variable.assign(variable * (keep + (1.0 - keep) * tf.cast(factor, variable.dtype)))

        self._multiply_fn = multiply

    def _multiply(self, factor: float):
        import tensorflow as tf
        self._multiply_fn(tf.constant(factor, tf.float32))

    def _step(self) -> int:
        # tfalign's trainer passes its step counter in params; keras' fit has it on the compiled model.
        iterations = (self.params or {}).get("iterations")
        if iterations is None:
            iterations = self.model.optimizer.iterations
        return int(iterations.numpy())

    def on_train_batch_begin(self, batch, logs=None):
        step = self._step()
        if step <= self.begin:
            return
        prev = self.scale(step - 1)
        self._multiply(self.scale(step) / prev if prev > 0 else 0.0)

    def on_epoch_end(self, epoch, logs=None):
        if self._step() >= self.end:
            self._multiply(0.0)


def _indices(graph: _Graph, segs, kept: dict) -> Optional[np.ndarray]:
    """Kept channel indices of a tensor made of ``segs``; None when nothing is removed."""
    parts, offset, changed = [], 0, False
    for s in segs:
        r = graph.find(s)
        size = graph.spaces[r].size
        if r in kept:
            parts.append(kept[r] + offset)
            changed = True
        else:
            parts.append(np.arange(size) + offset)
        offset += size
    return np.concatenate(parts) if changed else None


def apply(model, pruning_plan: PruningPlan):
    """The slimmer model: rebuilt from ``model``'s config with fewer filters, weights copied and sliced."""
    graph = pruning_plan.graph
    if graph is None or graph.model is not model:
        raise ValueError("apply: the plan was made for another model; call plan(model, ...) on this one")
    kept = pruning_plan.kept
    new_width = {}
    internal = {name: model.get_layer(name).internal_pruned(keep) for name, keep in pruning_plan.internal.items()}
    for layer in model.layers:
        outs = graph.outputs_of.get(layer.name)
        if _is_producer(layer) and outs:
            idx = _indices(graph, outs[0], kept)
            if idx is not None:
                new_width[layer.name] = len(idx)
        elif _is_custom_producer(layer) and outs:
            in_idx = _indices(graph, graph.inputs_of[layer.name][0], kept)
            out_idx = _indices(graph, outs[0], kept)
            if in_idx is not None or out_idx is not None:
                internal[layer.name] = layer.channels_sliced(in_idx, out_idx)
    config = model.get_config()
    for entry in config["layers"]:
        name = entry["config"]["name"]
        # Custom layers are rebuilt from their recorded input shape before they are called: the old width.
        entry.pop("build_config", None)
        if name in new_width:
            key = "units" if entry["class_name"] == "Dense" else "filters"
            entry["config"][key] = new_width[name]
        if name in internal:
            entry["config"] = {**entry["config"], **internal[name][0]}
    slim = model.__class__.from_config(config)
    for layer in model.layers:
        if not layer.weights:
            continue
        target = slim.get_layer(layer.name)
        if layer.name in internal:  # its inputs and outputs are fixed spaces: only its inside changes
            target.set_weights(internal[layer.name][1])
            continue
        ins = graph.inputs_of.get(layer.name) or [[]]
        outs = graph.outputs_of.get(layer.name) or [[]]
        in_idx = _indices(graph, ins[0], kept) if len(ins) == 1 else None
        out_idx = _indices(graph, outs[0], kept) if len(outs) == 1 else None
        target.set_weights(_slice_weights(layer, in_idx, out_idx))
    return slim


def _take(a, idx, axis):
    return a if idx is None else np.take(a, idx, axis=axis)


def _slice_weights(layer, in_idx, out_idx) -> list:
    weights = [np.asarray(w) for w in layer.get_weights()]
    if isinstance(layer, _L.SeparableConv2D):
        depthwise, pointwise = weights[:2]
        mult = depthwise.shape[3]
        # Pointwise input channel i·m + j reads depthwise output j of input channel i.
        pw_in = None if in_idx is None else (np.asarray(in_idx)[:, None] * mult + np.arange(mult)).reshape(-1)
        out = [_take(depthwise, in_idx, 2), _take(_take(pointwise, pw_in, 2), out_idx, 3)]
        return out + [_take(b, out_idx, 0) for b in weights[2:]]
    if isinstance(layer, _L.DepthwiseConv2D):
        out = [_take(weights[0], in_idx, 2)]
        return out + [_take(b, in_idx, 0) for b in weights[1:]]
    if isinstance(layer, _L.Conv2DTranspose):
        out = [_take(_take(weights[0], out_idx, 2), in_idx, 3)]
        return out + [_take(b, out_idx, 0) for b in weights[1:]]
    if isinstance(layer, (_L.Conv2D, _L.Dense)) and _is_producer(layer):
        kernel = weights[0]
        kernel = _take(_take(kernel, in_idx, kernel.ndim - 2), out_idx, kernel.ndim - 1)
        return [kernel] + [_take(b, out_idx, 0) for b in weights[1:]]
    if isinstance(layer, _L.BatchNormalization):
        return [_take(w, in_idx, 0) for w in weights]
    if in_idx is not None or out_idx is not None:
        raise ValueError(f"layer '{layer.name}' ({type(layer).__name__}): cannot slice its weights; it should have "
                         "been marked fixed (please report)")
    return weights


def prune_channels(model, ratio: float, criterion: str = "l1", **kwargs):
    """:func:`plan` + :func:`apply` in one call: ``(slim_model, plan)``."""
    p = plan(model, ratio, criterion, **kwargs)
    return apply(model, p), p


def prune_gradually(base, pruning_plan: PruningPlan, train, end_step: int, distill_weight: float = 0.0,
                    **distill_options):
    """Gradual channel pruning: ``base`` fine-tunes (a copy; with itself as teacher when ``distill_weight`` > 0)
    while :class:`ChannelDecay` fades the removed channels to zero over ``end_step`` steps, then it is cut.

    ``train(build, callbacks)`` runs the fine-tune and returns the trained model (e.g. a closure over
    :func:`quantization.pruning.fine_tune`), for at least ``end_step`` steps. Returns ``(slim, info)``; ``info``
    holds ``cut_gap``, the largest output difference between the faded full model and the cut one on random
    inputs (~1e-6: the cut changed nothing), and ``distill`` (what was distilled). ``distill_options``
    (``outputs``, ``match``) go to :func:`quantization.distill.builder`.
    """
    from quantization import distill
    build, teach = distill.builder(base, base, distill_weight, **distill_options)
    decay = ChannelDecay(pruning_plan, end_step=end_step, model_of=distill.inner_student)
    trained = distill.student_of(train(build, [decay]))
    if decay._step() < end_step:
        raise ValueError(f"prune_gradually: the fine-tune ran {decay._step()} steps, fewer than end_step={end_step}: "
                         "the removed channels have not reached zero")
    slim = apply(trained, pruning_plan.rebind(trained))
    x = np.random.default_rng(0).uniform(-1, 1, (2, *trained.inputs[0].shape[1:])).astype(np.float32)
    import tensorflow as tf
    a, b = tf.nest.flatten(trained(x, training=False)), tf.nest.flatten(slim(x, training=False))
    gap = max(float(np.max(np.abs(np.asarray(u) - np.asarray(v)))) for u, v in zip(a, b))
    return slim, {"cut_gap": gap, "distill": teach, "end_step": int(end_step)}


def sensitivity(model, evaluate, ratio: float = 0.5, criterion: str = "l1", divisor: int = 8, min_channels: int = 8,
                skip: Iterable[str] = (), only: Optional[Iterable[str]] = None, progress: bool = False) -> list:
    """Cut one channel space at a time and measure what it costs: where a plan can remove MACs cheaply.

    A uniform ratio treats every space alike, but spaces differ by orders of magnitude in what they cost and carry
    (on the converged dense U-Net, halving one of the stem's residual convolutions moved NME by 2.5 % before any
    fine-tune and saved 8 % of the MACs but no time, halving a last decoder level cost 150 % and saved 13 % of the
    MACs and 16 % of the latency: ``bench/results/channel_sensitivity_dense_unet.json``). For every prunable space
    (and every layer pruning its inside), the model with only that space cut at ``ratio`` (``criterion``,
    ``divisor``, ``min_channels`` as in :func:`plan`) is built and passed to ``evaluate(slim) -> dict`` (e.g. NME,
    MACs, latency of its export); no fine-tune. ``only``: producer layer names to restrict the sweep to (any
    producer of a space names it). Cuts interact, so a plan assembled from these rows still has to be measured.

    Returns one dict per space, in the model's layer order: ``layer`` (a producer's name, usable as a key of
    ``plan(ratios=...)`` and ``--channel-layer-ratio``), ``producers``, ``size``, ``kept`` and ``evaluate``'s keys.
    """
    full = plan(model, ratio, criterion, divisor=divisor, min_channels=min_channels, skip=skip)
    entries = [(full.members[r], len(full.kept[r]), full.sizes[r],
                dataclasses.replace(full, kept={r: full.kept[r]}, internal={})) for r in full.kept]
    sizes = full.internal_sizes
    entries += [([name], sum(k.size for k in maps), sum(k.shape[0] * w for k, w in zip(maps, sizes[name])),
                 dataclasses.replace(full, kept={}, internal={name: maps})) for name, maps in full.internal.items()]
    order = {layer.name: i for i, layer in enumerate(model.layers)}
    entries.sort(key=lambda e: min(order[n] for n in e[0]))
    if only is not None:
        only = set(only)
        unknown = only - {n for e in entries for n in e[0]}
        if unknown:
            raise ValueError(f"sensitivity: {sorted(unknown)} produce no prunable channel space of model "
                             f"'{model.name}' at ratio {ratio} (fixed, skipped, or too narrow to cut)")
        entries = [e for e in entries if only & set(e[0])]
    if progress:
        from tqdm import tqdm
        entries = tqdm(entries, desc="channel spaces", unit="space")
    out = []
    for producers, kept, size, single in entries:
        # The earliest producer names the space, so a row's name is stable across runs of the same model.
        name = min(producers, key=lambda n: order[n])
        result = evaluate(apply(model, single))
        out.append({"layer": name, "producers": list(producers), "size": int(size), "kept": int(kept),
                    **(result if isinstance(result, dict) else {"value": result})})
    return out


def count_params(model) -> int:
    return int(sum(np.prod(w.shape) for w in model.weights))


__all__ = ["CRITERIA", "PruningPlan", "plan", "apply", "prune_channels", "importance", "count_params",
           "decay_targets", "ChannelDecay", "prune_gradually", "sensitivity"]
