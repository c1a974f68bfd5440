"""int8 / fp16 to a flip budget (ofconvert.budget): layer units, Q/DQ exclusion,
budget parsing, the search on a small CNN with one layer made very sensitive, an
unmeetable budget, the written artefacts and the option checks."""
import json
import os

import numpy as np
import pytest
from conftest import has_traceback, run_cli
from test_calibration import tiny_cnn, write_images

from ofconvert import budget as B
from ofconvert import calibration as C
from ofconvert import precision as P
from ofconvert.artifacts import detect_precision
from ofconvert.config import PreprocessConfig
from ofconvert.errors import OfconvertError
from ofconvert.pipeline import ConvertOptions

CFG = PreprocessConfig(32)
OPTS = B.BudgetOptions(sensitivity_images=16, speed_rounds=1, speed_run_s=0.02, threads=1, decode_workers=1)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("budget")
    os.environ.setdefault("OFCONVERT_CACHE", str(d / "cache"))
    model = tiny_cnn(d / "tiny.onnx", explicit_pad=True)
    imgs = write_images(str(d / "imgs"), n=24, size=(48, 40))
    scales = C.calibrate(model, imgs[:8], CFG, method="minmax").scales
    return model, scales, imgs[8:], d


def _sabotage(scales, tensors, factor=1e4):
    """Scales so coarse that quantizing these tensors wipes them out."""
    return {t: s * factor if t in tensors else s for t, s in scales.items()}


def test_parse_budget():
    assert B.parse_budget("1%", 500) == 5
    assert B.parse_budget("0.5%", 500) == 2
    assert B.parse_budget("2 %", 1300) == 26
    assert B.parse_budget("13", 500) == 13 and B.parse_budget(0, 500) == 0
    for bad in ("abc", "-1", "1.5", "100%", "", "1%%", True):
        with pytest.raises(OfconvertError, match="max-flips"):
            B.parse_budget(bad)


def test_layers_group_pad_with_its_conv(tiny):
    import onnx

    layers = P.qdq_layers(onnx.load(tiny[0]))
    assert list(layers)[:1] == ["stem"] and layers["c1"] == ["c1", "c1_pad"] and layers["c2"] == ["c2", "c2_pad"]
    assert layers["fc"] == ["fc", "gap"] and "add" in layers


@pytest.mark.parametrize("target", ["trt", "cpu"])
def test_exclude_keeps_layer_float_and_file_stays_int8(tiny, target):
    import onnx

    model, scales, _, d = tiny
    out = P.quantize_qdq(model, d / f"x.{target}.onnx", scales, target=target, exclude={"c1", "c1_pad"})
    m = onnx.load(out)
    node = {n.name: n for n in m.graph.node}
    inits = {t.name for t in m.graph.initializer}
    producer = {o: n for n in m.graph.node for o in n.output}
    assert node["c1"].input[1] in inits                          # float weight, no DequantizeLinear
    assert "c1_pad" not in node and list(node["c1"].attribute[-1].ints) == [1, 1, 1, 1]   # Pad folded
    assert producer[node["c1"].input[0]].op_type == "Relu"      # reads the float tensor, no Q/DQ
    assert producer[node["c2"].input[1]].op_type == "DequantizeLinear"   # the others stay int8
    meta = {p.key: p.value for p in m.metadata_props}
    assert meta[P.FLOAT_NODES_KEY] == "c1,c1_pad"
    assert detect_precision(out) == ("int8" if target == "trt" else "int8-cpu")


def test_fp16_exclude_keeps_nodes_fp32(tiny):
    import onnx

    model, _, _, d = tiny
    out = P.to_fp16(model, d / "x.fp16.onnx", keep_io_types=True, exclude={"fc"})
    m = onnx.load(out)
    fc = next(n for n in m.graph.node if n.name == "fc")
    inits = {t.name: t for t in m.graph.initializer}
    assert inits[fc.input[1]].data_type == onnx.TensorProto.FLOAT
    assert inits[next(n for n in m.graph.node if n.name == "c1").input[1]].data_type == onnx.TensorProto.FLOAT16
    assert detect_precision(out) == "fp16"


