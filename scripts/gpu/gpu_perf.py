#!/usr/bin/env python
"""GPU-machine measurements behind docs/gpu.md: where ONNX Runtime's CUDA time goes,
which session settings help, K concurrent streams, and torch peers in the same run.

Runs on the lent H200 (Python 3.12, torch, onnxruntime-gpu from ../shared/gpu) with
``PYTHONPATH=<repo>:/tmp/site``; torch is a measuring aid here, never a runtime
dependency of ofconvert. Every figure a command prints comes from that one command.

    python scripts/gpu/gpu_perf.py profile --onnx-dir /tmp/ofc_onnx --model resnet50 --batches 50,256
    python scripts/gpu/gpu_perf.py sweep   --onnx-dir /tmp/ofc_onnx --model resnet50 --batches 50,256
    python scripts/gpu/gpu_perf.py table   --onnx-dir /tmp/ofc_onnx --models resnet50,efficientnet_lite0,inception_v3

Results: JSON + markdown under ``--out`` (default ``$OUT`` or out/gpu).
"""
import argparse
import collections
import json
import os
import re
import statistics
import sys
import threading
import time

import numpy as np

WARMUP = 10   # untimed runs before the timed ones
SIZES = {"resnet50": 224, "efficientnet_lite0": 224, "inception_v3": 299}

# ORT-CUDA settings: provider options + how the session is driven. "fastest" is the
# preset measured in the first GPU session (docs/gpu.md); the others each add one knob.
BASE = {"prefer_nhwc": "1", "cudnn_conv_algo_search": "HEURISTIC"}
VARIANTS = {
    "default": ({}, False),
    "fastest": (BASE, True),
    "fastest+exhaustive": ({**BASE, "cudnn_conv_algo_search": "EXHAUSTIVE"}, True),
    "fastest+maxws": ({**BASE, "cudnn_conv_use_max_workspace": "1"}, True),
    "fastest+exhaustive+maxws": ({**BASE, "cudnn_conv_algo_search": "EXHAUSTIVE", "cudnn_conv_use_max_workspace": "1"},
                                 True),
    "fastest+fuse_conv_bias": ({**BASE, "fuse_conv_bias": "1"}, True),
    "fastest+tunable": ({**BASE, "tunable_op_enable": "1", "tunable_op_tuning_enable": "1"}, True),
    "nhwc+exhaustive (no graph)": ({**BASE, "cudnn_conv_algo_search": "EXHAUSTIVE"}, False),
    "fastest+fuse_conv_bias (no graph)": ({**BASE, "fuse_conv_bias": "1"}, False),
}


def _out_dir(a):
    d = a.out or os.environ.get("OUT") or os.path.join("out", "gpu")
    os.makedirs(d, exist_ok=True)
    return d


def _onnx(a, model, precision):
    return os.path.join(a.onnx_dir, f"{model}.onnx" if precision == "fp32" else f"{model}.{precision}.onnx")


def _runner(path, opts, graph, provider="cuda", optimized=None):
    from ofconvert.runners.onnxruntime import OnnxRuntimeRunner

    r = OnnxRuntimeRunner(path, provider=provider, provider_options=opts if provider == "cuda" else None,
                          io_binding=provider == "cuda", cuda_graph=graph and provider == "cuda",
                          optimized_model_path=optimized)
    r.activate()
    return r


def _batch(model, b, dtype):
    s = SIZES.get(model, 224)
    return np.random.default_rng(0).standard_normal((b, 3, s, s)).astype(dtype)


def _time_steps(steps, iters, warmup):
    """steps: one callable per stream (each runs a batch and waits for it). Each
    stream warms up in its own thread, one at a time (ORT's CUDA provider keeps its
    CUDA graph per thread, and a capture is global to the process), then all run
    ``iters`` batches at once; returns (wall seconds, per-batch latencies in ms).
    A failure in any stream raises."""
    lat = [[] for _ in steps]
    start = threading.Barrier(len(steps) + 1)
    warming = threading.Lock()
    errors = []

    def work(i):
        st, out = steps[i], lat[i]
        try:
            with warming:
                for _ in range(warmup):
                    st()
        except Exception as e:
            errors.append(e)
        start.wait()
        if errors:
            return
        try:
            for _ in range(iters):
                t = time.perf_counter()
                st()
                out.append((time.perf_counter() - t) * 1e3)
        except Exception as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(steps))]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - t0, [x for out in lat for x in out]


