"""The search: keep the most sensitive layers in float, fewest first, until the
candidate's top-1 predictions differ from fp32's on at most ``budget`` check
images. Every candidate is built, run on the whole check set (flips) and, for the
CPU flavour, timed in ONNX Runtime (img/s at a fixed batch and thread count:
median of several short runs), so every step of the curve is measured.

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
    k: int                        # layers kept in float (the k most sensitive)
    flips: int                    # check images whose top-1 differs from fp32's
    flip_pct: float
    img_s: Optional[float]        # ONNX Runtime CPU throughput, None where not meaningful
    seconds: float                # time to build, check and time this candidate

    def to_dict(self):
        return dataclasses.asdict(self)


def throughput(sess, shape, batch=8, runs=5, min_run_s=0.4):
    """Median img/s over ``runs`` runs of at least ``min_run_s`` each (after warm-up)."""
    inp = sess.get_inputs()[0]
    x = np.random.default_rng(0).standard_normal((batch,) + tuple(shape)).astype(
        np.float16 if "float16" in inp.type else np.float32)
    feed = {inp.name: x}
    for _ in range(3):
        sess.run(None, feed)
    rates = []
    for _ in range(runs):
        n, t0 = 0, time.perf_counter()
        while True:
            sess.run(None, feed)
            n += 1
            dt = time.perf_counter() - t0
            if dt >= min_run_s:
                break
        rates.append(n * batch / dt)
    return float(np.median(rates))


class Evaluator:
    """Builds, checks and times the candidate with the first ``k`` layers of
    ``order`` kept in float; memoised by k."""

    def __init__(self, model, layers, order, precision, scales, target, images, ref_top1, threads=2,
                 speed=True, speed_batch=8, speed_runs=5, log=None):
        self.model, self.layers, self.order = model, layers, list(order)
        self.precision, self.scales, self.target = precision, scales, target
        self.images, self.ref_top1, self.threads = images, ref_top1, threads
        self.speed, self.speed_batch, self.speed_runs = speed, speed_batch, speed_runs
        self.shape = (images.u8.shape[3], images.u8.shape[1], images.u8.shape[2])
        self.log = log
        self.steps = {}

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
            ips = throughput(sess, self.shape, self.speed_batch, self.speed_runs) if self.speed else None
            self.steps[k] = Step(k, flips, round(100.0 * flips / len(self.ref_top1), 3),
                                 None if ips is None else round(ips, 1), round(time.perf_counter() - t0, 2))
            if self.log:
                s = self.steps[k]
                self.log(f"  {self.target if self.precision == 'int8' else 'fp16'}: {k:3d} layer(s) in float: "
                         f"{flips} flip(s) ({s.flip_pct:.2f} %)" + (f", {s.img_s:.0f} img/s" if ips else ""))
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
