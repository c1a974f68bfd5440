"""The search: which layers to keep in float so that the candidate's top-1
predictions are expected to differ from fp32's on at most ``budget`` check
images, as fast as possible. Every candidate is built and run on the whole check
set (flips and expected flips, :mod:`.judge`; the budget holds the expected
flips, the low-noise judge, and both are reported); CPU
candidates are timed in ONNX Runtime against the fp32 model *in the same moment*
(:class:`SpeedMeter`: fp32 and candidate runs alternate, medians of each, so load
from other processes hits both and the ratio stays honest).

A candidate is (k, j): the first k layers of the evaluator's ``order`` and the
last j layers of the graph (in topological order) kept in float.

* :func:`contiguous_search` (default, ``order`` = graph order): a float prefix
  (from the input) and/or a float suffix (head, classifier), so at most two
  int8/float boundaries: for each suffix length j the smallest prefix k meeting
  the budget, each of those timed, the fastest wins. On ONNX Runtime CPU every
  float island inside the int8 graph costs layout conversions (int8 runs NHWC,
  float Convs NCHWc) and Q/DQ: scattered float layers are several times dearer
  per flip fixed than a prefix (docs/budget.md).
* :func:`search` (``order`` = the :mod:`.sensitivity` ranking, j = 0): the first
  k layers of the ranking, every candidate timed.

Both bisect over k after galloping (0, 1, 2, 4, 8, ...): ~2 log2(K) candidates
per j. Expected flips are not strictly monotone in k; the answer is the smallest
measured k that meets the budget, and every step is reported."""
import dataclasses
import functools
import time
from typing import List, Optional

import numpy as np

from ..errors import OfconvertError
from . import data as D
from . import judge as J


@dataclasses.dataclass
class Step:
    k: int                        # the first k layers of the order kept in float (the prefix)
    flips: int                    # check images whose top-1 differs from fp32's
    flip_pct: float
    img_s: Optional[float]        # ONNX Runtime CPU throughput, None where not meaningful
    seconds: float                # time to build, check and time this candidate
    fp32_img_s: Optional[float] = None   # fp32, timed interleaved with this candidate
    speedup: Optional[float] = None      # img_s / fp32_img_s (median of per-round ratios)
    j: int = 0                           # the last j layers of the graph kept in float (the suffix)
    expected: Optional[float] = None     # expected flips on the check set (.judge.expected_flips)
    #: check images run; fewer than all: stopped once certain to exceed the budget (flips and
    #: expected are then lower bounds: counted on those images, .judge.expected_flips_lower_bound)
    images: Optional[int] = None

    @property
    def n_float(self):
        return self.k + self.j

    @property
    def judged(self):
        """What the budget is held to: the expected flips where measured, else the count."""
        return self.flips if self.expected is None else self.expected

    def to_dict(self):
        return dataclasses.asdict(self)


def _feed(sess, shape, batch):
    inp = sess.get_inputs()[0]
    x = np.random.default_rng(0).standard_normal((batch,) + tuple(shape)).astype(
        np.float16 if "float16" in inp.type else np.float32)
    return {inp.name: x}


def _rate(sess, feed, batch, min_run_s):
    n, t0 = 0, time.perf_counter()
    while True:
        sess.run(None, feed)
        n += 1
        dt = time.perf_counter() - t0
        if dt >= min_run_s:
            return n * batch / dt


def throughput(sess, shape, batch=8, runs=5, min_run_s=0.4):
    """Median img/s over ``runs`` runs of at least ``min_run_s`` each (after warm-up)."""
    feed = _feed(sess, shape, batch)
    for _ in range(3):
        sess.run(None, feed)
    return float(np.median([_rate(sess, feed, batch, min_run_s) for _ in range(runs)]))


#: what times the candidates: ONNX Runtime's CPU provider, or OpenVINO (the fastest CPU path, docs/cpu.md)
SPEED_BACKENDS = ("ort-cpu", "openvino")