def measure_ort(path, model, batch, opts, graph, streams=1, iters=300, provider="cuda"):
    runners = [_runner(path, opts, graph, provider) for _ in range(streams)]
    try:
        x = _batch(model, batch, runners[0].input_dtype)
        steps = [r.make_step(x, device_input=True) for r in runners]
        wall, lat = _time_steps(steps, iters, WARMUP)
    finally:
        for r in runners:
            r.deactivate()
    return _row(batch, streams, iters, wall, lat)


def _row(batch, streams, iters, wall, lat):
    lat = sorted(lat)
    return {"batch": batch, "streams": streams, "iters_per_stream": iters,
            "img_per_s": round(batch * streams * iters / wall, 1),
            "latency_ms_p50": round(statistics.median(lat), 3),
            "latency_ms_p99": round(lat[min(len(lat) - 1, int(0.99 * len(lat)))], 3)}


# ---------------------------------------------------------------------------
# profile: GPU kernel time by category (CUPTI through torch.profiler, which sees
# every kernel of the process, ONNX Runtime's included) + the optimized graph
# ---------------------------------------------------------------------------
CATEGORIES = [
    ("layout transpose", r"nchwToNhwc|nhwcToNchw|[Tt]ranspose"),
    ("cast", r"[Cc]ast"),
    ("conv bias add (cuDNN generic op)", r"op_generic_tensor_kernel"),
    ("pooling", r"[Pp]ool"),
    ("convolution", r"conv|xmma|implicit_gemm|fprop|wgrad|dgrad|cudnn|winograd|sm\d+_.*gemm|cutlass|nvjet"),
    ("gemm (fc)", r"gemm|Gemm|cublas|ampere_.*|sm90_.*"),
    ("reduce", r"[Rr]educe"),
    ("elementwise (add/relu/clip)", r"Elementwise|ElementWise|_Binary|_Unary|Relu|Clip|Add|Mul|elementwise"),
    ("copy / memset", r"[Mm]emcpy|[Mm]emset|[Cc]opy"),
]


def _category(name):
    for cat, pat in CATEGORIES:
        if re.search(pat, name):
            return cat
    return "other"


def _op_counts(path):
    import onnx

    m = onnx.load(path, load_external_data=False)
    c = collections.Counter((n.domain or "ai.onnx") + "::" + n.op_type for n in m.graph.node)
    return dict(c.most_common())


def cmd_profile(a):
    import torch
    from torch.profiler import ProfilerActivity, profile

    out = _out_dir(a)
    res = {"model": a.model, "precision": a.precision, "settings": a.settings, "runs": []}
    opts, graph = VARIANTS[a.settings]
    path = _onnx(a, a.model, a.precision)
    res["onnx_ops"] = _op_counts(path)
    for b in a.batches:
        opt_path = os.path.join("/tmp", f"{a.model}.{a.precision}.b{b}.optimized.onnx")
        r = _runner(path, opts, graph, optimized=opt_path)
        x = _batch(a.model, b, r.input_dtype)
        step = r.make_step(x, device_input=True)
        for _ in range(10):
            step()
        torch.cuda.synchronize()
        n = a.iters
        t0 = time.perf_counter()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(n):
                step()
        wall = time.perf_counter() - t0
        kernels = collections.defaultdict(lambda: [0.0, 0])
        for e in prof.events():
            dev_us = getattr(e, "device_time", None) or getattr(e, "cuda_time", 0) or 0
            if e.device_type == torch.autograd.DeviceType.CUDA and dev_us:
                k = kernels[e.name]
                k[0] += dev_us
                k[1] += 1
        total = sum(v[0] for v in kernels.values())
        cats = collections.defaultdict(float)
        for name, (us, _) in kernels.items():
            cats[_category(name)] += us
        top = sorted(kernels.items(), key=lambda kv: -kv[1][0])[:25]
        run = {"batch": b, "batches_profiled": n, "wall_ms_per_batch": round(wall / n * 1e3, 3),
               "gpu_kernel_ms_per_batch": round(total / n / 1e3, 3),
               "kernels_per_batch": round(sum(v[1] for v in kernels.values()) / n, 1),
               "categories_ms_per_batch": {c: round(us / n / 1e3, 3) for c, us in
                                           sorted(cats.items(), key=lambda kv: -kv[1])},
               "top_kernels": [{"name": k[:160], "ms_per_batch": round(v[0] / n / 1e3, 4),
                                "calls_per_batch": round(v[1] / n, 1), "category": _category(k)} for k, v in top]}
        if os.path.isfile(opt_path):
            run["optimized_graph_ops"] = _op_counts(opt_path)
        r.deactivate()
        res["runs"].append(run)
        print(f"profile {a.model} {a.precision} b{b}: wall {run['wall_ms_per_batch']} ms/batch, "
              f"GPU kernels {run['gpu_kernel_ms_per_batch']} ms/batch, {run['kernels_per_batch']} kernels", flush=True)
        for c, ms in run["categories_ms_per_batch"].items():
            print(f"   {c:32s} {ms:8.3f} ms", flush=True)
        for k in run["top_kernels"][:12]:
            print(f"   {k['ms_per_batch']:8.4f} ms x{k['calls_per_batch']:<5} [{k['category']}] {k['name'][:110]}",
                  flush=True)
        if "optimized_graph_ops" in run:
            print("   optimized graph:", run["optimized_graph_ops"], flush=True)
    _write(out, f"profile-{a.model}-{a.precision}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', a.settings)}", res)


