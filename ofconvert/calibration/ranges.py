"""Which tensors get a range (:func:`calibration_plan`), the model fingerprint a
cache is tied to, and the algorithms (:class:`RangeCollector`: minmax, percentile,
entropy over streamed histograms) run over the fp32 model in ONNX Runtime
(:func:`collect_ranges`)."""
import hashlib
import math

import numpy as np

from ..errors import DataError, OfconvertError, first_line

#: "mixed": minmax on tensors a Clip bounds (ReLU6 outputs: their top value is common, not an
#: outlier), entropy on the others (see :func:`bounded_tensors`)
METHODS = ("entropy", "percentile", "minmax", "mixed")
INT8_MAX = 127.0
#: smallest dynamic range written (a tensor that is always 0 still needs a usable scale)
MIN_AMAX = 1e-6


def calibration_plan(model):
    """(tensors, sources): the tensors that get a range, in graph order, and for
    each the tensor whose statistics give it. Tensors = every activation that
    :func:`ofconvert.precision.quantize_qdq` puts a Q/DQ pair on, for either target
    (inputs of Conv/Gemm/MatMul, both inputs of residual Adds, pooling and Pad
    inputs), plus the tensors they take their scale from. Outputs of MaxPool / Pad /
    Reshape / Flatten / ... are not measured: they reuse their input's range (so
    ONNX Runtime can drop the Q/DQ pairs around them)."""
    from ..precision import TARGETS, qdq_activations, scale_sources

    acts = []
    for target in TARGETS:
        acts += [t for t in qdq_activations(model, target) if t not in acts]
    sources = scale_sources(model, acts)
    wanted = set(acts) | set(sources.values())
    order = [i.name for i in model.graph.input] + [o for n in model.graph.node for o in n.output]
    tensors = [t for t in dict.fromkeys(order) if t in wanted]
    sources.update({s: s for s in sources.values()})
    return tensors, sources


def calibration_tensors(model):
    """Names of the tensors a calibration cache for ``model`` lists (see
    :func:`calibration_plan`)."""
    return calibration_plan(model)[0]


def model_fingerprint(model):
    """sha256 of what the calibration depends on: the graph's structure, attributes,
    activation names and weight *values*, not the names of initializers, node names,
    doc strings or metadata. (Two exports of the same model name their shared
    constants differently, e.g. ``const390`` vs ``const397``, so the file hash alone
    would never let a re-exported model reuse its cache.)"""
    h = hashlib.sha256()
    g = model.graph
    inits = {}
    for t in g.initializer:
        d = hashlib.sha256()
        d.update(f"{t.data_type}:{list(t.dims)}:".encode())
        t2 = type(t)()
        t2.CopyFrom(t)
        t2.name, t2.doc_string = "", ""
        d.update(t2.SerializeToString())
        inits[t.name] = "init:" + d.hexdigest()
    for vi in list(g.input) + list(g.output):
        if vi.name not in inits:
            h.update(("io:" + vi.name + ":" + vi.type.SerializeToString().hex() + "\n").encode())
    for n in g.node:
        attrs = sorted((a.name, a.SerializeToString().hex()) for a in n.attribute)
        ins = [inits.get(i, i) for i in n.input]
        h.update(repr((n.op_type, n.domain, ins, list(n.output), attrs)).encode())
    for o in model.opset_import:
        h.update(f"opset:{o.domain}:{o.version}".encode())
    return h.hexdigest()


def model_input_name(model):
    init = {t.name for t in model.graph.initializer}
    inputs = [i.name for i in model.graph.input if i.name not in init]
    if len(inputs) != 1:
        raise OfconvertError(f"calibration needs a model with one image input, this one has {inputs}")
    return inputs[0]