def test_zero_flips_keeps_the_sabotaged_layer_in_float(tiny):
    model, scales, check, d = tiny
    bad = _sabotage(scales, {"flat", "gap"})     # the classifier's input
    res = B.quantize_to_budget(model, check, "0", scales=bad, options=OPTS)
    for fl in ("int8-cpu", "int8"):
        r = res.flavours[fl]
        assert r.met and r.flips == 0, r
        assert "fc" in [x["layer"] for x in r.float_layers]
        assert r.steps[0].k == 0 and r.steps[0].j == 0 and r.steps[0].flips > 0   # all-int8 breaks the budget
        assert r.suffix >= 1 and r.k == r.prefix + r.suffix   # the classifier is the graph's last layer
    assert res.sensitivity == {} and res.strategy == "contiguous"
    ranked = B.quantize_to_budget(model, check, "0", scales=bad, flavours=("int8",),
                                  options=B.BudgetOptions(**{**OPTS.__dict__, "strategy": "ranked"}))
    assert next(iter(ranked.sensitivity)) == "fc" and ranked.flavours["int8"].met   # ranked most sensitive
    assert res.flavours["int8-cpu"].img_s > 0 and res.flavours["int8"].img_s is None
    from ofconvert.budget.report import write_models

    paths = {"int8-cpu": str(d / "t.int8-cpu.onnx"), "int8": str(d / "t.int8.onnx")}
    write_models(res, paths)
    assert detect_precision(paths["int8-cpu"]) == "int8-cpu" and detect_precision(paths["int8"]) == "int8"
    rep = json.load(open(paths["int8-cpu"] + ".budget.json"))
    assert rep["format"] == "ofconvert-budget/1" and rep["this"]["flips"] == 0 and "fc" in rep["this"]["float_layers"]
    assert os.path.getsize(paths["int8-cpu"] + ".budget.png") > 1000
    assert not os.path.exists(paths["int8"] + ".budget.png")


class _Stub:
    """An evaluator whose flips fall with k as given (no model)."""

    def __init__(self, flips):
        self.flips, self.steps = flips, {}

    def __call__(self, k):
        from ofconvert.budget.search import Step

        self.steps.setdefault(k, Step(k, self.flips[k], 0.0, None, 0.0))
        return self.steps[k]


def test_search_finds_fewest_and_reports_unmet():
    from ofconvert.budget.search import search

    flips = [30, 20, 12, 9, 7, 5, 5, 4, 2, 1, 1, 0]
    for budget in range(0, 31):
        ev = _Stub(flips)
        k = search(ev, budget, len(flips) - 1)
        assert k == next(i for i, f in enumerate(flips) if f <= budget), budget
        assert len(ev.steps) <= 2 * 4 + 1                       # galloping + bisection, not a scan
    ev = _Stub([9, 8, 7, 6, 5])
    assert search(ev, 4, 4) is None and 4 in ev.steps          # every k up to max_k tried: unmet


class _Grid:
    """A contiguous-search evaluator on synthetic flips / speed-ups of (k, j)."""

    def __init__(self, n, flips, speed):
        from ofconvert.budget.search import CandidateJudge

        self.graph, self.flips, self.speed, self.steps = [f"L{i}" for i in range(n)], flips, speed, {}
        self.names = lambda k, j=0: CandidateJudge.names(self, k, j)
        self.order = list(self.graph)

    def __call__(self, k, j=0):
        from ofconvert.budget.search import Step

        return self.steps.setdefault((k, j), Step(k, self.flips(k, j), 0.0, None, 0.0, j=j))

    def timed(self, k, j=0):
        st = self(k, j)
        st.speedup = self.speed(k, j)
        return st


