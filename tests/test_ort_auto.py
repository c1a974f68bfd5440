"""``--ort-cuda auto``: the decision logic and its cache (fake timings: CI has no GPU),
the spec parses and is reported, bench rows say what auto ran."""
import json
import os

import pytest

from ofconvert.errors import OfconvertError
from ofconvert.runners import ort_auto
from ofconvert.runners.ort_settings import AUTO, OrtCudaSettings


class FakeTimer:
    """img/s per candidate spec; counts calls."""

    def __init__(self, rates):
        self.rates, self.calls = dict(rates), []

    def __call__(self, spec, path, batch, where):
        self.calls.append((spec, batch, where))
        rate = self.rates.get(spec, 100.0)
        if rate is None:
            raise RuntimeError("CUDA graph capture failed: a node is on the CPU")
        return rate


@pytest.fixture
def model(tmp_path):
    p = tmp_path / "m.onnx"
    p.write_bytes(b"model bytes v1")
    return str(p)


def _env(timer, cache, gpu="NVIDIA H200", ort="1.31.1"):
    return ort_auto.AutoEnv(timer=timer, cache_dir=str(cache), gpu=gpu, ort=ort)


def _decide(model, timer, cache, **kw):
    return ort_auto.decide(model, "fp32", 50, "device", env=_env(timer, cache), **kw)


def test_auto_parses_and_is_reported():
    st = OrtCudaSettings.parse("auto")
    assert st is AUTO and st.auto and st.label == "auto" and st.spec == "auto"
    with pytest.raises(OfconvertError, match="decided per model"):
        st.runner_kwargs()
    assert OrtCudaSettings.parse("fastest").label == "fastest"   # presets unchanged
    with pytest.raises(OfconvertError, match="use auto, default, fastest"):
        OrtCudaSettings.parse("autox")


def test_keeps_the_fastest_and_caches_it(model, tmp_path):
    t = FakeTimer({"default": 9946.0, "fastest": 4991.0, "iobind+graph+fusebias+algo=heuristic": 11000.0})
    d = _decide(model, t, tmp_path)
    assert d.spec == "iobind+graph+fusebias+algo=heuristic" and not d.cached
    assert [c[0] for c in t.calls] == list(ort_auto.CANDIDATES)
    again = FakeTimer({})
    d2 = _decide(model, again, tmp_path)
    assert d2.cached and d2.spec == d.spec and again.calls == []   # nothing timed the second time
    files = os.listdir(tmp_path / ort_auto.FOLDER)
    assert len(files) == 1 and files[0].endswith(".json")
    data = json.load(open(tmp_path / ort_auto.FOLDER / files[0]))
    (key, entry), = data["decisions"].items()
    assert "fp32" in key and "b50" in key and "NVIDIA H200" in key and "1.31.1" in key and "device" in key
    assert entry["timings"]["default"] == 9946.0


def test_key_parts_each_decide_again(model, tmp_path):
    _decide(model, FakeTimer({}), tmp_path)
    for kw in ({"gpu": "NVIDIA H100 80GB HBM3"}, {"ort": "1.32.0"}):
        t = FakeTimer({})
        ort_auto.decide(model, "fp32", 50, "device", env=_env(t, tmp_path, **kw))
        assert t.calls, kw
    for precision, batch, where in (("fp16", 50, "device"), ("fp32", 256, "device"), ("fp32", 50, "host")):
        t = FakeTimer({})
        ort_auto.decide(model, precision, batch, where, env=_env(t, tmp_path))
        assert t.calls
    # all of them kept in the one file of this model
    data = json.load(open(ort_auto.cache_file(ort_auto.fileio.sha256_file(model), str(tmp_path))))
    assert len(data["decisions"]) == 6


def test_a_changed_file_decides_again(model, tmp_path):
    _decide(model, FakeTimer({"fastest": 500.0}), tmp_path)
    with open(model, "wb") as f:
        f.write(b"model bytes v2")
    t = FakeTimer({"default": 900.0})
    d = _decide(model, t, tmp_path)
    assert t.calls and not d.cached and d.settings.label == "default"


def test_a_corrupt_cache_is_ignored_and_rewritten(model, tmp_path):
    path = ort_auto.cache_file(ort_auto.fileio.sha256_file(model), str(tmp_path))
    os.makedirs(os.path.dirname(path))
    for junk in ("{not json", "[1, 2]", json.dumps({"decisions": {"x": 1}})):
        with open(path, "w") as f:
            f.write(junk)
        t = FakeTimer({"fastest": 2000.0})
        d = _decide(model, t, tmp_path)
        assert t.calls and d.spec == OrtCudaSettings.parse("fastest").spec
        data = json.load(open(path))   # rewritten, whole
        assert any(e["settings"] == "fastest" for e in data["decisions"].values() if isinstance(e, dict))
    leftovers = [f for f in os.listdir(os.path.dirname(path)) if f.endswith(".tmp")]
    assert leftovers == []