class RangeCollector:
    """Streams per-tensor statistics batch by batch (nothing kept but a histogram of
    ``num_bins`` float64 counts per tensor) and turns them into a dynamic range
    (amax) with one of :data:`METHODS`."""

    def __init__(self, method, options, bounded=()):
        if method not in METHODS:
            raise OfconvertError(f"unknown calibration method {method!r}; known: {', '.join(METHODS)}")
        self.method = method
        self.options = options
        self.bounded = frozenset(bounded)   # "mixed": these tensors take their minmax range
        self.sums, self.counts = {}, {}     # tensor -> per-channel (axis 1) sums, and values per channel
        self.amax = {}       # tensor -> max |x| seen
        self.hist = {}       # tensor -> counts of |x| over [0, hist_max[tensor]]
        self.hist_max = {}
        self.zeros = {}      # tensor -> number of exact zeros (kept out of the histogram)

    def collect(self, name, x):
        a = np.abs(np.asarray(x, dtype=np.float32).ravel())    # our own copy, modified in place below
        if a.size == 0:
            return
        m = float(a.max())
        if not math.isfinite(m):
            raise OfconvertError(f"calibration: tensor {name!r} has non-finite values (inf/NaN) on real images")
        self.amax[name] = max(self.amax.get(name, 0.0), m)
        if self.method == "minmax":
            return
        n = self.options.num_bins
        if name not in self.hist:
            self.hist[name], self.zeros[name] = np.zeros(n, np.float64), 0
            self.hist_max[name] = m if m > 0 else MIN_AMAX
        elif m > self.hist_max[name]:
            # grow the range: re-bin the old counts onto the wider grid (linear within bins)
            top = self.hist_max[name]
            cum = np.concatenate([[0.0], np.cumsum(self.hist[name])])
            self.hist[name] = np.diff(np.interp(np.linspace(0.0, m, n + 1), np.linspace(0.0, top, n + 1), cum))
            self.hist_max[name] = m
        # index 0: exact zeros; j = 1..n: |x| in ((j-1)w, jw]  (ceil keeps zeros apart at no extra pass)
        np.multiply(a, np.float32(n / self.hist_max[name]), out=a)
        np.ceil(a, out=a)
        idx = a.astype(np.int64)
        np.minimum(idx, n, out=idx)
        counts = np.bincount(idx, minlength=n + 1)
        self.zeros[name] += int(counts[0])
        self.hist[name] += counts[1:]

    def collect_mean(self, name, x):
        """Accumulate the per-channel (axis 1) mean of ``x`` (the bias correction's E[x])."""
        x = np.asarray(x)
        if x.ndim < 2 or x.size == 0:
            return
        s = x.sum(axis=(0,) + tuple(range(2, x.ndim)), dtype=np.float64)   # no float64 / transposed copy
        self.sums[name] = self.sums.get(name, 0.0) + s
        self.counts[name] = self.counts.get(name, 0) + x.size // x.shape[1]

    def means(self):
        """{tensor: per-channel mean (float32 list)} of the tensors seen by :meth:`collect_mean`."""
        return {t: [float(v) for v in (s / self.counts[t]).astype(np.float32)] for t, s in self.sums.items()}

    def compute(self, name, method=None):
        """amax (dynamic range) of one tensor, by ``method`` (default: the collector's;
        a histogram-collecting collector serves every method from one pass)."""
        method = method or self.method
        if method not in METHODS or (method != "minmax" and self.method == "minmax"):
            raise OfconvertError(f"calibration method {method!r} cannot be computed from {self.method!r} statistics")
        m = self.amax.get(name, 0.0)
        if method == "minmax" or (method == "mixed" and name in self.bounded) or m <= 0 \
                or name not in self.hist:
            return max(m, MIN_AMAX)
        hist, width = self.hist[name], self.hist_max[name] / self.options.num_bins
        if method == "percentile":
            cum = self.zeros[name] + np.cumsum(hist)
            i = int(np.searchsorted(cum, cum[-1] * self.options.percentile / 100.0))
            return max(min((i + 1) * width, m), MIN_AMAX)
        # exact zeros are exact at every scale: they say nothing about the best threshold,
        # and their spike (ReLU/ReLU6 outputs, padding) drags the KL optimum towards
        # tiny thresholds (see docs/precision.md)
        return max(entropy_amax(hist, width, self.options.num_quant_bins), MIN_AMAX)


