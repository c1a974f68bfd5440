"""Judging a candidate against the fp32 model on the check set: its top-1 flips,
and the expected number of flips, the quantity the budget is held to.

A flip count on a few hundred images is a noisy judge at the 1 % level: on 500
check images a candidate expecting 5 flips shows anywhere from 1 to 9, so a
bisection over "layers kept in float" follows the noise (measured on
efficientnet_lite0: the all-int8 model showed 4 check flips and one with two more
float layers 8; docs/budget.md). :func:`expected_flips` uses every image instead of
the few that flipped: the candidate moves the gap between fp32's top class and
its runner-up by ``delta_i`` on image i; with ``sigma`` the RMS of those moves
over the check set, image i flips with probability ``Phi(-margin_i / sigma)``
(``margin_i``: that gap in the fp32 logits), and the sum over the check set is
the expected flip count. Smooth in the candidate (monotone in sigma), and on
lite0 slightly above the counts it predicts on the 1,300 evaluation images."""
import math

import numpy as np


def flips(ref, out):
    """Images whose top-1 differs between the reference logits and ``out``."""
    return int((np.asarray(out).argmax(1) != np.asarray(ref).argmax(1)).sum())


def margins(ref):
    """(rows, top class, runner-up, fp32 margin between them) of reference logits."""
    order = np.argsort(ref, axis=1)
    rows = np.arange(len(ref))
    top, second = order[:, -1], order[:, -2]
    return rows, top, second, ref[rows, top] - ref[rows, second]


class Reference:
    """Reference logits (float64) with their :func:`margins` sorted out once: a
    search judges dozens of candidates, batch by batch, against the same reference.
    The functions below take it or the plain logits."""

    def __init__(self, ref):
        self.logits = np.asarray(ref, np.float64)
        self.rows, self.top, self.second, self.margin = margins(self.logits)

    def __len__(self):
        return len(self.logits)


def _reference(ref):
    return ref if isinstance(ref, Reference) else Reference(ref)


def _sum_phi(margin, sigma):
    if sigma == 0.0:
        return 0.0
    z = margin / (sigma * math.sqrt(2.0))
    return float(sum(0.5 * math.erfc(v) for v in z))


def expected_flips_lower_bound(ref, out_head):
    """A lower bound of :func:`expected_flips` (``ref``: all images' fp32 logits)
    knowing the candidate's logits of the first ``len(out_head)`` images only: the
    expected flips grow with sigma, and sigma is at least the RMS over all images of
    the moves seen so far (the unseen ones counted as 0). Equals ``expected_flips``
    once every image is seen. A candidate whose bound exceeds the budget fails it
    whatever the remaining images do."""
    out_head, n = np.asarray(out_head, np.float64), len(out_head)
    shape = ref.logits.shape if isinstance(ref, Reference) else np.shape(ref)
    if len(shape) != 2 or out_head.ndim != 2 or out_head.shape[1] != shape[1] or not 0 < n <= shape[0]:
        raise ValueError(f"expected_flips_lower_bound needs [images, classes] logits, got {shape} and "
                         f"{out_head.shape}")
    r = _reference(ref)
    d = out_head - r.logits[:n]
    delta = d[r.rows[:n], r.top[:n]] - d[r.rows[:n], r.second[:n]]
    return _sum_phi(r.margin, float(np.sqrt(np.sum(delta ** 2) / len(r))))


def expected_flips(ref, out):
    """Expected top-1 flips of ``out`` vs ``ref`` (logits, [images, classes]); see
    the module docstring. 0.0 when ``out`` equals ``ref``."""
    out = np.asarray(out, np.float64)
    shape = ref.logits.shape if isinstance(ref, Reference) else np.shape(ref)
    if len(shape) != 2 or tuple(shape) != out.shape or shape[1] < 2 or shape[0] == 0:
        raise ValueError(f"expected_flips needs two [images, classes>=2] arrays, got {shape} and {out.shape}")
    r = _reference(ref)
    d = out - r.logits
    delta = d[r.rows, r.top] - d[r.rows, r.second]
    return _sum_phi(r.margin, float(np.sqrt(np.mean(delta ** 2))))
