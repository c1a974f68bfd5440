"""Throughput benchmark: models x backends x precisions x batch sizes.

Protocol (the original OneFlow/TensorRT tables): input 224x224 (299x299 for
inception_v3), ``warmup`` untimed batches, then ``iters`` timed batches; each
batch is timed on its own and synchronised (ONNX Runtime's CUDA provider waits
for the GPU at the end of every run, and device-resident runs also wait for the
bound outputs), so throughput = batch / mean batch latency, and p50/p90/p99 are
percentiles of the per-batch latencies.

Each (model, backend, precision, settings) runs in its own process
(``python -m ofconvert.bench --worker``): OneFlow loaded in the same process
slows ONNX Runtime 2-3x, and one model at a time bounds memory (vgg16 peaks at
12 GB). A backend that cannot run gives ``n/a`` rows with the reason.

Python: ``ofconvert.benchmark(models, backends, precisions, batches, options)``
returns ``BenchResult`` rows; ``write_reports`` writes markdown, JSON, CSV and PNG.
Heavy packages (onnxruntime, oneflow, tensorrt, matplotlib, tqdm) load lazily.
"""
import argparse
import csv
import dataclasses
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from typing import Optional, Tuple

from . import artifacts, fileio
from .config import PRECISIONS, get_config, list_models
from .artifacts import PrecisionMismatchError, engine_name, onnx_name
from .errors import BackendUnavailableError, OfconvertError, check_type
from .isolation import child_env

BACKENDS = ("oneflow", "ort-cpu", "ort-cuda", "trt")
INPUTS = ("host", "device")
DEFAULT_MODELS = ("alexnet", "vgg16", "resnet50", "inception_v3")
GPU_BACKENDS = ("ort-cuda", "trt")
CUDNN_ALGO_SEARCH = ("EXHAUSTIVE", "HEURISTIC", "DEFAULT")
CALIB_IMAGES = 64  # images calibrating an int8 model the benchmark has to create (without --calib-data)


# ---------------------------------------------------------------------------
# ONNX Runtime CUDA settings
# ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class OrtCudaSettings:
    """How the ``ort-cuda`` backend runs a model.

    io_binding: feed/fetch through an IO binding (needed for device-resident input).
    prefer_nhwc: let the CUDA provider run convolutions in NHWC (tensor-core friendly).
    cuda_graph: capture the whole model once and replay it (needs every node on
    the GPU and fixed-address buffers; implies io_binding).
    cudnn_conv_algo_search: None leaves ONNX Runtime's default (EXHAUSTIVE).
    """

    io_binding: bool = False
    prefer_nhwc: bool = False
    cuda_graph: bool = False
    cudnn_conv_algo_search: Optional[str] = None

    _FLAGS = {"iobind": "io_binding", "nhwc": "prefer_nhwc", "graph": "cuda_graph"}

    @classmethod
    def parse(cls, spec):
        """``default`` (ONNX Runtime as shipped), ``fastest`` (this tool's default,
        see docs/gpu.md) or flags joined by ``+``: ``iobind``, ``nhwc``, ``graph``,
        ``algo=EXHAUSTIVE|HEURISTIC|DEFAULT``; e.g. ``nhwc+graph+algo=heuristic``."""
        spec = str(spec).strip()
        if spec in PRESETS:
            return PRESETS[spec]
        if spec == "plain":
            return cls()
        kw = {}
        for part in filter(None, spec.split("+")):
            if part in cls._FLAGS:
                kw[cls._FLAGS[part]] = True
            elif part.lower().startswith("algo="):
                algo = part.split("=", 1)[1].upper()
                if algo not in CUDNN_ALGO_SEARCH:
                    raise OfconvertError(f"bad cuDNN algo search {algo!r} in {spec!r}; one of {', '.join(CUDNN_ALGO_SEARCH)}")
                kw["cudnn_conv_algo_search"] = algo
            else:
                raise OfconvertError(f"bad ort-cuda settings {spec!r}: unknown part {part!r}; use default, fastest or "
                                     f"{'+'.join(cls._FLAGS)}+algo=EXHAUSTIVE|HEURISTIC|DEFAULT")
        if not kw:
            raise OfconvertError(f"empty ort-cuda settings {spec!r}")
        return cls(**kw)

    @property
    def label(self):
        for name, preset in PRESETS.items():
            if preset == self:
                return name
        return self.spec

    @property
    def spec(self):
        parts = [flag for flag, attr in self._FLAGS.items() if getattr(self, attr)]
        if self.cudnn_conv_algo_search:
            parts.append("algo=" + self.cudnn_conv_algo_search.lower())
        return "+".join(parts) or "plain"

    def runner_kwargs(self):
        opts = {}
        if self.prefer_nhwc:
            opts["prefer_nhwc"] = "1"
        if self.cudnn_conv_algo_search:
            opts["cudnn_conv_algo_search"] = self.cudnn_conv_algo_search
        return {"provider_options": opts, "io_binding": self.io_binding or self.cuda_graph,
                "cuda_graph": self.cuda_graph}