class SpeedMeter:
    """img/s of a candidate and of the fp32 model, measured alternately
    (``rounds`` x (fp32 run, candidate run), each at least ``run_s``): returns
    (candidate img/s, fp32 img/s, median of the per-round ratios)."""

    def __init__(self, fp32_sess, shape, batch=8, rounds=5, run_s=0.3, backend="ort-cpu", threads=2):
        if backend not in SPEED_BACKENDS:
            raise OfconvertError(f"speed backend must be one of {', '.join(SPEED_BACKENDS)}, got {backend!r}")
        self.backend, self.threads = backend, threads
        fp32_sess = self._on_backend(fp32_sess)
        self.ref, self.shape, self.batch, self.rounds, self.run_s = fp32_sess, shape, batch, rounds, run_s
        self.ref_feed = _feed(fp32_sess, shape, batch)
        for _ in range(3):
            fp32_sess.run(None, self.ref_feed)

    def _on_backend(self, sess):
        """``sess`` (a budget.data.Session) as the backend that times it."""
        return sess if self.backend == "ort-cpu" else D.OpenVINOSession(sess.model, self.threads)

    def __call__(self, sess):
        sess = self._on_backend(sess)
        try:
            return self._measure(sess)
        finally:
            if sess is not None and hasattr(sess, "close"):
                sess.close()

    def _measure(self, sess):
        feed = _feed(sess, self.shape, self.batch)
        for _ in range(3):
            sess.run(None, feed)
        ref, cand = [], []
        for r in range(self.rounds):
            pair = [(self.ref, self.ref_feed, ref), (sess, feed, cand)]
            for s, f, out in (pair if r % 2 == 0 else pair[::-1]):
                out.append(_rate(s, f, self.batch, self.run_s))
        ratio = float(np.median(np.array(cand) / np.array(ref)))
        return float(np.median(cand)), float(np.median(ref)), ratio