def test_contiguous_search_picks_the_fastest_prefix_suffix():
    from ofconvert.budget.search import contiguous_search

    n = 30
    flips = lambda k, j: max(0, 20 - k - 6 * min(j, 2))   # noqa: E731  the suffix's first 2 layers fix 6 each
    speed = lambda k, j: 2.0 - 0.02 * k - 0.1 * j          # noqa: E731  a suffix layer costs 5 prefix layers
    ev = _Grid(n, flips, speed)
    k, j = contiguous_search(ev, 5, suffixes=(0, 1, 2, 3, 4))
    assert (k, j) == (3, 2) and flips(k, j) <= 5             # 15+0: x1.70, 9+1: x1.72, 3+2: x1.74, 3+3 slower
    assert ev.names(k, j) == ["L0", "L1", "L2", "L28", "L29"]
    assert max(s.k for s in ev.steps.values() if s.j == 2) <= 9   # bounded by the previous suffix's answer
    ev = _Grid(n, flips, lambda k, j: 2.0 - 0.02 * k - 0.1 * j + (0.2 if k == 17 else 0.0))
    ev.cut = [None] + [10 if k == 17 else 100 for k in range(1, n + 1)]   # the cheap int8/float handover
    assert contiguous_search(ev, 5, suffixes=(0,)) == (17, 0)             # 15 passes; 17 cuts cheaper, faster
    assert contiguous_search(_Grid(n, lambda k, j: 1, speed), 0) is None                 # unmeetable
    assert contiguous_search(_Grid(n, lambda k, j: 0, speed), 0) == (0, 0)               # met at once


def test_fold_zero_pads_keeps_outputs_and_drops_the_pad(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from ofconvert.budget import data as D

    rng = np.random.default_rng(0)
    ini = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w"),
           numpy_helper.from_array(np.array([0, 0, 0, 1, 0, 0, 1, 2], np.int64), "p"),      # asymmetric
           numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "p2"),
           numpy_helper.from_array(np.float32(1.0), "one")]
    nodes = [helper.make_node("Pad", ["x", "p"], ["xp"], name="pad"),
             helper.make_node("Conv", ["xp", "w"], ["y"], name="conv", pads=[1, 0, 0, 1]),
             helper.make_node("Pad", ["y", "p2", "one"], ["yp"], name="pad1"),        # pads with 1: kept
             helper.make_node("Conv", ["yp", "w2"], ["z"], name="conv2")]
    ini.append(numpy_helper.from_array(rng.standard_normal((2, 4, 3, 3)).astype(np.float32), "w2"))
    g = helper.make_graph(nodes, "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 9, 8])],
                          [helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, 2, None, None])], ini)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    f = onnx.ModelProto()
    f.CopyFrom(m)
    assert P.fold_zero_pads(f) == {"x": "xp"}
    onnx.checker.check_model(f)
    assert [n.op_type for n in f.graph.node] == ["Conv", "Pad", "Conv"]
    assert list(next(a for a in f.graph.node[0].attribute if a.name == "pads").ints) == [1, 1, 1, 3]
    x = {"x": rng.standard_normal((2, 3, 9, 8)).astype(np.float32)}
    a, b = D.session(m, 1).run(None, x)[0], D.session(f, 1).run(None, x)[0]
    assert a.shape == b.shape and np.allclose(a, b, atol=1e-5)


def test_quantized_models_fold_the_pads_with_the_same_scales(tiny):
    import onnx

    model, scales, check, _ = tiny
    m = onnx.load(model)
    for target in ("cpu", "trt"):
        q = P.quantize_model(m, scales, target)
        assert not [n for n in q.graph.node if n.op_type == "Pad"]
        assert len([n for n in P.quantize_model(m, scales, target, fold_pads=False).graph.node
                    if n.op_type == "Pad"]) == 2
    no_pad_scales = {t: s for t, s in scales.items() if t not in ("stem.relu", "c1.relu")}   # Pad inputs
    assert P.quantize_model(m, {**no_pad_scales}, "trt") is not None   # the Pad outputs' ranges serve


