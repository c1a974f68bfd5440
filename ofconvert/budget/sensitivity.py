"""Per-layer sensitivity: how far the logits move from fp32 when one layer alone is
quantized (int8) or cast (fp16) and everything else stays fp32 ("one", Polygraphy /
ModelOpt style), or when every layer but one is ("all-but-one": the gain of keeping
that layer in float). Score = mean KL(softmax(fp32) || softmax(candidate)) over a
few batches of check images; the search keeps layers in float in decreasing order."""
import numpy as np

from ..errors import OfconvertError
from . import data as D

MODES = ("one", "all-but-one")


def kl_to_reference(ref, out):
    """Mean KL(softmax(ref) || softmax(out)) per image (nats)."""
    def logsoftmax(z):
        z = z - z.max(1, keepdims=True)
        return z - np.log(np.exp(z).sum(1, keepdims=True))

    lp, lq = logsoftmax(ref.astype(np.float64)), logsoftmax(out.astype(np.float64))
    return float(np.mean(np.sum(np.exp(lp) * (lp - lq), 1)))


def build(model, precision, scales, target, exclude):
    """The candidate ModelProto: int8 Q/DQ for ``target`` or fp16 (fp32 I/O), with
    the nodes in ``exclude`` kept in float."""
    from ..precision import fp16_model, quantize_model

    if precision == "int8":
        return quantize_model(model, scales, target, exclude)
    return fp16_model(model, keep_io_types=True, exclude=exclude)


def layer_sensitivity(model, layers, precision, scales, target, images, ref, mode="one", threads=2,
                      num_images=64, log=None):
    """{layer: score} for every layer of ``layers`` ({layer: [node keys]},
    :func:`ofconvert.precision.qdq_layers`); ``ref``: fp32 logits of ``images``."""
    if mode not in MODES:
        raise OfconvertError(f"unknown sensitivity mode {mode!r}; known: {', '.join(MODES)}")
    n = min(num_images, len(images))
    ref = ref[:n]
    all_nodes = {k for v in layers.values() for k in v}
    if precision == "fp16" and mode == "one":
        all_nodes = {(nd.name or nd.output[0]) for nd in model.graph.node}
    scores = {}
    for i, (name, nodes) in enumerate(layers.items()):
        exclude = (all_nodes - set(nodes)) if mode == "one" else set(nodes)
        out = D.logits(D.session(build(model, precision, scales, target, exclude), threads), images, 32, n)
        scores[name] = kl_to_reference(ref, out)
        if log and (i + 1) % 10 == 0:
            log(f"  sensitivity {i + 1}/{len(layers)}")
    if mode == "all-but-one":   # the gain of keeping the layer in float: full-model error minus this one's
        full = kl_to_reference(ref, D.logits(D.session(build(model, precision, scales, target, set()), threads),
                                             images, 32, n))
        scores = {k: full - v for k, v in scores.items()}
    return scores