class CandidateJudge:
    """Builds, checks (and times) the candidate with the first ``k`` layers of
    ``order`` (default: graph order) and the last ``j`` of the graph kept in
    float; memoised by (k, j). ``layers``: {layer: [node keys]}
    (:func:`ofconvert.precision.qdq_layers`); ``quant``: how the rest is made (a
    :class:`~.sensitivity.Quantization`); ``check``: what it is judged against (a
    :class:`~.data.CheckSet`; its meter, if any, times the candidates);
    ``time_all``: time every candidate when it is checked, else only those
    :meth:`timed` asks for."""

    def __init__(self, model, layers, quant, check, order=None, log=None, time_all=True):
        self.model, self.layers, self.quant, self.check = model, layers, quant, check
        self.graph = list(layers)          # qdq_layers order: topological
        self.order = list(self.graph if order is None else order)
        self.speed, self.time_all, self.log = check.meter, time_all, log
        self.steps = {}
        self.top1 = {}
        #: a budget (expected flips): a candidate's check run stops once certain to exceed it
        self.stop_above = None

    @functools.cached_property
    def cut(self):
        """:func:`cut_sizes` of the graph's layers (shape inference: only a timed search reads it)."""
        return cut_sizes(self.model, self.graph)

    def names(self, k, j=0):
        """The layers kept in float: the prefix, then the suffix."""
        suffix = [n for n in self.graph[len(self.graph) - j:] if n not in self.order[:k]] if j else []
        return self.order[:k] + suffix

    def exclude(self, k, j=0):
        return {nd for name in self.names(k, j) for nd in self.layers[name]}

    def model_for(self, k, j=0):
        return self.quant.build(self.model, self.exclude(k, j))

    @property
    def n_check(self):
        """The number of check images."""
        return len(self.check.ref)

    def _key(self, k, j):
        return k if j == 0 else (k, j)

    def __call__(self, k, j=0) -> Step:
        key = self._key(k, j)
        st = self.steps.get(key)
        if st is None or (st.images < self.n_check and not self._over(st.expected)):
            t0 = time.perf_counter()
            sess = D.session(self.model_for(k, j), self.check.threads)
            out = self._logits(sess)
            self.steps[key] = st = self._step(k, j, out, time.perf_counter() - t0)
            if self.speed is not None and self.time_all and st.images == self.n_check:
                self._time(st, sess)
            self._log(st)
        return st

    def seed(self, k, j, out):
        """Record the logits of candidate (k, j) computed elsewhere (the calibration
        choice runs the all-int8 CPU model)."""
        self.steps[self._key(k, j)] = self._step(k, j, np.asarray(out), 0.0)

    def _over(self, expected):
        """Certain to exceed the budget (rounding to the reported 2 decimals included)."""
        return self.stop_above is not None and expected > self.stop_above + 0.01

    def _logits(self, sess):
        """The candidate's logits on the check images, batch by batch; stops early
        (fewer rows) once its expected flips are certain to exceed ``stop_above``."""
        outs, n = [], 0
        for out in D.iter_logits(sess, self.check.images):
            outs.append(out)
            n += len(out)
            if self.stop_above is not None and n < self.n_check and \
                    self._over(J.expected_flips_lower_bound(self.check.reference, np.concatenate(outs))):
                break
        return np.concatenate(outs)

    def _step(self, k, j, out, seconds):
        ref, n = self.check.ref, len(out)
        flips = J.flips(ref[:n], out)
        judge = J.expected_flips if n == len(ref) else J.expected_flips_lower_bound
        expected = judge(self.check.reference, out)
        self.top1[self._key(k, j)] = out.argmax(1)
        return Step(k=k, flips=flips, flip_pct=round(100.0 * flips / self.n_check, 3), img_s=None,
                    seconds=round(seconds, 2), j=j, expected=round(expected, 2), images=n)

    def timed(self, k, j=0) -> Step:
        """The step, timed against fp32 (when there is a SpeedMeter)."""
        st = self(k, j)
        if self.speed is not None and st.img_s is None:
            self._time(st, D.session(self.model_for(k, j), self.check.threads))
            self._log(st)
        return st

    def _time(self, st, sess):
        t0 = time.perf_counter()
        ips, fp32, ratio = self.speed(sess)
        st.img_s, st.fp32_img_s, st.speedup = round(ips, 1), round(fp32, 1), round(ratio, 3)
        st.seconds = round(st.seconds + time.perf_counter() - t0, 2)

    def _log(self, s):
        if self.log:
            part = "" if s.images == self.n_check else f" (stopped after {s.images} images: over the budget)"
            self.log(f"  {self.quant.target if self.quant.precision == 'int8' else 'fp16'}: {s.k:3d}"
                     + (f"+{s.j}" if s.j else "") + f" layer(s) in float: {s.flips} flip(s) ({s.flip_pct:.2f} %), "
                     f"expected {s.expected}{part}"
                     + (f", {s.img_s:.0f} img/s = {s.speedup:.2f}x fp32 ({s.fp32_img_s:.0f})" if s.img_s else ""))


def search(evaluate, budget_flips, max_k, j=0):
    """Smallest k in [0, max_k] whose candidate (with suffix ``j``) has <=
    ``budget_flips`` flips, or None when even ``max_k`` does not meet it. Steps
    are in ``evaluate.steps``."""
    if _meets(evaluate, 0, j, budget_flips):
        return 0
    lo, k = 0, 1                                  # lo: largest k known to fail
    while k < max_k and not _meets(evaluate, k, j, budget_flips):
        lo, k = k, min(2 * k, max_k)
    if k >= max_k:
        k = max_k
        if not _meets(evaluate, k, j, budget_flips):
            return None
    _bisect(evaluate, budget_flips, lo, k, j)
    return min(s.k for s in evaluate.steps.values() if s.j == j and s.judged <= budget_flips)


SUFFIXES = (0, 1, 2, 3, 4, 6, 8)
#: after the smallest passing prefix k, also try the cheapest cut among the next CUT_WINDOW prefixes
CUT_WINDOW = 4