def test_unmeetable_budget_is_reported_not_exceeded(tiny, monkeypatch):
    model, scales, check, _ = tiny
    import importlib

    S = importlib.import_module("ofconvert.budget.search")

    real = S.CandidateJudge.__call__

    def always_flips(self, k, j=0):   # a model no layer choice can save: (expected) flips stay at >= 1
        step = real(self, k, j)
        step.flips, step.expected = max(step.flips, 1), max(step.expected, 1.0)
        return step

    monkeypatch.setattr(S.CandidateJudge, "__call__", always_flips)
    res = B.quantize_to_budget(model, check, "0", scales=scales, flavours=("int8",), options=OPTS)
    r = res.flavours["int8"]
    assert not r.met and r.k is None and r.flips is None and r.float_layers == []
    assert max(s.k for s in r.steps) == len(res.layers) - 1     # tried up to one layer still quantized
    assert {s.j for s in r.steps} == {j for j in OPTS.suffixes if j < len(res.layers)}   # every suffix
    with pytest.raises(B.BudgetNotMetError, match="cannot be met"):
        B.require_met(res)


def test_options_checked_before_any_work(tmp_path):
    def opts(**kw):
        return ConvertOptions(model="efficientnet_lite0", output=str(tmp_path / "m.onnx"), **kw)

    with pytest.raises(OfconvertError, match="needs --int8 or --fp16"):
        opts(max_flips="1%").check()
    with pytest.raises(OfconvertError, match="max-flips must be"):
        ConvertOptions(model="efficientnet_lite0", precision="fp16", max_flips="lots").check()
    with pytest.raises(OfconvertError, match="--check-data is for --max-flips"):
        opts(check_data=str(tmp_path)).check()
    with pytest.raises(OfconvertError, match="needs check images"):
        ConvertOptions(model="efficientnet_lite0", precision="fp16", max_flips="1%").check()


def test_cli_bad_budget_one_line_exit_2(tmp_path):
    p = run_cli("efficientnet_lite0", "--to", "onnx", "--max-flips", "1%", cwd=str(tmp_path), timeout=120)
    assert p.returncode == 2 and not has_traceback(p), p.stderr[-500:]
    assert p.stderr.strip().count("\n") == 0 and "--max-flips needs --int8 or --fp16" in p.stderr


def test_rank_is_greedy_cover_per_speed_cost():
    from ofconvert.budget.sensitivity import Effect, rank

    eff = {"a": Effect([0, 1, 2], [], 0.1, cost=0.0),      # fixes 3, free
           "b": Effect([0, 1, 2, 3], [], 0.2, cost=0.5),   # fixes one more, but slow
           "c": Effect([3], [], 0.05, cost=0.0),
           "d": Effect([4], [5, 6], 0.3),                  # breaks more than it fixes: KL order only
           "e": Effect([], [], 0.4)}
    assert rank(eff) == ["a", "c", "e", "d", "b"]          # b fixes nothing new after a and c
    assert rank(eff, cost_floor=10.0)[0] == "b"            # cost ignored: most fixes first
    assert rank(eff, mode="kl") == ["e", "d", "b", "a", "c"]


def test_speed_meter_interleaves_and_reports_the_ratio(tiny):
    import onnx

    from ofconvert.budget import data as D
    from ofconvert.budget.search import SpeedMeter

    s = D.session(onnx.load(tiny[0]), 1)
    ips, fp32, ratio = SpeedMeter(s, (3, 32, 32), batch=2, rounds=3, run_s=0.02)(s)
    assert ips > 0 and fp32 > 0 and 0.5 < ratio < 2.0      # the same model against itself


def test_check_set_chooses_the_calibration(tiny):
    model, scales, check, _ = tiny
    bad = _sabotage(scales, {"flat", "gap"})
    res = B.quantize_to_budget(model, check, "50%", scales={"bad": bad, "good": scales}, flavours=("int8",),
                               options=OPTS)
    assert res.calibration["chosen"] == "good" and res.calibration["flips"]["bad"] > 0
    assert res.flavours["int8"].k == 0 and res.sensitivity == {}   # met at once: no sensitivity pass


def test_weight_bits_limit_the_int8_weights(tiny):
    import onnx
    from onnx import numpy_helper

    model, scales, _, _ = tiny
    m = P.quantize_model(onnx.load(model), scales, "cpu", weight_bits=7)
    w = [numpy_helper.to_array(t) for t in m.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert w and max(int(abs(a).max()) for a in w) == 63
