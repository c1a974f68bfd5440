"""Per-layer sensitivity, measured in the user's terms, and the order the search
keeps layers in float.

* ``"flips"`` (default): each layer alone kept in float, every other layer
  quantized (int8) or cast (fp16), run on the whole check set: which of the
  all-quantized model's flips it *fixes* (top-1 back to fp32's), which images it
  *breaks*, how much the mean KL(softmax fp32 || softmax candidate) drops and,
  where a :class:`~.search.SpeedMeter` is given and the layer fixes something,
  what keeping it in float costs in speed. :func:`rank` then orders the layers
  greedily: the layer that fixes the most not-yet-fixed flips (minus the ones it
  breaks) per unit of speed lost, then the rest by KL gain.
* ``"kl"``: each layer alone quantized, the rest fp32 (Polygraphy / ModelOpt
  style), mean KL on a few check images; order by decreasing KL. It predicted
  flips poorly on efficientnet_lite0 (docs/budget.md) and is kept to compare.
"""
import dataclasses
from typing import List, Optional

import numpy as np

from ..errors import OfconvertError
from . import data as D

MODES = ("flips", "kl")
#: speed cost floor (fraction of the fp32 time per image) in gain-per-cost ranking: timing noise guard
COST_FLOOR = 0.02


@dataclasses.dataclass
class Effect:
    fixes: List[int]                 # check images flipped when all is quantized, right with this layer float
    breaks: List[int]                # check images right when all is quantized, flipped with this layer float
    kl_gain: float                   # mean KL to fp32: all quantized minus this layer float (kl mode: its KL)
    speedup: Optional[float] = None  # this candidate vs fp32, timed interleaved (only where measured)
    cost: Optional[float] = None     # time per image added vs all quantized, in fp32 time units

    def to_dict(self):
        d = dataclasses.asdict(self)
        d["fixes"], d["breaks"] = len(self.fixes), len(self.breaks)
        return d


def kl_to_reference(ref, out):
    """Mean KL(softmax(ref) || softmax(out)) per image (nats)."""
    def logsoftmax(z):
        z = z - z.max(1, keepdims=True)
        return z - np.log(np.exp(z).sum(1, keepdims=True))

    lp, lq = logsoftmax(ref.astype(np.float64)), logsoftmax(out.astype(np.float64))
    return float(np.mean(np.sum(np.exp(lp) * (lp - lq), 1)))


def build(model, precision, scales, target, exclude, means=None):
    """The candidate ModelProto: int8 Q/DQ for ``target`` (biases corrected with the
    calibration ``means`` when given) or fp16 (fp32 I/O), with the nodes in
    ``exclude`` kept in float."""
    from ..precision import fp16_model, quantize_model

    if precision == "int8":
        return quantize_model(model, scales, target, exclude, means=means)
    return fp16_model(model, keep_io_types=True, exclude=exclude)


def layer_effects(model, layers, precision, scales, target, images, ref, base, mode="flips", threads=2,
                  num_images=64, speed=None, base_speedup=None, log=None, means=None):
    """{layer: :class:`Effect`} for every layer of ``layers`` ({layer: [node keys]},
    :func:`ofconvert.precision.qdq_layers`); ``ref``: fp32 logits of ``images``,
    ``base``: the all-quantized model's. ``speed`` (a SpeedMeter) and
    ``base_speedup`` (the all-quantized model's ratio vs fp32): time the layers
    that fix something."""
    if mode not in MODES:
        raise OfconvertError(f"unknown sensitivity mode {mode!r}; known: {', '.join(MODES)}")
    out = {}
    if mode == "kl":
        n = min(num_images, len(images))
        every = {(nd.name or nd.output[0]) for nd in model.graph.node} if precision == "fp16" else \
            {k for v in layers.values() for k in v}
        for i, (name, nodes) in enumerate(layers.items()):
            o = D.logits(D.session(build(model, precision, scales, target, every - set(nodes), means), threads),
                         images, 32, n)
            out[name] = Effect([], [], kl_to_reference(ref[:n], o))
            if log and (i + 1) % 10 == 0:
                log(f"  sensitivity {i + 1}/{len(layers)}")
        return out
    ref_top1, base_top1 = ref.argmax(1), base.argmax(1)
    base_kl = kl_to_reference(ref, base)
    wrong = base_top1 != ref_top1
    for i, (name, nodes) in enumerate(layers.items()):
        sess = D.session(build(model, precision, scales, target, set(nodes), means), threads)
        o = D.logits(sess, images)
        top1 = o.argmax(1)
        e = Effect(np.flatnonzero(wrong & (top1 == ref_top1)).tolist(),
                   np.flatnonzero(~wrong & (top1 != ref_top1)).tolist(), base_kl - kl_to_reference(ref, o))
        if speed is not None and base_speedup and len(e.fixes) > len(e.breaks):
            _, _, e.speedup = speed(sess)
            e.cost = max(0.0, 1.0 / e.speedup - 1.0 / base_speedup)
        out[name] = e
        if log and (i + 1) % 10 == 0:
            log(f"  sensitivity {i + 1}/{len(layers)}")
    return out


def rank(effects, mode="flips", cost_floor=COST_FLOOR):
    """The order the search keeps layers in float (see the module docstring)."""
    if mode == "kl":
        return sorted(effects, key=lambda n: -effects[n].kl_gain)
    fixed, order, left = set(), [], dict(effects)

    def gain(n):
        return len(set(left[n].fixes) - fixed) - len(left[n].breaks)

    while left:
        best = max(left, key=lambda n: (gain(n) / ((left[n].cost or 0.0) + cost_floor), left[n].kl_gain))
        if gain(best) <= 0:
            break
        order.append(best)
        fixed |= set(left.pop(best).fixes)
    return order + sorted(left, key=lambda n: -left[n].kl_gain)