def cut_sizes(model, layers):
    """[elements of the tensor where a float prefix of k layers hands over to int8,
    for k = 0..len(layers)]: the output of the k-th layer's main node (batch 1;
    None where shape inference cannot tell). The int8/float boundary converts it
    (Q/DQ, layout): a cut after a block's projection (few channels) costs a
    fraction of one after an expansion."""
    import onnx

    try:
        m = onnx.shape_inference.infer_shapes(model)
    except Exception:
        return [None] * (len(layers) + 1)
    dims = {}
    for v in list(m.graph.value_info) + list(m.graph.output) + list(m.graph.input):
        d = [x.dim_value if x.HasField("dim_value") else None for x in v.type.tensor_type.shape.dim]
        if d and all(x for x in d[1:]):
            dims[v.name] = int(np.prod(d[1:]))
    out_of = {(n.name or n.output[0]): n.output[0] for n in m.graph.node if n.output}
    return [None] + [dims.get(out_of.get(name)) for name in layers]


def contiguous_search(evaluate, budget_flips, suffixes=SUFFIXES, window=CUT_WINDOW):
    """The fastest (k, j) -- float prefix of k layers, float suffix of j -- whose
    candidate meets the budget, or None: for each j of ``suffixes`` the smallest
    k (bisection, bounded by the previous j's answer) and, where the evaluator
    knows its ``cut`` sizes, the k among the next ``window`` with the smallest
    int8/float boundary tensor (if it meets the budget too), each timed; the
    fastest by speed-up wins (without a SpeedMeter: the fewest layers in float;
    ties: fewer float layers, then fewer flips). Stops at the first j needing no
    prefix (a longer suffix is only slower).

    Without a SpeedMeter (the fewest float layers win) a suffix j can only improve
    on the best n float layers found with k <= n - j: k is bounded by that, the
    bound is tried first and, when it fails, so would every smaller k (the
    monotonicity the bisection relies on): the suffix is skipped; when it passes,
    k is bisected below it (no galloping from 0); the cheaper cut of a longer
    prefix, which only matters for speed, is not tried. Where flips are monotone
    in k the answer is the unpruned walk's; where they are not, the walk probes
    other candidates and may find another (never one over the budget)."""
    n = len(evaluate.graph)
    timed = getattr(evaluate, "speed", None) is not None
    cut = getattr(evaluate, "cut", None) if timed else None   # only speed picks among cuts
    found, bound = [], n - 1
    for j in suffixes:
        if j > n - 1:
            break
        top = min(bound, n - 1 - j)
        if found and not timed:
            top = min(top, min(s.n_float for s in found) - j)
            if top < 0 or not _meets(evaluate, top, j, budget_flips):
                continue
            k = _bisect(evaluate, budget_flips, -1, top, j)   # no galloping up from 0: the answer is near top
        else:
            k = search(evaluate, budget_flips, top, j)
        if k is None:
            continue
        bound = k
        found.append(evaluate.timed(k, j))
        if timed and cut and k > 0 and cut[k] is not None:
            alt = min(range(k, min(k + window, n - 1 - j) + 1), key=lambda i: (cut[i] or float("inf"), i))
            if alt != k and evaluate(alt, j).judged <= budget_flips:
                found.append(evaluate.timed(alt, j))
        if k == 0:
            break
    if not found:
        return None
    best = min(found, key=lambda s: (-(s.speedup or 0.0), s.n_float, s.judged))
    return best.k, best.j


def _bisect(evaluate, budget_flips, lo, hi, j):
    """The smallest k in (``lo``, ``hi``] meeting the budget, ``hi`` known to meet it
    and ``lo`` to fail (-1: nothing known), by bisection."""
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _meets(evaluate, mid, j, budget_flips):
            hi = mid
        else:
            lo = mid
    return hi


def _meets(evaluate, k, j, budget_flips):
    """Does candidate (k, j) meet the budget? (A failing one stops its check run early.)"""
    if hasattr(evaluate, "stop_above"):
        evaluate.stop_above = budget_flips
    return (evaluate(k, j) if j else evaluate(k)).judged <= budget_flips


def steps_list(evaluate) -> List[Step]:
    return sorted(evaluate.steps.values(), key=lambda s: (s.j, s.k))
