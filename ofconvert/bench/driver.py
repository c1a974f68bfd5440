"""The benchmark's driver: validates the request, plans one worker job per
(model, backend, precision, ort-cuda settings) with its model file located or
produced (``ofconvert.artifacts``), runs each job in its own process
(``isolation.run_worker``; a crash or timeout becomes n/a rows) and returns
sorted ``BenchResult`` rows."""
import os

from .. import artifacts
from ..config import PRECISIONS, get_config
from ..errors import OfconvertError, check_type
from ..isolation import WorkerFailed, run_worker
from ..progress import Progress
from ..runners import REGISTRY, check_backends, unavailable_reason
from ..runners.ort_settings import OrtCudaSettings
from ..usermodel import is_user_spec, parse_spec
from .options import CALIB_IMAGES, DEFAULT_MODELS, INPUTS, BenchOptions, BenchResult, parse_list
from .worker import job_base


def _is_onnx_file(model):
    return str(model).endswith(".onnx")


def _resolve_model(model, options):
    """(display name, input size, folder, stem) of a zoo name or an ONNX file path."""
    if _is_onnx_file(model):
        if not os.path.isfile(model):
            raise OfconvertError(f"ONNX file not found: {model}")
        size = options.input_size or artifacts.onnx_input_size(model)
        if size is None:
            raise OfconvertError(f"{model}: dynamic input size; pass --input-size")
        stem = os.path.basename(model)[:-len(".onnx")]
        return stem, size, os.path.dirname(os.path.abspath(model)), stem
    if is_user_spec(model):   # the user's code: files named after the class, its shape declared or --input-size
        if options.input_size is None and get_config_or_none(model) is None:
            raise OfconvertError(f"{model} declares no input_shape: pass --input-size N (an N x N RGB input)")
        size = options.input_size or get_config(model).preprocess.input_size
        return model, size, options.folder(), parse_spec(model).stem
    size = options.input_size or get_config(model).preprocess.input_size
    return model, size, options.folder(), model


def get_config_or_none(model):
    try:
        return get_config(model)
    except OfconvertError as e:
        if "--input-shape" in str(e):   # no shape declared: the one thing bench can supply
            return None
        raise


def _source(entry, size):
    """ConvertOptions fields producing a user model's files (None for a zoo name)."""
    return {"model": entry, "input_shape": (3, size, size)} if is_user_spec(entry) else None


def _calib(options):
    """(calibration set, images) for producing an int8 model: throughput needs valid
    ranges, not the best ones, so a few images of imagenet-val-1300 by default."""
    if options.calib:
        return options.calib, None
    from ..data import datasets_root

    return os.path.join(datasets_root(), "imagenet-val-1300"), CALIB_IMAGES


def _plan(models, backends, precisions, batches, options):
    """Worker jobs in run order (model by model), n/a rows for what cannot run."""
    jobs, na = [], []
    reasons = {b: unavailable_reason(b) for b in backends}
    resolved = [(entry,) + _resolve_model(entry, options) for entry in models]
    top = max(batches)
    for _, _, _, folder, stem in resolved:   # a mislabelled file stops the run before anything is made or run
        for backend in backends:
            if reasons[backend] is None:
                for precision in precisions:
                    artifacts.check_existing(folder, stem, precision, backend, top if backend == "trt" else None,
                                             produce=options.produce_missing)
    calib, calib_images = _calib(options)
    for entry, model, size, folder, stem in resolved:
        for backend in backends:
            inputs = tuple(options.inputs) if REGISTRY[backend].gpu else ("host",)
            settings = [OrtCudaSettings.parse(s) for s in options.ort_cuda] if backend == "ort-cuda" else [None]
            for precision in precisions:
                for st in settings:
                    job = dict(model=model, backend=backend, precision=precision, batches=list(batches),
                               inputs=list(inputs), warmup=options.warmup, iters=options.iters, input_size=size,
                               threads=options.threads, seed=options.seed, streams=options.streams,
                               settings=st.spec if st else "", settings_label=st.label if st else "")
                    reason = None
                    if backend == "oneflow" and _is_onnx_file(entry):
                        reason = "the OneFlow backend needs a zoo model name, not an ONNX file"
                    elif backend == "oneflow" and precision != "fp32":
                        reason = "the OneFlow backend runs fp32 only (fp16/int8 are ONNX/TensorRT precisions)"
                    reason = reason or reasons[backend]
                    if reason is None and backend != "oneflow":
                        try:
                            info = artifacts.locate(folder, stem, precision, backend, options.produce_missing,
                                                    calib, calib_images=calib_images, batches=batches,
                                                    source=_source(entry, size))
                            job.update(path=info["path"], sha256=info["sha256"], detected_precision=info["precision"])
                        except artifacts.PrecisionMismatchError:
                            raise
                        except OfconvertError as e:
                            reason = str(e)
                    if reason is None:
                        jobs.append(job)
                    else:
                        na += [dict(job_base(job), batch=b, input=i, status="n/a", reason=reason)
                               for b in batches for i in inputs]
    return jobs, na


