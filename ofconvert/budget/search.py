"""The search: keep layers in float, in the order of :mod:`.sensitivity`, fewest
first, until the candidate's top-1 predictions differ from fp32's on at most
``budget`` check images. Every candidate is built, run on the whole check set
(flips) and, for the CPU flavour, timed in ONNX Runtime against the fp32 model
*in the same moment* (:class:`SpeedMeter`: fp32 and candidate runs alternate,
medians of each, so load from other processes hits both and the ratio stays
honest), so every step of the curve is measured.

Galloping then bisection over k = number of layers in float (0, 1, 2, 4, 8, ...,
then between the last failing and the first passing k): ~2 log2(K) candidates.
Flips are not strictly monotone in k; the answer is the smallest measured k that
meets the budget, and every step is reported."""
import dataclasses
import time
from typing import List, Optional

import numpy as np

from . import data as D
from .sensitivity import build


@dataclasses.dataclass
class Step:
    k: int                        # layers kept in float (the first k of the order)
    flips: int                    # check images whose top-1 differs from fp32's
    flip_pct: float
    img_s: Optional[float]        # ONNX Runtime CPU throughput, None where not meaningful
    seconds: float                # time to build, check and time this candidate
    fp32_img_s: Optional[float] = None   # fp32, timed interleaved with this candidate
    speedup: Optional[float] = None      # img_s / fp32_img_s (median of per-round ratios)

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


class SpeedMeter:
    """img/s of a candidate and of the fp32 model, measured alternately
    (``rounds`` x (fp32 run, candidate run), each at least ``run_s``): returns
    (candidate img/s, fp32 img/s, median of the per-round ratios)."""

    def __init__(self, fp32_sess, shape, batch=8, rounds=5, run_s=0.3):
        self.ref, self.shape, self.batch, self.rounds, self.run_s = fp32_sess, shape, batch, rounds, run_s
        self.ref_feed = _feed(fp32_sess, shape, batch)
        for _ in range(3):
            fp32_sess.run(None, self.ref_feed)

    def __call__(self, sess):
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


class Evaluator:
    """Builds, checks and times the candidate with the first ``k`` layers of
    ``order`` kept in float; memoised by k. ``speed``: a :class:`SpeedMeter` (or
    None: flips only)."""

    def __init__(self, model, layers, order, precision, scales, target, images, ref_top1, threads=2,
                 speed=None, log=None):
        self.model, self.layers, self.order = model, layers, list(order)
        self.precision, self.scales, self.target = precision, scales, target
        self.images, self.ref_top1, self.threads = images, ref_top1, threads
        self.speed = speed
        self.log = log
        self.steps = {}
        self.top1 = {}

    def exclude(self, k):
        return {nd for name in self.order[:k] for nd in self.layers[name]}

    def model_for(self, k):
        return build(self.model, self.precision, self.scales, self.target, self.exclude(k))

    def __call__(self, k) -> Step:
        if k not in self.steps:
            t0 = time.perf_counter()
            sess = D.session(self.model_for(k), self.threads)
            top1 = D.logits(sess, self.images).argmax(1)
            flips = int((top1 != self.ref_top1).sum())
            ips = fp32 = ratio = None
            if self.speed is not None:
                ips, fp32, ratio = self.speed(sess)
            self.top1[k] = top1
            self.steps[k] = Step(k, flips, round(100.0 * flips / len(self.ref_top1), 3),
                                 None if ips is None else round(ips, 1), round(time.perf_counter() - t0, 2),
                                 None if fp32 is None else round(fp32, 1), None if ratio is None else round(ratio, 3))
            if self.log:
                s = self.steps[k]
                self.log(f"  {self.target if self.precision == 'int8' else 'fp16'}: {k:3d} layer(s) in float: "
                         f"{flips} flip(s) ({s.flip_pct:.2f} %)"
                         + (f", {s.img_s:.0f} img/s = {s.speedup:.2f}x fp32 ({s.fp32_img_s:.0f})" if ips else ""))
        return self.steps[k]


def search(evaluate: Evaluator, budget_flips, max_k):
    """Smallest k in [0, max_k] whose candidate has <= ``budget_flips`` flips, or
    None when even ``max_k`` does not meet it. Steps are in ``evaluate.steps``."""
    ok = lambda k: evaluate(k).flips <= budget_flips  # noqa: E731
    if ok(0):
        return 0
    lo, k = 0, 1                                  # lo: largest k known to fail
    while k < max_k and not ok(k):
        lo, k = k, min(2 * k, max_k)
    if k >= max_k:
        k = max_k
        if not ok(k):
            return None
    hi = k                                        # hi: smallest k known to pass
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid
    return min(j for j, s in evaluate.steps.items() if s.flips <= budget_flips)


def steps_list(evaluate: Evaluator) -> List[Step]:
    return [evaluate.steps[k] for k in sorted(evaluate.steps)]
