"""``--ort-cuda auto``: the ort-cuda settings chosen by measurement, not assumed.

For one (model file sha256, precision, batch, input location, GPU name, ONNX
Runtime version) every candidate of ``CANDIDATES`` (the ``default`` and
``fastest`` presets and the flag combinations that matter, docs/gpu.md) runs a
few warm-up and a few dozen timed batches; the fastest is kept. Decisions are
cached as JSON, one file per model sha256, in ``<cache>/ort-cuda-auto/`` (the
folder of the preprocessing cache: ``$OFCONVERT_CACHE`` or
``~/.cache/ofconvert``): a later run of the same file on the same GPU and ONNX
Runtime decides nothing; a changed file has another sha256 and is decided
again; an unreadable cache file is ignored and rewritten (atomic writes).

Why a depthwise fp32 model loses under ``fastest`` is measured in docs/gpu.md.
"""
import dataclasses
import functools
import json
import os
import subprocess
import time
from typing import Callable, Dict, Optional, Sequence

from .. import fileio
from ..artifacts.content import sha256 as content_sha256
from ..errors import first_line
from .ort_settings import PRESETS, OrtCudaSettings

# Candidates with a CUDA graph (bench: one batch shape per session) and without (eval: the last batch is smaller).
CANDIDATES = ("default", "fastest", "iobind+graph+fusebias+algo=heuristic", "iobind+nhwc+graph+algo=heuristic",
              "iobind+graph+algo=heuristic")
NO_GRAPH_CANDIDATES = ("default", "iobind+nhwc+fusebias+algo=heuristic", "iobind+fusebias+algo=heuristic",
                       "iobind+nhwc+algo=heuristic", "iobind+algo=heuristic")
WARMUP, ITERS = 5, 30
CACHE_VERSION = 1
FOLDER = "ort-cuda-auto"


@dataclasses.dataclass
class AutoDecision:
    settings: OrtCudaSettings       # the fastest candidate
    key: str                        # what it was decided for
    timings: Dict[str, float]       # candidate spec -> img/s (None: it failed on this model)
    cached: bool                    # read from the cache (nothing timed now)
    seconds: float = 0.0            # time spent deciding now

    @property
    def spec(self):
        return self.settings.spec


@dataclasses.dataclass(frozen=True)
class AutoEnv:
    """Where and how ``decide`` measures: ``timer(spec, path, batch, where) -> img/s``
    (default ``time_candidate``; raising = the candidate cannot run this model), the
    cache folder (default: the preprocessing cache's), the GPU name and ONNX Runtime
    version of the key (default: this machine's), ``log`` for one line per decision."""

    timer: Optional[Callable] = None
    cache_dir: Optional[str] = None
    gpu: Optional[str] = None
    ort: Optional[str] = None
    log: Optional[Callable] = None


@functools.lru_cache(maxsize=None)
def gpu_name(device=0):
    """The GPU's name (nvidia-smi), or "cuda:<device>" where it cannot be read."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader", "-i", str(device)],
                             capture_output=True, text=True, timeout=20)
        name = out.stdout.strip().splitlines()[0].strip() if out.returncode == 0 and out.stdout.strip() else ""
    except (OSError, subprocess.SubprocessError):
        name = ""
    return name or f"cuda:{device}"


def ort_version():
    import onnxruntime

    return onnxruntime.__version__


def cache_file(sha256, cache_dir=None):
    from ..preprocache import default_cache_dir

    return os.path.join(cache_dir or default_cache_dir(), FOLDER, f"{sha256}.json")


def decision_key(precision, batch, where, gpu, ort, candidates):
    return f"v{CACHE_VERSION}|{precision}|b{int(batch)}|{where}|{gpu}|ort {ort}|{','.join(candidates)}"


def _read(path):
    """The decisions in ``path`` ({} when missing or unreadable: it is rewritten)."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    dec = data.get("decisions") if isinstance(data, dict) else None
    return dec if isinstance(dec, dict) else {}


def _valid(entry, candidates):
    return isinstance(entry, dict) and entry.get("settings") in candidates


def decide(path, precision, batch, where="device", candidates: Sequence[str] = CANDIDATES,
           env: Optional[AutoEnv] = None) -> AutoDecision:
    """The fastest of ``candidates`` for ``path`` at ``batch`` (``where``: "device" or
    "host" input), from the cache or timed now (``AutoEnv``)."""
    env = env or AutoEnv()
    log = env.log
    sha = content_sha256(path)   # memoised by path, size and mtime: decide runs once per batch
    key = decision_key(precision, batch, where, env.gpu or gpu_name(), env.ort or ort_version(), candidates)
    cfile = cache_file(sha, env.cache_dir)
    decisions = _read(cfile)
    if _valid(decisions.get(key), candidates):
        e = decisions[key]
        return AutoDecision(OrtCudaSettings.parse(e["settings"]), key, e.get("timings", {}), cached=True)
    timer = env.timer or time_candidate
    t0 = time.perf_counter()
    timings = {}
    for spec in candidates:
        try:
            timings[spec] = float(timer(spec, path, batch, where))
        except Exception as e:   # a candidate this model cannot run (e.g. a CUDA graph with a CPU node)
            timings[spec] = None
            if log:
                log(f"auto: {spec} fails on {os.path.basename(path)}: {first_line(e)}")
    ok = {s: v for s, v in timings.items() if v}
    if not ok:
        from ..errors import OfconvertError

        raise OfconvertError(f"--ort-cuda auto: no candidate settings run {path} at batch {batch}")
    best = max(ok, key=ok.get)
    decisions = _read(cfile)   # another process may have added decisions meanwhile
    decisions[key] = {"settings": best, "timings": timings, "model": os.path.abspath(path),
                      "decided": time.strftime("%Y-%m-%dT%H:%M:%S")}
    fileio.write_json(cfile, {"sha256": sha, "decisions": decisions})
    if log:
        log(f"auto: {os.path.basename(path)} {precision} batch {batch} ({where} input): {best} "
            f"({', '.join(f'{s} {v:.0f}' if v else f'{s} n/a' for s, v in timings.items())} img/s)")
    return AutoDecision(OrtCudaSettings.parse(best), key, timings, cached=False, seconds=time.perf_counter() - t0)


def random_batch(runner, batch, size=None):
    """A seeded random batch of the runner's declared input (uint8 NHWC for a raw-image model)."""
    import numpy as np

    meta = runner.session.get_inputs()[0]
    dims = [batch if i == 0 else (d if isinstance(d, int) else size or 224) for i, d in enumerate(meta.shape)]
    rng = np.random.default_rng(0)
    if runner.input_dtype == np.uint8:
        return rng.integers(0, 256, size=dims, dtype=np.uint8)
    return rng.standard_normal(dims, dtype=np.float32).astype(runner.input_dtype)


def time_candidate(spec, path, batch, where="device", warmup=WARMUP, iters=ITERS):
    """img/s of ``spec`` on ``path`` at ``batch``: a fresh session, ``warmup`` then
    ``iters`` timed batches (each synchronised), mean latency."""
    from . import make_runner

    runner = make_runner("ort-cuda", path, **OrtCudaSettings.parse(spec).runner_kwargs())
    with runner:
        step = runner.make_step(random_batch(runner, batch), device_input=(where == "device"))
        for _ in range(warmup):
            step()
        t0 = time.perf_counter()
        for _ in range(iters):
            step()
        return batch * iters / (time.perf_counter() - t0)


assert all(p in CANDIDATES for p in PRESETS)