PRESETS = {
    # ONNX Runtime's CUDA provider as a user gets it: session.run() on numpy arrays.
    "default": OrtCudaSettings(),
    # The fastest valid combination measured on an H200 (docs/gpu.md, docs/results/).
    "fastest": OrtCudaSettings(io_binding=True, prefer_nhwc=True, cuda_graph=True, cudnn_conv_algo_search="HEURISTIC"),
}


# ---------------------------------------------------------------------------
# Options and results
# ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class BenchOptions:
    """Protocol and environment of one benchmark run."""

    warmup: int = 5
    iters: int = 500
    inputs: Tuple[str, ...] = ("device",)   # GPU backends; CPU backends always take host input
    ort_cuda: Tuple[str, ...] = ("fastest",)  # one column per settings spec
    onnx_dir: Optional[str] = None           # prebuilt <model>[.fp16|.int8|.int8-cpu].onnx; missing ones are created
    calib_data: Optional[str] = None         # image folder for creating int8 models
    threads: Optional[int] = None            # CPU threads (ort-cpu intra-op, oneflow)
    input_size: Optional[int] = None         # override the model's input size
    timeout_s: float = 3600.0                # per worker process
    seed: int = 0

    def check(self):
        if self.warmup < 0 or self.iters < 1:
            raise OfconvertError(f"--warmup must be >= 0 and --iters >= 1 (got {self.warmup}, {self.iters})")
        for i in self.inputs:
            if i not in INPUTS:
                raise OfconvertError(f"bad input location {i!r}; one of {', '.join(INPUTS)}")
        for s in self.ort_cuda:
            OrtCudaSettings.parse(s)
        if self.threads is not None and self.threads < 1:
            raise OfconvertError(f"--threads must be >= 1 (got {self.threads})")
        if self.input_size is not None and self.input_size < 32:
            raise OfconvertError(f"--input-size must be >= 32 (got {self.input_size})")
        if self.onnx_dir is not None and not os.path.isdir(self.onnx_dir):
            raise OfconvertError(f"--onnx-dir is not a folder: {self.onnx_dir}")
        return self


@dataclasses.dataclass
class BenchResult:
    model: str
    backend: str
    precision: str
    batch: int
    input: str                 # "host" or "device"
    settings: str = ""         # ort-cuda settings label, "" for other backends
    status: str = "ok"         # "ok" or "n/a"
    reason: str = ""
    img_per_s: Optional[float] = None
    latency_ms_mean: Optional[float] = None
    latency_ms_p50: Optional[float] = None
    latency_ms_p90: Optional[float] = None
    latency_ms_p99: Optional[float] = None
    input_size: Optional[int] = None
    warmup: Optional[int] = None
    iters: Optional[int] = None
    model_file: str = ""       # absolute path of the file it ran ("" for oneflow: the zoo model)
    model_sha256: str = ""     # sha256 of model_file
    detected_precision: str = ""  # model_file's precision read from its content (ofconvert.artifacts)
    providers: str = ""
    pid: Optional[int] = None  # the worker process that measured it

    @property
    def column(self):
        """Table column: backend[settings](precision[, device input])."""
        name = self.backend + (f"[{self.settings}]" if self.settings else "")
        return f"{name}({self.precision}{', dev-in' if self.input == 'device' else ''})"

    def to_dict(self):
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------
# Model files
# ---------------------------------------------------------------------------
def _onnx_folder(options):
    """``--onnx-dir``, else ``./out/onnx`` relative to the working directory (never
    the package's own tree)."""
    return options.onnx_dir or os.path.abspath(os.path.join("out", "onnx"))


def _is_onnx_file(model):
    return str(model).endswith(".onnx")


def _onnx_input_size(path):
    """Input size of an ONNX file: its ofconvert.preprocess metadata, else its static H."""
    import onnx

    from .config import METADATA_KEY, PreprocessConfig

    try:
        m = onnx.load(path, load_external_data=False)
    except Exception as e:
        raise OfconvertError(f"cannot read ONNX file {path}: {type(e).__name__}") from None
    from .onnx_fix import get_metadata

    meta = get_metadata(m)
    if METADATA_KEY in meta:
        return PreprocessConfig.from_json(meta[METADATA_KEY]).input_size
    if len(m.graph.input) != 1:
        raise OfconvertError(f"{path}: the benchmark runs image models with one input; this one has "
                             f"{len(m.graph.input)} inputs")
    dims = m.graph.input[0].type.tensor_type.shape.dim
    if len(dims) != 4 or (dims[1].dim_value not in (0, 3)):
        shape = [d.dim_value or d.dim_param or "?" for d in dims]
        raise OfconvertError(f"{path}: input shape {shape} is not an NCHW RGB image; the benchmark runs "
                             f"image models (N, 3, H, W)")
    if dims[2].dim_value > 0:
        return dims[2].dim_value
    return None