# ---------------------------------------------------------------------------
# sweep: one knob at a time on top of the preset
# ---------------------------------------------------------------------------
def cmd_sweep(a):
    out = _out_dir(a)
    rows = []
    names = a.variants or list(VARIANTS)
    for model in a.models:
        for prec in a.precisions:
            path = _onnx(a, model, prec)
            for b in a.batches:
                for name in names:
                    opts, graph = VARIANTS[name]
                    try:
                        r = measure_ort(path, model, b, opts, graph, iters=a.iters, provider=a.provider)
                        r.update(status="ok")
                    except Exception as e:  # an option this ORT build refuses: recorded, not fatal
                        r = {"batch": b, "status": "error", "reason": str(e).splitlines()[0][:200]}
                    r.update(model=model, precision=prec, settings=name)
                    rows.append(r)
                    print(json.dumps(r), flush=True)
    best = _best(rows)
    print("best settings (geomean over the cells, every cell valid):", best, flush=True)
    if best:
        with open(BEST_FILE, "w") as f:   # the next call's `table` reads it (scripts/gpu/gpu_perf.sh)
            f.write(best)
    _write(out, "sweep", {"rows": rows, "best": best})


BEST_FILE = "/tmp/ofc_best_variant.txt"


def _best(rows):
    import math

    cells = {(r["model"], r["precision"], r["batch"]) for r in rows}
    by = collections.defaultdict(dict)
    for r in rows:
        if r.get("status") == "ok":
            by[r["settings"]][(r["model"], r["precision"], r["batch"])] = r["img_per_s"]
    ranked = [(math.exp(sum(map(math.log, d.values())) / len(d)), name) for name, d in by.items()
              if len(d) == len(cells) and name != "default"]
    return max(ranked)[1] if ranked else None


# ---------------------------------------------------------------------------
# table: best ORT settings at 1 and K streams + torch peers, one run
# ---------------------------------------------------------------------------
def _torch_model(name):
    import torch
    import torchvision

    if name == "resnet50":
        return torchvision.models.resnet50()
    if name == "inception_v3":
        return torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False)
    if name.startswith("efficientnet_lite"):
        # the same architecture file ofconvert exports from OneFlow, run by torch
        # (OneFlow's API mirrors torch's); a measuring aid only
        import importlib.util

        for mod, alias in (("oneflow", torch), ("oneflow.nn", torch.nn),
                           ("oneflow.nn.functional", torch.nn.functional)):
            sys.modules.setdefault(mod, alias)
        here = os.path.dirname(os.path.abspath(__file__))
        spec = importlib.util.spec_from_file_location(
            "_lite", os.path.join(here, "..", "..", "ofconvert", "models", "efficientnet_lite.py"))
        lite = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(lite)
        return lite.EfficientNetLite(name)
    raise SystemExit(f"no torch peer for {name}")


