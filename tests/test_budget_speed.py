"""What makes the flip-budget search fast without changing its answers: one
calibration pass serves every method (same caches as one pass per method), a
failing candidate's check run stops once its expected flips are certain to exceed
the budget (same decisions), and the fewest-float-layers (TensorRT) suffix walk
stops trying suffixes that cannot improve on the best found (same answer)."""
import os

import numpy as np
import pytest
from test_calibration import tiny_cnn, write_images

from ofconvert import budget as B
from ofconvert import calibration as C
from ofconvert.calibration import ranges as R
from ofconvert.config import PreprocessConfig

CFG = PreprocessConfig(32)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("speed")
    os.environ.setdefault("OFCONVERT_CACHE", str(d / "cache"))
    return tiny_cnn(d / "tiny.onnx", explicit_pad=True), write_images(str(d / "imgs"), n=130, size=(48, 40)), d


def test_one_calibration_pass_serves_every_method(tiny, monkeypatch):
    import onnx

    model, imgs, d = tiny
    passes = []
    real = R.Statistics.__init__

    def counting(self, *a, **k):
        passes.append(1)
        real(self, *a, **k)

    monkeypatch.setattr(R.Statistics, "__init__", counting)
    got = {m: C.calibrate(model, imgs[:12], CFG, method=m, cache_path=str(d / f"one.{m}.cache")) for m in C.METHODS}
    assert len(passes) == 1 and not any(r.reused for r in got.values())
    m = onnx.load(model)
    for method, res in got.items():                   # what a pass of its own gives, as before
        reader = C.ImageCalibrationDataReader(imgs[:12], CFG, C.model_input_name(m), 8)
        amax, means = C.collect_statistics(m, reader, method, C.CalibrationOptions())
        assert res.scales == {t: float(np.float32(a / C.INT8_MAX)) for t, a in amax.items()}, method
        assert res.means == means
    assert len({tuple(r.scales.values()) for r in got.values()}) >= 3   # the methods do differ
    before = len(passes)
    C.calibrate(model, imgs[12:24], CFG, method="entropy", cache_path=str(d / "other.cache"))
    assert len(passes) == before + 1                   # other images: a new pass


def test_failing_candidates_stop_early_with_the_same_decisions(tiny):
    model, imgs, d = tiny
    scales = C.calibrate(model, imgs[:12], CFG, method="minmax", cache_path=str(d / "mm.cache")).scales
    bad = {t: s * 1e4 if t in ("flat", "gap") else s for t, s in scales.items()}   # wipes out the classifier
    opts = B.BudgetOptions(speed_rounds=1, speed_run_s=0.02, threads=1, decode_workers=1)
    res = B.quantize_to_budget(model, imgs[12:], "1", scales=bad, flavours=("int8",), options=opts)
    steps = res.flavours["int8"].steps
    import onnx

    from ofconvert.budget import data as D
    from ofconvert.budget import judge as J
    from ofconvert.budget.search import CandidateJudge
    from ofconvert.budget.sensitivity import Quantization

    ev = res.flavours["int8"].candidates
    full = CandidateJudge(ev.model, ev.layers, Quantization("int8", bad, "trt"), ev.check, order=ev.order)
    stopped = [s for s in steps if s.images < ev.n_check]
    assert stopped, [(s.k, s.j, s.images, s.expected) for s in steps]     # some stopped early
    for s in steps:
        f = full(s.k, s.j)
        assert f.images == ev.n_check and (f.expected <= 1) == (s.expected <= 1)   # the same verdict
        if s.images < ev.n_check:
            assert s.expected > 1.01 and f.expected >= s.expected and f.flips >= s.flips   # lower bounds
        else:
            assert (f.expected, f.flips) == (s.expected, s.flips)
    assert res.phases_s and list(res.phases_s)[:2] == ["check_set", "calibration_choice"]
    assert abs(sum(res.phases_s.values()) - res.search_s) < 0.5
    assert D is not None and J is not None and onnx is not None