def _resolve_model(model, options):
    """(display name, input size, folder, stem) of a zoo name or an ONNX file path."""
    if _is_onnx_file(model):
        if not os.path.isfile(model):
            raise OfconvertError(f"ONNX file not found: {model}")
        size = options.input_size or _onnx_input_size(model)
        if size is None:
            raise OfconvertError(f"{model}: dynamic input size; pass --input-size")
        stem = os.path.basename(model)[:-len(".onnx")]
        return stem, size, os.path.dirname(os.path.abspath(model)), stem
    size = options.input_size or get_config(model).preprocess.input_size
    return model, size, _onnx_folder(options), model


def _check_existing(folder, stem, precision, backend, batches):
    """Refuse (PrecisionMismatchError) a file already in ``folder`` for (precision,
    backend) whose content is another precision, and a mislabelled ``<stem>.onnx``
    that a missing file would be made from. Called for every cell before anything
    is created or run."""
    if backend == "trt":
        engine = os.path.join(folder, engine_name(stem, precision, max(batches)))
        if os.path.isfile(engine):
            try:
                artifacts.check_precision(engine, precision)
            except PrecisionMismatchError:
                raise
            except OfconvertError:   # no usable sidecar: the cell becomes n/a with the reason later
                pass
            return
    path = os.path.join(folder, onnx_name(stem, precision, backend))
    if os.path.isfile(path):
        artifacts.check_precision(path, artifacts.flavour(precision, backend))
    else:
        source = os.path.join(folder, onnx_name(stem, "fp32"))
        if os.path.isfile(source):
            artifacts.check_precision(source, "fp32", role=f"the source of {os.path.basename(path)}")