def test_a_cached_entry_outside_the_candidates_is_not_used(model, tmp_path):
    _decide(model, FakeTimer({"fastest": 2000.0}), tmp_path)
    t = FakeTimer({"default": 3000.0})
    d = _decide(model, t, tmp_path, candidates=ort_auto.NO_GRAPH_CANDIDATES)   # another candidate list: its own key
    assert t.calls and d.settings.label == "default"


def test_failing_candidates_are_skipped_and_all_failing_is_one_line(model, tmp_path):
    t = FakeTimer({"fastest": None, "default": 10.0})
    d = _decide(model, t, tmp_path)
    assert d.timings["fastest"] is None and d.spec in ort_auto.CANDIDATES
    t = FakeTimer({c: None for c in ort_auto.CANDIDATES})
    with pytest.raises(OfconvertError, match="no candidate settings run"):
        ort_auto.decide(model, "fp16", 8, "device", env=_env(t, tmp_path, "g", "o"))


def test_candidates_are_valid_and_the_eval_ones_have_no_graph():
    for spec in ort_auto.CANDIDATES + ort_auto.NO_GRAPH_CANDIDATES:
        OrtCudaSettings.parse(spec).runner_kwargs()
    assert not any(OrtCudaSettings.parse(s).cuda_graph for s in ort_auto.NO_GRAPH_CANDIDATES)
    assert {"default", "fastest"} <= set(ort_auto.CANDIDATES)


def test_default_cache_folder_follows_ofconvert_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("OFCONVERT_CACHE", str(tmp_path))
    assert ort_auto.cache_file("abc") == os.path.join(str(tmp_path), "ort-cuda-auto", "abc.json")


def test_bench_worker_runs_what_auto_chose(monkeypatch, tmp_path):
    """The worker replaces ``auto`` by the decision at each batch and records it (ort-cpu stands in)."""
    from ofconvert.bench import worker
    from ofconvert.bench.options import BenchResult
    from ofconvert.bench.report import markdown
    from ofconvert.runners import make_runner

    onnx_path = _tiny_onnx(tmp_path)
    made = []
    monkeypatch.setattr(ort_auto, "decide", lambda path, precision, batch, where, **kw: ort_auto.AutoDecision(
        OrtCudaSettings.parse("iobind+nhwc" if batch == 1 else "default"), "k", {}, True))
    monkeypatch.setattr(worker, "_make_runner", lambda job: made.append(job["settings"]) or
                        make_runner("ort-cpu", job["path"]))
    job = dict(model="tiny", backend="ort-cuda", precision="fp32", batches=[1, 2], inputs=["device"], warmup=1,
               iters=2, input_size=8, settings="auto", settings_label="auto", path=onnx_path)
    rows = worker.run_job(job)
    assert made == ["iobind+nhwc", "plain"]
    assert [(r["settings"], r["settings_ran"]) for r in rows] == [("auto", "iobind+nhwc"), ("auto", "default")]
    md = markdown([BenchResult(**{k: v for k, v in r.items() if k != "pid"}) for r in rows], {}, None)
    assert "auto ran: tiny fp32 batch 1: iobind+nhwc; tiny fp32 batch 2: default" in md


def test_bench_and_eval_default_to_auto():
    from ofconvert.bench.cli import build_parser, options_from_args
    from ofconvert.evaluation.variants import EvalOptions

    opts = options_from_args(build_parser().parse_args(["--models", "resnet50"]))
    assert opts.ort_cuda == ("auto",)
    opts.check()
    assert EvalOptions().ort_cuda == "auto"


def test_eval_cli_refuses_a_cuda_graph(tmp_path):
    from ofconvert.evaluation.cli import run

    with pytest.raises(OfconvertError, match="without CUDA graphs"):
        run(["--data", str(tmp_path), "--models", "resnet50", "--ort-cuda", "fastest"])


def _tiny_onnx(tmp_path):
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((4, 3, 1, 1), np.float32), "w")
    g = helper.make_graph([helper.make_node("Conv", ["input", "w"], ["c"]),
                           helper.make_node("GlobalAveragePool", ["c"], ["p"]),
                           helper.make_node("Flatten", ["p"], ["logits"])], "tiny",
                          [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 8, 8])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 4])], [w])
    path = str(tmp_path / "tiny.onnx")
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path
