"""Per-layer sensitivity, measured in the user's terms, and the order the search
keeps layers in float; :class:`Quantization`: how every candidate model is made.

* ``"flips"`` (default, :func:`flip_effects`): each layer alone kept in float,
  every other layer quantized (int8) or cast (fp16), run on the whole check set:
  which of the all-quantized model's flips it *fixes* (top-1 back to fp32's),
  which images it *breaks*, how much the mean KL(softmax fp32 || softmax
  candidate) drops and, where the check set has a :class:`~.search.SpeedMeter`
  and the layer fixes something, what keeping it in float costs in speed.
  :func:`rank` then orders the layers greedily: the layer that fixes the most
  not-yet-fixed flips (minus the ones it breaks) per unit of speed lost, then
  the rest by KL gain.
* ``"kl"`` (:func:`kl_effects`): each layer alone quantized, the rest fp32
  (Polygraphy / ModelOpt style), mean KL on a few check images; order by
  decreasing KL. It predicted flips poorly on efficientnet_lite0 (docs/budget.md)
  and is kept to compare.
"""
import dataclasses
from typing import List, Optional

import numpy as np

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


@dataclasses.dataclass(frozen=True)
class Quantization:
    """How a candidate is made from the fp32 model: int8 Q/DQ for ``target``
    (``"trt"``: TensorRT, ``"cpu"``: ONNX Runtime CPU) with the calibration
    ``scales`` (biases corrected with the calibration ``means`` when given), or
    fp16 (fp32 I/O; ``scales``, ``target`` and ``means`` unused)."""

    precision: str                  # "int8" or "fp16"
    scales: Optional[dict] = None   # {tensor: scale}
    target: Optional[str] = None    # "trt" or "cpu"
    means: Optional[dict] = None    # {tensor: per-channel mean} (calibrate(...).means)

    def build(self, model, exclude=()):
        """The candidate ModelProto, the nodes in ``exclude`` kept in float."""
        from ..precision import fp16_model, quantize_model

        if self.precision == "int8":
            return quantize_model(model, self.scales, self.target, exclude, means=self.means)
        return fp16_model(model, keep_io_types=True, exclude=exclude)


def flip_effects(model, layers, quant, check, base, base_speedup=None, log=None):
    """``"flips"`` mode: {layer: :class:`Effect`} of keeping each layer of ``layers``
    ({layer: [node keys]}, :func:`ofconvert.precision.qdq_layers`) alone in float,
    the rest made as ``quant`` (a :class:`Quantization`) says, run on the whole
    check set ``check`` (a :class:`~.data.CheckSet`); ``base``: the all-quantized
    model's logits. Where the check set has a meter and ``base_speedup`` (the
    all-quantized model's ratio vs fp32) is known, the layers that fix something
    are timed."""
    ref_top1 = check.ref.argmax(1)
    wrong = base.argmax(1) != ref_top1
    base_kl = kl_to_reference(check.ref, base)
    out = {}
    for i, (name, nodes) in enumerate(layers.items()):
        sess = D.session(quant.build(model, set(nodes)), check.threads)
        o = D.logits(sess, check.images)
        top1 = o.argmax(1)
        e = Effect(fixes=np.flatnonzero(wrong & (top1 == ref_top1)).tolist(),
                   breaks=np.flatnonzero(~wrong & (top1 != ref_top1)).tolist(),
                   kl_gain=base_kl - kl_to_reference(check.ref, o))
        if check.meter is not None and base_speedup and len(e.fixes) > len(e.breaks):
            _, _, e.speedup = check.meter(sess)
            e.cost = max(0.0, 1.0 / e.speedup - 1.0 / base_speedup)
        out[name] = e
        _progress(log, i, layers)
    return out


def kl_effects(model, layers, quant, check, num_images=64, log=None):
    """``"kl"`` mode: {layer: :class:`Effect`} of quantizing each layer of ``layers``
    alone (as ``quant`` says), the rest fp32: its mean KL to fp32 on the first
    ``num_images`` images of ``check``."""
    n = min(num_images, len(check.images))
    every = {(nd.name or nd.output[0]) for nd in model.graph.node} if quant.precision == "fp16" else \
        {k for v in layers.values() for k in v}
    out = {}
    for i, (name, nodes) in enumerate(layers.items()):
        o = D.logits(D.session(quant.build(model, every - set(nodes)), check.threads), check.images, 32, n)
        out[name] = Effect(fixes=[], breaks=[], kl_gain=kl_to_reference(check.ref[:n], o))
        _progress(log, i, layers)
    return out


def _progress(log, i, layers):
    if log and (i + 1) % 10 == 0:
        log(f"  sensitivity {i + 1}/{len(layers)}")


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