def _find_onnx_impl(folder, stem, precision, backend, options):
    """Path of ``<folder>/<stem><suffix>.onnx`` for (precision, backend), checked
    to hold that precision (``artifacts.check_precision``). A missing file is created
    in a separate process (export needs OneFlow, which must not share a process with
    the driver's later work); failure raises with the reason."""
    path = os.path.join(folder, onnx_name(stem, precision, backend))
    want = artifacts.flavour(precision, backend)
    if os.path.isfile(path):
        artifacts.check_precision(path, want)
        return path
    cmd = [sys.executable, "-m", "ofconvert.bench", "--prepare", f"{stem}:{precision}:{backend}", "--onnx-dir", folder]
    if options.calib_data:
        cmd += ["--calib-data", options.calib_data]
    proc = subprocess.run(cmd, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if proc.returncode != 0 or not os.path.isfile(path):
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        raise BackendUnavailableError(f"no {os.path.basename(path)} in {folder} and creating it failed: "
                                      + (err[-1][:300] if err else f"exit code {proc.returncode}"))
    artifacts.check_precision(path, want)
    return path


def _create_onnx_impl(model, precision, backend, folder, calib_data=None):
    """Create ``<model><suffix>.onnx`` in folder through the conversion pipeline
    (``ofconvert.convert``: OneFlow export, then fp16 / calibration + Q/DQ)."""
    from .pipeline import ConvertOptions, convert
    from .data import datasets_root

    path = os.path.join(folder, onnx_name(model, precision, backend))
    opts = ConvertOptions(model=model, output=path, precision=precision, validate=False)
    if precision == "int8":
        # throughput needs valid ranges, not the best ones: a few images suffice
        opts.calib = calib_data or os.path.join(datasets_root(), "imagenet-val-1300")
        opts.calib_images = None if calib_data else CALIB_IMAGES
    try:
        convert(opts, log=lambda *a: None)
    except ImportError as e:
        raise BackendUnavailableError(f"cannot create {os.path.basename(path)} here ({e})") from None
    return path


def _find_engine_impl(folder, stem, precision, batches, options):
    engine = os.path.join(folder, engine_name(stem, precision, max(batches)))
    if os.path.isfile(engine):
        artifacts.check_precision(engine, precision)   # from its sidecar; none: n/a with the reason
    else:
        from . import engine as eng

        # the ONNX whose types carry the precision (fp16 / Q/DQ): TensorRT 11 builds only those
        onnx_path = _find_onnx_impl(folder, stem, precision, "trt", options)
        eng.build_engine(onnx_path, engine, precision=precision, batch=min(batches), max_batch=max(batches))
        artifacts.check_precision(engine, precision)
    return engine


# ---------------------------------------------------------------------------
# Worker (runs in its own process)
# ---------------------------------------------------------------------------
def _percentiles_ms(times_s):
    import numpy as np

    t = np.asarray(times_s, dtype=np.float64) * 1e3
    return float(t.mean()), float(np.percentile(t, 50)), float(np.percentile(t, 90)), float(np.percentile(t, 99))


def _make_runner(job):
    from .runners import make_runner

    backend = job["backend"]
    if backend == "oneflow":  # threads: OMP_NUM_THREADS, set by the driver
        return make_runner("oneflow", job["model"])
    if backend == "ort-cpu":
        return make_runner("ort-cpu", job["path"], threads=job.get("threads"))
    if backend == "ort-cuda":
        return make_runner("ort-cuda", job["path"], **OrtCudaSettings.parse(job["settings"]).runner_kwargs())
    return make_runner(backend, job["path"])


def _time_step(step, warmup, iters):
    for _ in range(warmup):
        step()
    times = []
    clock = time.perf_counter
    for _ in range(iters):
        t0 = clock()
        step()
        times.append(clock() - t0)
    return times


def _activate(job):
    """An active runner for ``job``, or the reason it cannot run."""
    try:
        return _make_runner(job).activate(), None
    except OfconvertError as e:
        return None, str(e)
    except Exception as e:  # the framework refused the model
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        return None, f"{type(e).__name__}: {msg}"[:300]


def run_job(job):
    """Run one worker job (dict): every batch size x input location of one
    (model, backend, precision, settings). A fresh runner (session) per batch size:
    a CUDA graph is captured for one shape, and cuDNN tunes per shape anyway.
    Returns result dicts; failures give n/a rows with the reason."""
    import numpy as np

    rows = []
    base = dict(_job_base(job), pid=os.getpid())
    rng = np.random.default_rng(job.get("seed", 0))
    for batch in job["batches"]:
        runner, reason = _activate(job)
        if runner is None:
            rows += [dict(base, batch=batch, input=i, status="n/a", reason=reason) for i in job["inputs"]]
            continue
        try:
            providers = ",".join(getattr(runner, "providers_used", lambda: [])())
            s = job["input_size"]
            x = rng.standard_normal((batch, 3, s, s), dtype=np.float32).astype(runner.input_dtype)
            for where in job["inputs"]:
                row = dict(base, batch=batch, input=where, providers=providers)
                try:
                    if hasattr(runner, "make_step"):
                        step = runner.make_step(x, device_input=(where == "device"))
                    else:
                        step = lambda: runner.infer(x)  # noqa: E731 - host input, numpy out (synchronous)
                    times = _time_step(step, job["warmup"], job["iters"])
                    mean, p50, p90, p99 = _percentiles_ms(times)
                    row.update(img_per_s=batch / (mean / 1e3), latency_ms_mean=mean, latency_ms_p50=p50,
                               latency_ms_p90=p90, latency_ms_p99=p99)
                except Exception as e:
                    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
                    row.update(status="n/a", reason=f"{type(e).__name__}: {msg}"[:300])
                rows.append(row)
        finally:
            runner.deactivate()
    return rows


def _worker_main(job_path, result_path):
    with open(job_path) as f:
        job = json.load(f)
    rows = run_job(job)
    fileio.write_json(result_path, rows)
    return 0


# ---------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------
def _unavailable_reason(backend):
    """Why ``backend`` cannot run here (without loading it), or None."""
    import importlib.util

    if backend == "oneflow" and importlib.util.find_spec("oneflow") is None:
        return (f"oneflow not installed (OneFlow 0.9.0 ships wheels for Python <= 3.10; "
                f"this is Python {platform.python_version()})")
    if backend == "trt" and importlib.util.find_spec("tensorrt") is None:
        return "TensorRT not installed (pip install tensorrt, on a machine with an NVIDIA GPU)"
    if backend in ("ort-cpu", "ort-cuda"):
        if importlib.util.find_spec("onnxruntime") is None:
            return "onnxruntime not installed"
        if backend == "ort-cuda":
            import onnxruntime as ort

            if "CUDAExecutionProvider" not in ort.get_available_providers():
                return ("ONNX Runtime CUDA provider missing (this onnxruntime has "
                        f"{', '.join(ort.get_available_providers())}; install onnxruntime-gpu, see docs/gpu.md)")
    return None


def _run_worker(job, timeout_s):
    """Run ``job`` in a fresh Python process; a crash becomes n/a rows."""
    env = child_env(job.get("threads"))
    with tempfile.TemporaryDirectory(prefix="ofc-bench-") as tmp:
        job_path, res_path = os.path.join(tmp, "job.json"), os.path.join(tmp, "result.json")
        fileio.write_json(job_path, job)
        cmd = [sys.executable, "-m", "ofconvert.bench", "--worker", job_path, "--result", res_path]
        try:
            proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout_s)
            err = proc.stderr.decode(errors="replace").strip().splitlines()
            reason = f"worker exited with code {proc.returncode}" + (f": {err[-1][:200]}" if err else "")
        except subprocess.TimeoutExpired:
            reason = f"worker timed out after {timeout_s:.0f} s"
        if os.path.isfile(res_path):
            with open(res_path) as f:
                return json.load(f)
    return [dict(_job_base(job), batch=b, input=i, status="n/a", reason=reason)
            for b in job["batches"] for i in job["inputs"]]


