"""Evidence for the OpenVINO CPU backend (docs/cpu.md + docs/results/openvino_cpu.json).

For each model: ONNX Runtime CPU and OpenVINO on the same files (fp32, and int8 in
both Q/DQ flavours: ``.int8-cpu.onnx`` with uint8 activations, ``.int8.onnx``
symmetric int8), plus OpenVINO computing the fp32 file in bf16 (what its CPU plugin
does by itself on an AVX512-BF16 / AMX CPU unless told f32; the backend pins f32).
All runners are loaded first, then timed in interleaved rounds (every cell runs
``per_round`` batches per round), so machine load hits every cell alike; medians
of per-batch latency, ratios of the medians. Then OpenVINO on the two int8
flavours alone, in alternating pairs (which flavour bench/eval should give it).

    .venv/bin/python -m scripts.evidence.openvino_cpu --models-dir out/ov/onnx --threads 2
"""
import argparse
import os
import time

import numpy as np

CELLS = (("ort-cpu", "fp32", {}), ("openvino", "fp32", {}), ("openvino", "fp32", {"inference_precision": "bf16"}),
         ("ort-cpu", "int8-cpu", {}), ("openvino", "int8-cpu", {}), ("openvino", "int8", {}))


def _label(backend, flavour, kw):
    return f"{backend}:{flavour}" + (f" ({kw['inference_precision']} arithmetic)" if kw else "")


def time_model(folder, stem, batch, threads, rounds, per_round, size=224):
    """{cell label: median ms per batch} of every CELLS entry on ``stem``."""
    from ofconvert import artifacts
    from ofconvert.runners import make_runner

    x = np.random.default_rng(0).standard_normal((batch, 3, size, size), dtype=np.float32)
    runners = []
    for backend, flavour, kw in CELLS:
        r = make_runner(backend, os.path.join(folder, artifacts.onnx_name(stem, flavour)), threads=threads, **kw)
        r.activate()
        for _ in range(3):
            r.infer(x)
        runners.append(r)
    times = [[] for _ in CELLS]
    for _ in range(rounds):
        for i, r in enumerate(runners):
            for _ in range(per_round):
                t0 = time.perf_counter()
                r.infer(x)
                times[i].append(time.perf_counter() - t0)
    for r in runners:
        r.deactivate()
    return {_label(*c): float(np.median(t) * 1e3) for c, t in zip(CELLS, times)}


def ab_int8(folder, stem, batch, threads, pairs=40, size=224):
    """OpenVINO on the two int8 flavours alone, alternating A-B / B-A for ``pairs``
    pairs: medians (ms) and in how many pairs the int8-cpu file was the faster."""
    from ofconvert import artifacts
    from ofconvert.runners import make_runner

    x = np.random.default_rng(0).standard_normal((batch, 3, size, size), dtype=np.float32)
    runners = [make_runner("openvino", os.path.join(folder, artifacts.onnx_name(stem, f)), threads=threads).activate()
               for f in ("int8", "int8-cpu")]
    for r in runners:
        for _ in range(3):
            r.infer(x)
    t = [[], []]
    for i in range(pairs):
        for k in ((0, 1) if i % 2 == 0 else (1, 0)):
            t0 = time.perf_counter()
            runners[k].infer(x)
            t[k].append(time.perf_counter() - t0)
    for r in runners:
        r.deactivate()
    sym, cpu = np.asarray(t[0]), np.asarray(t[1])
    return {"pairs": pairs, "int8_ms": round(float(np.median(sym)) * 1e3, 2),
            "int8_cpu_ms": round(float(np.median(cpu)) * 1e3, 2),
            "ratio_int8_over_int8_cpu": round(float(np.median(sym) / np.median(cpu)), 3),
            "int8_cpu_faster_pairs": int((cpu < sym).sum())}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="resnet50,efficientnet_lite0")
    p.add_argument("--models-dir", default="out/ov/onnx")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--per-round", type=int, default=3)
    p.add_argument("--out", default="docs/results/openvino_cpu.json")
    a = p.parse_args()
    load = [os.getloadavg()]
    out = {"batch": a.batch, "threads": a.threads, "rounds": a.rounds, "per_round": a.per_round, "models": {}}
    for stem in a.models.split(","):
        ms = time_model(a.models_dir, stem, a.batch, a.threads, a.rounds, a.per_round)
        out["models"][stem] = {k: {"ms": round(v, 2), "img_per_s": round(a.batch / v * 1e3, 2)} for k, v in ms.items()}
        for k, v in ms.items():
            print(f"{stem:20s} {k:38s} {v:8.1f} ms {a.batch / v * 1e3:7.1f} img/s")
        ab = out["models"][stem]["openvino int8 flavours, paired"] = ab_int8(a.models_dir, stem, a.batch, a.threads)
        print(f"{stem:20s} openvino int8 / int8-cpu (paired)       {ab['ratio_int8_over_int8_cpu']:.3f}x, "
              f"int8-cpu faster in {ab['int8_cpu_faster_pairs']}/{ab['pairs']} pairs")
        load.append(os.getloadavg())
    out["loadavg"] = load
    from ofconvert import fileio
    from ofconvert.report import environment

    out["environment"] = environment()
    fileio.write_json(a.out, out)
    print("wrote", a.out)


if __name__ == "__main__":
    main()