def run_one(job, timeout_s):
    """Run ``job`` in a worker process; a crash or timeout becomes n/a rows."""
    try:
        return run_worker("ofconvert.bench.worker:run_job", job, timeout_s, threads=job.get("threads"))
    except WorkerFailed as e:
        return [dict(job_base(job), batch=b, input=i, status="n/a", reason=e.reason)
                for b in job["batches"] for i in job["inputs"]]


def check_request(models, backends, precisions, batches):
    """Validated (models, backends, precisions, batches) lists (comma strings accepted)."""
    models = parse_list(models, "models")
    for m in models:
        if not _is_onnx_file(m) and not is_user_spec(m):   # user code: imported when planned (its input size)
            get_config(m)
    backends = check_backends(parse_list(backends, "backends"))
    precisions = parse_list(precisions, "precisions")
    for p in precisions:
        if p not in PRECISIONS:
            raise OfconvertError(f"unknown precision {p!r}; known: {', '.join(PRECISIONS)}")
    try:
        batches = [int(b) for b in parse_list(batches if not isinstance(batches, int) else [batches], "batches")]
    except ValueError:
        raise OfconvertError(f"batch sizes must be integers, got {batches!r}") from None
    if any(b < 1 for b in batches):
        raise OfconvertError(f"batch sizes must be >= 1, got {batches}")
    return models, backends, precisions, batches


def benchmark(models=DEFAULT_MODELS, backends=("ort-cpu",), precisions=("fp32",), batches=(8,),
              options=None, progress=False, on_result=None):
    """Benchmark every (model, backend, precision, batch); returns ``BenchResult`` rows.

    models/backends/precisions: lists or comma-separated strings; batches: ints.
    options: ``BenchOptions`` (protocol, model folder, ort-cuda settings, streams...).
    on_result: called with the rows of each finished worker (incremental saving).
    Backends that cannot run produce rows with status "n/a" and the reason."""
    if options is not None:
        check_type(options, BenchOptions, "options", "an ofconvert.BenchOptions")
    models, backends, precisions, batches = check_request(models, backends, precisions, batches)
    options = (options or BenchOptions()).check()

    jobs, rows = _plan(models, backends, precisions, batches, options)
    if on_result and rows:
        on_result([BenchResult(**r) for r in rows])
    with Progress(progress, len(jobs), "bench", unit="job", leave=True) as bar:
        for job in jobs:
            bar.note(f"{job['model']} {job['backend']} {job['precision']} {job['settings_label']}".strip())
            got = run_one(job, options.timeout_s)
            rows += got
            if on_result:
                on_result([BenchResult(**r) for r in got])
            bar.update(1)
    order = {(os.path.basename(m)[:-5] if _is_onnx_file(m) else m): i for i, m in enumerate(models)}
    labels = [OrtCudaSettings.parse(s).label for s in options.ort_cuda]
    results = [BenchResult(**r) for r in rows]
    results.sort(key=lambda r: (r.batch, order[r.model], backends.index(r.backend),
                                labels.index(r.settings) if r.settings in labels else 0,
                                precisions.index(r.precision), INPUTS.index(r.input)))
    return results