def _job_base(job):
    return dict(model=job["model"], backend=job["backend"], precision=job["precision"],
                settings=job.get("settings_label", ""), input_size=job["input_size"], warmup=job["warmup"],
                iters=job["iters"], model_file=job.get("path") or "", model_sha256=job.get("sha256") or "",
                detected_precision=job.get("detected_precision") or "")


def _plan(models, backends, precisions, batches, options):
    """Worker jobs in run order (model by model), n/a rows for what cannot run."""
    jobs, na = [], []
    reasons = {b: _unavailable_reason(b) for b in backends}
    resolved = [(entry,) + _resolve_model(entry, options) for entry in models]
    for _, _, _, folder, stem in resolved:   # a mislabelled file stops the run before anything is made or run
        for backend in backends:
            if backend != "oneflow" and reasons[backend] is None:
                for precision in precisions:
                    _check_existing(folder, stem, precision, backend, batches)
    for entry, model, size, folder, stem in resolved:
        for backend in backends:
            inputs = tuple(options.inputs) if backend in GPU_BACKENDS else ("host",)
            settings = [OrtCudaSettings.parse(s) for s in options.ort_cuda] if backend == "ort-cuda" else [None]
            for precision in precisions:
                for st in settings:
                    job = dict(model=model, backend=backend, precision=precision, batches=list(batches),
                               inputs=list(inputs), warmup=options.warmup, iters=options.iters, input_size=size,
                               threads=options.threads, seed=options.seed,
                               settings=st.spec if st else "", settings_label=st.label if st else "")
                    reason = None
                    if backend == "oneflow" and _is_onnx_file(entry):
                        reason = "the OneFlow backend needs a zoo model name, not an ONNX file"
                    elif backend == "oneflow" and precision != "fp32":
                        reason = "the OneFlow backend runs fp32 only (fp16/int8 are ONNX/TensorRT precisions)"
                    reason = reason or reasons[backend]
                    if reason is None and backend != "oneflow":
                        try:
                            path = (_find_engine_impl(folder, stem, precision, batches, options)
                                    if backend == "trt" else _find_onnx_impl(folder, stem, precision, backend,
                                                                             options))
                            info = artifacts.describe(path)
                            job.update(path=info["path"], sha256=info["sha256"],
                                       detected_precision=info["precision"])
                        except PrecisionMismatchError:
                            raise
                        except OfconvertError as e:
                            reason = str(e)
                    if reason is None:
                        jobs.append(job)
                    else:
                        na += [dict(_job_base(job), batch=b, input=i, status="n/a", reason=reason)
                               for b in batches for i in inputs]
    return jobs, na


def _progress(total, enabled):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc="bench", unit="job", file=sys.stderr, dynamic_ncols=True)


def _parse_list(value, name):
    items = [str(v).strip() for v in (value.split(",") if isinstance(value, str) else value) if str(v).strip()]
    if not items:
        raise OfconvertError(f"{name} is empty")
    return items


