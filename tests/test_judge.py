"""The budget's judge (budget/judge.py): expected flips against the fp32 logits."""
import numpy as np
import pytest

from ofconvert.budget import judge as J


def test_no_change_no_flips():
    ref = np.random.default_rng(0).standard_normal((50, 10))
    assert J.expected_flips(ref, ref) == 0.0 and J.flips(ref, ref) == 0


def test_expected_flips_predicts_the_average_count_under_noise():
    """Perturb the logits with Gaussian noise many times: the average number of
    top-1 changes is what expected_flips, measured on one draw, predicts."""
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((2000, 20)) * 3.0
    counts, preds = [], []
    for _ in range(20):
        out = ref + rng.standard_normal(ref.shape) * 0.3
        counts.append(J.flips(ref, out))
        preds.append(J.expected_flips(ref, out))
    assert np.mean(counts) > 10
    assert np.mean(preds) == pytest.approx(np.mean(counts), rel=0.25)
    assert np.std(preds) < np.std(counts) / 2          # the point: far less noise than one count


def test_more_noise_more_expected_flips():
    rng = np.random.default_rng(1)
    ref = rng.standard_normal((300, 10))
    noise = rng.standard_normal(ref.shape)
    e = [J.expected_flips(ref, ref + s * noise) for s in (0.01, 0.1, 0.5)]
    assert e[0] < e[1] < e[2]


def test_shapes_checked():
    with pytest.raises(ValueError):
        J.expected_flips(np.zeros((3, 4)), np.zeros((3, 5)))


def test_budget_takes_calibration_results_with_their_means():
    from ofconvert import budget as B
    from ofconvert.calibration import CalibrationResult

    def res(m, s):
        return CalibrationResult("c", "s", {"x": s}, True, m, 1, 0, means={"x": [0.5]} if m == "b" else None)

    scales, means = B._unpack({"a": res("a", 1.0), "b": res("b", 2.0)})
    assert scales == {"a": {"x": 1.0}, "b": {"x": 2.0}} and means == {"x": [0.5]}
    assert B._unpack(res("b", 3.0)) == ({"x": 3.0}, {"x": [0.5]})
    assert B._unpack(B.CalibrationScales({"x": 1.0}, {"x": [1.0]})) == ({"x": 1.0}, {"x": [1.0]})
    assert B._unpack({"x": 1.0}) == ({"x": 1.0}, None)


def test_lower_bound_is_below_and_reaches_the_expected_flips():
    rng = np.random.default_rng(2)
    ref = rng.standard_normal((400, 10)) * 2.0
    out = ref + rng.standard_normal(ref.shape) * rng.uniform(0.0, 0.6, (400, 1))   # uneven moves per image
    full = J.expected_flips(ref, out)
    bounds = [J.expected_flips_lower_bound(ref, out[:n]) for n in range(1, 401, 13)] + \
        [J.expected_flips_lower_bound(ref, out)]
    assert all(b <= full + 1e-9 for b in bounds) and bounds == sorted(bounds)   # grows towards the value
    assert bounds[-1] == pytest.approx(full, rel=1e-12) and bounds[0] < full / 5
    big_first = np.argsort(-np.abs(out - ref).max(1))          # the images that move most seen first
    r2, o2 = ref[big_first], out[big_first]
    assert J.expected_flips_lower_bound(r2, o2[:100]) > 1.4 * J.expected_flips_lower_bound(ref, out[:100])
    with pytest.raises(ValueError):
        J.expected_flips_lower_bound(ref, out[:0])


def test_a_reference_judges_exactly_as_the_plain_logits():
    """The search sorts the fp32 margins once (J.Reference); the values must not move."""
    rng = np.random.default_rng(4)
    ref = rng.standard_normal((300, 50)).astype(np.float32) * 3
    out = ref + rng.standard_normal(ref.shape).astype(np.float32) * 0.4
    r = J.Reference(ref)
    assert J.expected_flips(r, out) == J.expected_flips(ref, out) > 0
    assert [J.expected_flips_lower_bound(r, out[:n]) for n in (1, 100, 300)] == \
        [J.expected_flips_lower_bound(ref, out[:n]) for n in (1, 100, 300)]
    with pytest.raises(ValueError):
        J.expected_flips(r, out[:10])