def measure_torch(model, batch, mode, iters, warmup=WARMUP):
    import torch

    torch.manual_seed(0)
    torch._dynamo.reset()   # noqa: SLF001 (no public reset) a fresh compile per (model, batch): static shapes, no cache from the last cell
    m = _torch_model(model).eval().half().cuda().to(memory_format=torch.channels_last)
    s = SIZES.get(model, 224)
    x = torch.randn(batch, 3, s, s, device="cuda", dtype=torch.half).to(memory_format=torch.channels_last)
    fn = m if mode == "eager" else torch.compile(m, mode="reduce-overhead", dynamic=False)
    t_compile = time.perf_counter()
    with torch.inference_mode():
        for _ in range(warmup):
            fn(x)
        torch.cuda.synchronize()
        t_compile = time.perf_counter() - t_compile
        lat = []
        t0 = time.perf_counter()
        for _ in range(iters):
            t = time.perf_counter()
            fn(x)
            torch.cuda.synchronize()
            lat.append((time.perf_counter() - t) * 1e3)
        wall = time.perf_counter() - t0
    del fn, m
    torch.cuda.empty_cache()
    r = _row(batch, 1, iters, wall, lat)
    r["warmup_s"] = round(t_compile, 1)
    return r


def cmd_table(a):
    out = _out_dir(a)
    rows = []
    for model in a.models:
        path = _onnx(a, model, a.precision)
        for b in a.batches:
            names = list(dict.fromkeys(a.variants or ["default", "fastest"]))
            streamed = a.stream_variants or names[-1:]
            for name in names + [v for v in streamed if v not in names]:
                opts, graph = VARIANTS[name]
                for k in (a.streams if name in streamed else [1]):
                    try:
                        r = measure_ort(path, model, b, opts, graph, streams=k, iters=a.iters)
                        r.update(status="ok")
                    except Exception as e:
                        r = {"batch": b, "streams": k, "status": "error", "reason": str(e).splitlines()[0][:200]}
                    r.update(model=model, runtime="ort-cuda", settings=name)
                    rows.append(r)
                    print(json.dumps(r), flush=True)
            for mode in a.peers:
                try:
                    r = measure_torch(model, b, mode, a.iters)
                    r.update(status="ok")
                except Exception as e:
                    r = {"batch": b, "streams": 1, "status": "error", "reason": str(e).splitlines()[0][:200]}
                r.update(model=model, runtime=f"torch-{mode}", settings="fp16 channels_last" +
                         (" reduce-overhead" if mode == "compile" else ""))
                rows.append(r)
                print(json.dumps(r), flush=True)
    _write(out, "table", {"precision": a.precision, "rows": rows, "env": _env()})


def _env():
    env = {"python": sys.version.split()[0], "numpy": np.__version__}
    for mod in ("onnxruntime", "torch", "onnx"):
        try:
            env[mod] = __import__(mod).__version__
        except Exception:
            pass
    try:
        import torch

        env["gpu"] = torch.cuda.get_device_name(0)
    except Exception:
        pass
    return env


def _write(out, stem, obj):
    with open(os.path.join(out, stem + ".json"), "w") as f:
        json.dump(obj, f, indent=1)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)

    def common(p):
        p.add_argument("--onnx-dir", default="/tmp/ofc_onnx")
        p.add_argument("--batches", type=lambda s: [int(v) for v in s.split(",")], default=[50, 256])
        p.add_argument("--iters", type=int, default=300)
        p.add_argument("--out")

    p = sub.add_parser("profile")
    common(p)
    p.add_argument("--model", default="resnet50")
    p.add_argument("--precision", default="fp16")
    p.add_argument("--settings", default="fastest", choices=list(VARIANTS))
    p = sub.add_parser("sweep")
    common(p)
    p.add_argument("--models", type=lambda s: s.split(","), default=["resnet50"])
    p.add_argument("--precisions", type=lambda s: s.split(","), default=["fp16"])
    p.add_argument("--variants", type=lambda s: s.split(";"))
    p.add_argument("--provider", default="cuda", choices=("cuda", "cpu"), help="cpu: a smoke test of this script")
    p = sub.add_parser("table")
    common(p)
    p.add_argument("--models", type=lambda s: s.split(","), default=list(SIZES))
    p.add_argument("--precision", default="fp16")
    p.add_argument("--variants", type=lambda s: s.split(";"))
    p.add_argument("--streams", type=lambda s: [int(v) for v in s.split(",")], default=[1, 2, 4])
    p.add_argument("--stream-variants", type=lambda s: s.split(";"), help="variants run at every --streams K "
                   "(default: the last of --variants); the others run one stream")
    p.add_argument("--peers", type=lambda s: [v for v in s.split(",") if v], default=["eager", "compile"])
    a = ap.parse_args(argv)
    {"profile": cmd_profile, "sweep": cmd_sweep, "table": cmd_table}[a.cmd](a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