def benchmark(models=DEFAULT_MODELS, backends=("ort-cpu",), precisions=("fp32",), batches=(8,),
              options=None, progress=False, on_result=None):
    """Benchmark every (model, backend, precision, batch); returns ``BenchResult`` rows.

    models/backends/precisions: lists or comma-separated strings; batches: ints.
    options: ``BenchOptions`` (protocol, ONNX folder, ort-cuda settings...).
    on_result: called with the rows of each finished worker (incremental saving).
    Backends that cannot run produce rows with status "n/a" and the reason."""
    if options is not None:
        check_type(options, BenchOptions, "options", "an ofconvert.BenchOptions")
    models = _parse_list(models, "models")
    for m in models:
        if not _is_onnx_file(m):
            get_config(m)
    backends = _parse_list(backends, "backends")
    for b in backends:
        if b not in BACKENDS:
            raise OfconvertError(f"unknown backend {b!r}; known: {', '.join(BACKENDS)}")
    precisions = _parse_list(precisions, "precisions")
    for p in precisions:
        if p not in PRECISIONS:
            raise OfconvertError(f"unknown precision {p!r}; known: {', '.join(PRECISIONS)}")
    try:
        batches = [int(b) for b in _parse_list(batches if not isinstance(batches, int) else [batches], "batches")]
    except ValueError:
        raise OfconvertError(f"batch sizes must be integers, got {batches!r}") from None
    if any(b < 1 for b in batches):
        raise OfconvertError(f"batch sizes must be >= 1, got {batches}")
    options = (options or BenchOptions()).check()

    jobs, rows = _plan(models, backends, precisions, batches, options)
    if on_result and rows:
        on_result([BenchResult(**r) for r in rows])
    bar = _progress(len(jobs), progress)
    try:
        for job in jobs:
            if bar is not None:
                bar.set_postfix_str(f"{job['model']} {job['backend']} {job['precision']} {job['settings_label']}".strip())
            got = _run_worker(job, options.timeout_s)
            rows += got
            if on_result:
                on_result([BenchResult(**r) for r in got])
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    order = {(os.path.basename(m)[:-5] if _is_onnx_file(m) else m): i for i, m in enumerate(models)}
    labels = [OrtCudaSettings.parse(s).label for s in options.ort_cuda]
    results = [BenchResult(**r) for r in rows]
    results.sort(key=lambda r: (r.batch, order[r.model], backends.index(r.backend),
                                labels.index(r.settings) if r.settings in labels else 0,
                                precisions.index(r.precision), INPUTS.index(r.input)))
    return results


# ---------------------------------------------------------------------------
# Environment and reports
# ---------------------------------------------------------------------------
def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpu_name():
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        if out.returncode == 0 and out.stdout.strip():
            name, _, driver = out.stdout.strip().splitlines()[0].partition(",")
            return name.strip(), driver.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return None, None


def environment():
    """CPU/GPU names and library versions (read without importing OneFlow/TensorRT)."""
    from importlib import metadata

    def version(*dists):
        for d in dists:
            try:
                return f"{metadata.version(d)}" + ("" if d == dists[0] else f" ({d})")
            except metadata.PackageNotFoundError:
                continue
        return None

    gpu, driver = _gpu_name()
    ort_version, ort_providers = None, None
    try:  # the imported module, not a dist name: onnxruntime-gpu may shadow onnxruntime
        import onnxruntime

        ort_version, ort_providers = onnxruntime.__version__, onnxruntime.get_available_providers()
    except ImportError:
        pass
    return {
        "cpu": _cpu_name(), "cpu_count": os.cpu_count(), "gpu": gpu, "gpu_driver": driver,
        "python": platform.python_version(), "platform": platform.platform(),
        "numpy": version("numpy"), "onnx": version("onnx"),
        "onnxruntime": ort_version, "onnxruntime_providers": ort_providers, "oneflow": version("oneflow"),
        "tensorrt": version("tensorrt", "tensorrt-cu12", "tensorrt-cu13"), "torch": version("torch"),
        "time": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    }


def _fmt(v):
    return f"{v:,.0f}" if v >= 100 else f"{v:,.1f}"