def entropy_amax(hist, width, num_quant_bins=128):
    """TensorRT's EntropyCalibration2 threshold search (the recipe of NVIDIA's "8-bit
    inference with TensorRT", GTC 2017, as in pytorch-quantization): for each
    candidate threshold i (in bins, ``num_quant_bins`` .. ``len(hist)``), P = the
    first i bins with the outliers folded into the last one; Q = those bins (without
    the outliers) merged into ``num_quant_bins`` levels and spread back evenly over
    the non-empty bins; keep the i minimising KL(P || Q). Returns ``i * width``.

    Closed form over cumulative sums (within a level Q is constant, so
    sum p*log q needs only per-level sums): all ~2000 candidates at once in
    O(candidates * levels), instead of O(candidates * bins) per tensor."""
    h = np.asarray(hist, np.float64)
    n, nq = len(h), int(num_quant_bins)
    if n <= nq or h.sum() <= 0:
        return n * width
    ch = np.concatenate([[0.0], np.cumsum(h)])
    cnz = np.concatenate([[0.0], np.cumsum(h > 0)])
    with np.errstate(divide="ignore", invalid="ignore"):
        chl = np.concatenate([[0.0], np.cumsum(np.where(h > 0, h * np.log(np.where(h > 0, h, 1.0)), 0.0))])
    i = np.arange(nq, n + 1)                                   # candidates: bins kept
    tail = ch[n] - ch[i]                                        # outliers folded into bin i-1
    edges = (np.arange(nq + 1)[None, :] * i[:, None] + nq - 1) // nq   # level g = bins [edges[g], edges[g+1])
    gsum = np.diff(ch[edges], axis=1)                           # per-level sum of kept bins (no outliers)
    gcnt = np.diff(cnz[edges], axis=1)                          # per-level count of non-empty bins
    last = h[i - 1]
    gcnt[:, -1] += (last == 0) & (tail > 0)                     # bin i-1 non-empty through its outliers
    psum = gsum.copy()
    psum[:, -1] += tail
    plast = last + tail
    total, qtotal = ch[n], ch[i]
    with np.errstate(divide="ignore", invalid="ignore"):
        sum_plogp = chl[i - 1] + np.where(plast > 0, plast * np.log(np.where(plast > 0, plast, 1.0)), 0.0)
        logq = np.log(np.where(gcnt > 0, gsum / np.where(gcnt > 0, gcnt, 1.0), 1.0))
        sum_plogq = np.where(psum > 0, psum * logq, 0.0).sum(1)
        kl = sum_plogp / total - np.log(total) + np.log(qtotal) - sum_plogq / total
    invalid = ((psum > 0) & (gsum <= 0)).any(1) | (qtotal <= 0) | ~np.isfinite(kl)
    kl[invalid] = np.inf
    if not np.isfinite(kl).any():
        return n * width
    return int(i[int(np.argmin(kl))]) * width



def bounded_tensors(model):
    """Outputs of Clip nodes with a constant finite upper bound (ReLU6 & co.)."""
    from onnx import numpy_helper

    consts = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    consts.update({n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in model.graph.node
                   if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"})
    out = set()
    for n in model.graph.node:
        if n.op_type != "Clip":
            continue
        hi = next((a.f for a in n.attribute if a.name == "max"), None)
        if len(n.input) > 2 and n.input[2] in consts:
            hi = float(np.asarray(consts[n.input[2]]).ravel()[0])
        if hi is not None and math.isfinite(hi):
            out.add(n.output[0])
    return out


def collect_ranges(model, reader, method, options):
    """``{tensor: amax}`` of :func:`collect_statistics`."""
    return collect_statistics(model, reader, method, options)[0]


def collect_statistics(model, reader, method, options):
    """Run the fp32 ``model`` (ModelProto) in ONNX Runtime over ``reader`` with the
    measured tensors exposed as outputs; returns ``({tensor: amax}, {tensor:
    per-channel mean})`` for every tensor of :func:`calibration_plan`. Only one
    batch of activations is alive at a time."""
    stats = Statistics(model, reader, method, options)
    return stats.ranges(method), stats.means


class Statistics:
    """One pass of the fp32 ``model`` over ``reader`` (see :func:`collect_statistics`):
    the streamed histograms, maxima and channel means of the measured tensors. Unless
    collected for ``"minmax"`` only, :meth:`ranges` gives every method from the same
    pass (the histogram methods share their histograms; minmax needs only the maxima)."""

    def __init__(self, model, reader, method, options):
        self.plan, self.sources = calibration_plan(model)
        self.tensors = [t for t in self.plan if self.sources[t] == t]
        sess = _augmented_session(model, self.tensors, options)
        self.collector = collector = RangeCollector(method, options, bounded_tensors(model))
        reader.rewind()
        for feed in reader:
            for name, value in zip(self.tensors, sess.run(self.tensors, feed)):
                collector.collect(name, value)
                collector.collect_mean(name, value)
        if reader.num_used == 0:
            raise DataError(f"no readable calibration images ({len(reader.skipped)} unreadable file(s), "
                            f"e.g. {reader.skipped[0] if reader.skipped else '-'})")
        self.means = collector.means()
        self.num_used, self.skipped = reader.num_used, list(reader.skipped)

    def ranges(self, method):
        """{tensor: amax} of every tensor of the plan (pass-through tensors take their source's)."""
        amax = {t: self.collector.compute(t, method) for t in self.tensors}
        return {t: amax[self.sources[t]] for t in self.plan}


def _augmented_session(model, tensors, options):
    """An ONNX Runtime session of ``model`` with ``tensors`` added as outputs."""
    import onnx

    from ..onnx_io import ort_session

    aug = onnx.ModelProto()
    aug.CopyFrom(model)
    outs = {o.name for o in aug.graph.output}
    for t in tensors:
        if t not in outs:
            aug.graph.output.append(onnx.ValueInfoProto(name=t))
    try:
        return ort_session(aug, purpose="statistics", threads=options.threads)
    except Exception as e:
        raise OfconvertError(f"ONNX Runtime cannot load the model for calibration: {first_line(e)}") from None