class _Layers:
    """A flips-only evaluator (no SpeedMeter, the TensorRT flavour's case) on
    synthetic expected flips of (k, j), monotone in k and j."""

    def __init__(self, n, flips):
        from ofconvert.budget.search import CandidateJudge

        self.graph, self.flips, self.steps, self.order = [f"L{i}" for i in range(n)], flips, {}, None
        self.names = lambda k, j=0: CandidateJudge.names(self, k, j)
        self.calls = 0

    def __call__(self, k, j=0):
        from ofconvert.budget.search import Step

        if (k, j) not in self.steps:
            self.calls += 1
            self.steps[(k, j)] = Step(k, 0, 0.0, None, 0.0, j=j, expected=self.flips(k, j))
        return self.steps[(k, j)]

    timed = __call__


def _unpruned(ev, budget, suffixes):
    """The walk without pruning: every suffix bisected, the fewest float layers win."""
    from ofconvert.budget.search import search

    found, bound, n = [], len(ev.graph) - 1, len(ev.graph)
    for j in suffixes:
        k = search(ev, budget, min(bound, n - 1 - j), j)
        if k is not None:
            bound = k
            found.append(ev(k, j))
            if k == 0:
                break
    best = min(found, key=lambda s: (s.n_float, s.judged))
    return best.k, best.j


@pytest.mark.parametrize("fix", [(1.0, 0.5), (0.3, 2.0), (0.5, 0.45), (2.0, 2.0)])
def test_fewest_float_walk_skips_suffixes_that_cannot_improve(fix):
    from ofconvert.budget.search import contiguous_search

    a, b = fix                 # each prefix layer fixes a, each of the first 3 suffix layers b (then 0.1)
    flips = lambda k, j: round(max(0.0, 16.0 - a * k - b * min(j, 3) - 0.1 * max(0, j - 3)), 2)  # noqa: E731
    suffixes = (0, 1, 2, 3, 4, 6, 8)
    calls = [0, 0]
    for budget in (0, 2, 5, 9):
        pruned, full = _Layers(60, flips), _Layers(60, flips)
        got = contiguous_search(pruned, budget, suffixes)
        want = _unpruned(full, budget, suffixes)
        assert got == want, (fix, budget)
        assert pruned.calls <= full.calls
        calls = [calls[0] + pruned.calls, calls[1] + full.calls]
    assert calls[0] < 0.8 * calls[1], calls             # the point: fewer candidates run


def test_openvino_times_the_candidates_when_asked(tiny):
    """--speed-backend openvino: the int8-cpu candidates and fp32 are timed by OpenVINO
    (the fastest CPU path); the flips are judged as before; the result says what timed."""
    pytest.importorskip("openvino")
    from ofconvert.budget import data as D
    from ofconvert.budget.search import SpeedMeter

    model, imgs, d = tiny
    scales = C.calibrate(model, imgs[:12], CFG, method="minmax", cache_path=str(d / "ov.cache")).scales
    opts = B.BudgetOptions(speed_rounds=1, speed_run_s=0.02, threads=1, decode_workers=1, speed_backend="openvino")
    res = B.quantize_to_budget(model, imgs[12:40], "28", scales=scales, flavours=("int8-cpu",), options=opts)
    assert res.speed_backend == "openvino" and res.to_dict()["speed_backend"] == "openvino"
    timed = [s for s in res.flavours["int8-cpu"].steps if s.speedup is not None]
    assert timed and all(s.img_s > 0 and s.fp32_img_s > 0 for s in timed)
    import onnx

    m = onnx.load(model)
    meter = SpeedMeter(D.session(m, 1), (3, 32, 32), batch=2, rounds=1, run_s=0.01, backend="openvino", threads=1)
    assert isinstance(meter.ref, D.OpenVINOSession)
    from ofconvert.errors import OfconvertError

    with pytest.raises(OfconvertError, match="speed backend"):
        SpeedMeter(D.session(m, 1), (3, 32, 32), backend="tensorrt")