def markdown(results, env=None, options=None):
    """One table per batch size (rows: models, columns: backend(precision)), n/a
    cells footnoted with their reason; a speed-up table when several ort-cuda
    settings ran (against the first)."""
    out = io.StringIO()
    if options is not None:
        out.write(f"Protocol: {options.warmup} warm-up + {options.iters} timed batches per cell; img/s = batch / "
                  f"mean batch latency (synchronised).\n")
    if env:
        out.write(f"Environment: CPU {env.get('cpu')} ({env.get('cpu_count')} cores), GPU {env.get('gpu') or 'none'}, "
                  f"Python {env.get('python')}, onnxruntime {env.get('onnxruntime')}, oneflow {env.get('oneflow')}, "
                  f"TensorRT {env.get('tensorrt')}.\n")
    settings = list(dict.fromkeys(r.settings for r in results if r.backend == "ort-cuda"))
    if settings:
        out.write("ort-cuda settings: " + "; ".join(f"[{s}] = {OrtCudaSettings.parse(s).spec}" for s in settings)
                  + " (iobind = IO binding, nhwc = prefer_nhwc, graph = CUDA graph, algo = cuDNN conv algo search; "
                  "plain = ONNX Runtime's defaults).\n")
    out.write("Inputs: plain columns feed a host (numpy) batch and copy the logits back every batch; `dev-in` columns "
              "keep the batch on the GPU (IO binding), logits stay there.\n")
    for batch in sorted({r.batch for r in results}):
        rows = [r for r in results if r.batch == batch]
        models = list(dict.fromkeys(r.model for r in rows))
        cols = list(dict.fromkeys(r.column for r in rows))
        cell = {(r.model, r.column): r for r in rows}
        notes = {}
        out.write(f"\n### Batch {batch} (img/s)\n\n| model | " + " | ".join(cols) + " |\n")
        out.write("|---|" + "---:|" * len(cols) + "\n")
        for m in models:
            vals = []
            for c in cols:
                r = cell.get((m, c))
                if r is None:
                    vals.append("")
                elif r.status == "ok":
                    vals.append(_fmt(r.img_per_s))
                else:
                    n = notes.setdefault(r.reason, len(notes) + 1)
                    vals.append(f"n/a [{n}]")
            size = next(r.input_size for r in rows if r.model == m)
            out.write(f"| {m} ({size}) | " + " | ".join(vals) + " |\n")
        for reason, n in notes.items():
            out.write(f"\n[{n}] {reason}")
        if notes:
            out.write("\n")
    out.write(_speedup_markdown(results))
    out.write(_files_markdown(results))
    return out.getvalue()


def _files_markdown(results):
    """The file behind every column: path, precision read from its content, sha256."""
    seen = {}
    for r in results:
        key = (r.model, r.column)
        if key not in seen and (r.model_file or (r.backend == "oneflow" and r.status == "ok")):
            seen[key] = r
    if not seen:
        return ""
    out = io.StringIO()
    out.write("\n### Files (precision read from the file's content)\n\n"
              "| model | column | file | precision | sha256 |\n|---|---|---|---|---|\n")
    for (m, col), r in seen.items():
        if r.model_file:
            out.write(f"| {m} | {col} | {r.model_file} | {r.detected_precision} | {r.model_sha256} |\n")
        else:
            out.write(f"| {m} | {col} | OneFlow zoo model {m} (no file) | fp32 | |\n")
    return out.getvalue()


def _speedup_markdown(results):
    labels = list(dict.fromkeys(r.settings for r in results if r.backend == "ort-cuda"))
    if len(labels) < 2:
        return ""
    ref = labels[0]
    ok = {(r.model, r.precision, r.batch, r.input, r.settings): r for r in results
          if r.backend == "ort-cuda" and r.status == "ok"}
    out = io.StringIO()
    for label in labels[1:]:
        out.write(f"\n### ort-cuda speed-up: [{label}] / [{ref}] (same model, precision, batch, input)\n\n"
                  "| model | precision | batch | input | " + ref + " img/s | " + label + " img/s | ratio |\n"
                  "|---|---|---:|---|---:|---:|---:|\n")
        for (m, p, b, i, s), r in ok.items():
            if s != label or (m, p, b, i, ref) not in ok:
                continue
            base = ok[(m, p, b, i, ref)]
            out.write(f"| {m} | {p} | {b} | {i} | {_fmt(base.img_per_s)} | {_fmt(r.img_per_s)} | "
                      f"{r.img_per_s / base.img_per_s:.2f}x |\n")
    return out.getvalue()


def to_csv(results):
    fields = [f.name for f in dataclasses.fields(BenchResult)]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for r in results:
        w.writerow(r.to_dict())
    return buf.getvalue()


def plot(results, path):
    """Bar chart, one panel per batch size (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batches = sorted({r.batch for r in results})
    fig, axes = plt.subplots(len(batches), 1, figsize=(11, 4 * len(batches)), squeeze=False)
    for ax, batch in zip(axes[:, 0], batches):
        rows = [r for r in results if r.batch == batch]
        models = list(dict.fromkeys(r.model for r in rows))
        cols = list(dict.fromkeys(r.column for r in rows))
        width = 0.8 / max(len(cols), 1)
        for j, c in enumerate(cols):
            vals = [next((r.img_per_s for r in rows if r.model == m and r.column == c and r.status == "ok"), 0) or 0
                    for m in models]
            ax.bar([i + j * width for i in range(len(models))], vals, width, label=c)
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(models))], models)
        ax.set_ylabel("img/s")
        ax.set_title(f"batch {batch} (missing bar = n/a)")
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    with fileio.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
    return path


def write_reports(results, out_dir, env=None, options=None, stem="bench", png=True):
    """Write ``<stem>.md/.json/.csv`` (and ``.png``) into out_dir; returns their paths."""
    paths = {}
    md = markdown(results, env, options)
    paths["md"] = os.path.join(out_dir, stem + ".md")
    fileio.write_text(paths["md"], md)
    paths["json"] = os.path.join(out_dir, stem + ".json")
    fileio.write_json(paths["json"], {"environment": env, "protocol": dataclasses.asdict(options) if options else None,
                                      "results": [r.to_dict() for r in results]})
    paths["csv"] = os.path.join(out_dir, stem + ".csv")
    fileio.write_text(paths["csv"], to_csv(results))
    if png and results:
        try:
            paths["png"] = plot(results, os.path.join(out_dir, stem + ".png"))
        except ImportError as e:
            print(f"bench: no chart ({e})", file=sys.stderr)
    return paths


# ---------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (through OfconvertError)
        raise OfconvertError(f"{self.prog}: {message}")


def build_parser(prog="bench.py"):
    p = _Parser(prog=prog, description="Throughput of models x backends x precisions x batch sizes "
                                       "(each backend/precision in its own process).")
    p.add_argument("--models", default=",".join(DEFAULT_MODELS),
                   help=f"comma list of zoo names ({', '.join(list_models())}) or ONNX files (ONNX backends only)")
    p.add_argument("--backends", default=",".join(BACKENDS), help=f"comma list of {', '.join(BACKENDS)}")
    p.add_argument("--precisions", default=",".join(PRECISIONS), help="comma list of fp32, fp16, int8")
    p.add_argument("--batch", default="8,50", help="comma list of batch sizes (default 8,50)")
    p.add_argument("--warmup", type=int, default=5, help="untimed batches first (default 5)")
    p.add_argument("--iters", type=int, default=500, help="timed batches (default 500)")
    p.add_argument("--input", default="device", choices=("host", "device", "both"),
                   help="GPU backends: batch resident on the device (default) or copied from the host each batch")
    p.add_argument("--ort-cuda", default="fastest",
                   help="comma list of ort-cuda settings, one column each: default (ONNX Runtime as shipped), "
                        "fastest (this tool's default) or flags joined by '+': iobind, nhwc, graph, "
                        "algo=EXHAUSTIVE|HEURISTIC|DEFAULT")
    p.add_argument("--onnx-dir", help="folder with <model>.onnx (always fp32), .fp16.onnx, .int8.onnx, "
                                      ".int8-cpu.onnx (missing files are created there; a file whose content is "
                                      "another precision than its name says is refused); default out/onnx")
    p.add_argument("--calib-data", help="image folder for creating int8 models (default: datasets imagenet-val-1300)")
    p.add_argument("--threads", type=int, help="CPU threads for ort-cpu/oneflow")
    p.add_argument("--input-size", type=int, help="override every model's input size")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per worker process")
    p.add_argument("--out", default=os.path.join("out", "bench"), help="folder for bench.md/.json/.csv/.png")
    p.add_argument("--no-png", action="store_true", help="skip the chart")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    p.add_argument("--prepare", help=argparse.SUPPRESS)  # MODEL:PRECISION:BACKEND, create one ONNX file
    return p


def options_from_args(args):
    return BenchOptions(warmup=args.warmup, iters=args.iters,
                        inputs=("host", "device") if args.input == "both" else (args.input,),
                        ort_cuda=tuple(_parse_list(args.ort_cuda, "--ort-cuda")), onnx_dir=args.onnx_dir,
                        calib_data=args.calib_data, threads=args.threads, input_size=args.input_size,
                        timeout_s=args.timeout)


def run_cli(args):
    if args.worker:
        return _worker_main(args.worker, args.result)
    if args.prepare:
        model, precision, backend = args.prepare.split(":")
        _create_onnx_impl(model, precision, backend, _onnx_folder(options_from_args(args)), args.calib_data)
        return 0
    options = options_from_args(args).check()
    env = environment()
    out_dir = args.out
    done = []

    def save(rows):  # partial reports after every worker: a killed run keeps what it measured
        done.extend(rows)
        fileio.write_json(os.path.join(out_dir, "bench.partial.json"),
                          {"environment": env, "results": [r.to_dict() for r in done]})

    results = benchmark(args.models, args.backends, args.precisions, _parse_list(args.batch, "--batch"),
                        options, progress=not args.no_progress, on_result=save)
    paths = write_reports(results, out_dir, env, options, png=not args.no_png)
    partial = os.path.join(out_dir, "bench.partial.json")
    if os.path.exists(partial):
        os.unlink(partial)
    print(markdown(results, env, options))
    print("wrote " + ", ".join(paths.values()), file=sys.stderr)
    return 0


def main(argv=None):
    try:
        return run_cli(build_parser().parse_args(argv))
    except OfconvertError as e:
        print(f"error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
