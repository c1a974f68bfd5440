"""Worker side of the benchmark (runs in its own process, ``isolation.run_worker``):
one (model, backend, precision, settings) at every batch size and input location.

Each batch is timed on its own and synchronised (runners return numpy; device
runs wait on their outputs). With ``streams`` K > 1, K threads each own a runner
(session) and run the same pre-made batch concurrently after a common start;
throughput is K x iters x batch / wall time of the timed phase, latencies are per
request. K = 1 is the single-stream protocol: img/s = batch / mean latency."""
import os
import threading
import time

from ..errors import OfconvertError, first_line
from ..runners.ort_settings import OrtCudaSettings


def job_base(job):
    """The row fields every result of ``job`` shares."""
    return dict(model=job["model"], backend=job["backend"], precision=job["precision"],
                settings=job.get("settings_label", ""), input_size=job["input_size"], warmup=job["warmup"],
                iters=job["iters"], model_file=job.get("path") or "", model_sha256=job.get("sha256") or "",
                detected_precision=job.get("detected_precision") or "", streams=job.get("streams", 1))


def _percentiles_ms(times_s):
    import numpy as np

    t = np.asarray(times_s, dtype=np.float64) * 1e3
    return float(t.mean()), float(np.percentile(t, 50)), float(np.percentile(t, 90)), float(np.percentile(t, 99))


def _make_runner(job):
    from ..runners import make_runner

    backend = job["backend"]
    if backend == "oneflow":  # threads: OMP_NUM_THREADS, set by the driver
        return make_runner("oneflow", job["model"], input_shape=(3, job["input_size"], job["input_size"]))
    if backend in ("ort-cpu", "openvino"):   # openvino: latency hint (one stream per runner), f32 arithmetic
        return make_runner(backend, job["path"], threads=job.get("threads"))
    if backend == "ort-cuda":
        return make_runner("ort-cuda", job["path"], **OrtCudaSettings.parse(job["settings"]).runner_kwargs())
    return make_runner(backend, job["path"])


def _error_text(e):
    return f"{type(e).__name__}: {first_line(e, default='')}"[:300]


def _activate(job):
    """An active runner for ``job``, or the reason it cannot run."""
    try:
        return _make_runner(job).activate(), None
    except OfconvertError as e:
        return None, str(e)
    except Exception as e:  # the framework refused the model
        return None, _error_text(e)


def _timed(step, warmup, iters):
    for _ in range(warmup):
        step()
    times = []
    clock = time.perf_counter
    for _ in range(iters):
        t0 = clock()
        step()
        times.append(clock() - t0)
    return times


def measure(steps, warmup, iters):
    """Run every step (one per stream) ``warmup`` untimed then ``iters`` timed times,
    concurrently when there are several (released together after their warm-up);
    returns (wall seconds of the timed phase: first start to last end, per-request
    latencies in seconds). A failing step raises after all stopped."""
    if len(steps) == 1:
        times = _timed(steps[0], warmup, iters)
        return sum(times), times
    start = threading.Barrier(len(steps))
    latencies = [[] for _ in steps]
    spans = [None] * len(steps)   # (first start, last end) of each stream's timed phase
    errors = []
    # Each stream warms up in its own thread (ONNX Runtime's CUDA provider keeps its
    # handles and captured CUDA graph per thread), one stream at a time: a CUDA graph
    # capture is global to the process, and another thread's CUDA call during it
    # fails the capture ("operation not permitted when stream is capturing").
    warming = threading.Lock()

    def loop(k):
        try:
            with warming:
                for _ in range(warmup):
                    steps[k]()
        except Exception as e:
            errors.append(e)
        start.wait()
        clock = time.perf_counter
        first = t1 = clock()
        for _ in range(iters if not errors else 0):
            t0 = clock()
            try:
                steps[k]()
            except Exception as e:
                errors.append(e)
                return
            t1 = clock()
            latencies[k].append(t1 - t0)
        spans[k] = (first, t1)

    threads = [threading.Thread(target=loop, args=(k,), daemon=True) for k in range(len(steps))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    wall = max(s[1] for s in spans) - min(s[0] for s in spans)
    return wall, [t for lat in latencies for t in lat]


def _random_input(runner, batch, size, rng):
    """One random NCHW batch; a model of several inputs (ONNX Runtime) gets a
    {name: array} feed, each input's declared dims with batch, height and width
    filled in (``size``: H and W of a dynamic-size input)."""
    import numpy as np

    ins = runner.session.get_inputs() if getattr(runner, "session", None) is not None else []
    if len(ins) == 1 and runner.input_dtype == np.uint8:   # a raw-image model: uint8 NHWC pixels
        return rng.integers(0, 256, size=(batch, size, size, 3), dtype=np.uint8)
    if len(ins) <= 1:
        return rng.standard_normal((batch, 3, size, size), dtype=np.float32).astype(runner.input_dtype)
    fill = {"batch": batch, "height": size, "width": size}
    return {i.name: rng.standard_normal([d if isinstance(d, int) else fill.get(d, size) for d in i.shape],
                                        dtype=np.float32) for i in ins}


def _step(runner, x, where):
    if isinstance(x, dict):   # several inputs: the session itself, host input
        return lambda: runner.session.run(None, x)
    if hasattr(runner, "make_step"):
        return runner.make_step(x, device_input=(where == "device"))
    return lambda: runner.infer(x)  # host input, numpy out (synchronous)


def _auto(job, batch, base):
    """(the job with ``auto`` settings replaced by the measured-fastest at ``batch``
    (``ort_auto``; decided on the first input location) or None where none runs,
    the row fields with ``settings_ran`` set)."""
    if job["backend"] != "ort-cuda" or job.get("settings") != "auto":
        return job, base
    from ..runners import ort_auto

    try:
        d = ort_auto.decide(job["path"], job["precision"], batch, job["inputs"][0])
    except Exception as e:
        return None, dict(base, reason=_error_text(e))
    return dict(job, settings=d.spec), dict(base, settings_ran=d.settings.label)


def run_job(job, emit=None):
    """Every batch size x input location of one (model, backend, precision,
    settings): a fresh runner (session) per stream and batch size (a CUDA graph is
    captured for one shape). Returns result dicts; failures give n/a rows."""
    import numpy as np

    rows = []
    base = dict(job_base(job), pid=os.getpid())
    k = int(job.get("streams", 1))
    rng = np.random.default_rng(job.get("seed", 0))
    for batch in job["batches"]:
        runners, reason = [], None
        bjob, base = _auto(job, batch, dict(base, settings_ran=job.get("settings", "")))
        for _ in range(k if bjob is not None else 0):
            runner, reason = _activate(bjob)
            if runner is None:
                break
            runners.append(runner)
        try:
            if bjob is None or reason is not None:
                reason = reason or base.pop("reason")
                rows += [dict(base, batch=batch, input=i, status="n/a", reason=reason) for i in job["inputs"]]
                continue
            x = _random_input(runners[0], batch, job["input_size"], rng)
            for where in job["inputs"]:
                row = dict(base, batch=batch, input=where)
                try:
                    wall, times = measure([_step(r, x, where) for r in runners], job["warmup"], job["iters"])
                    # after running: openvino compiles (and says how it runs) at the first batch
                    row["providers"] = ",".join(getattr(runners[0], "providers_used", lambda: [])())
                    mean, p50, p90, p99 = _percentiles_ms(times)
                    rate = batch / (mean / 1e3) if k == 1 else len(times) * batch / wall
                    row.update(img_per_s=rate, latency_ms_mean=mean, latency_ms_p50=p50, latency_ms_p90=p90,
                               latency_ms_p99=p99)
                except Exception as e:
                    row.update(status="n/a", reason=_error_text(e))
                rows.append(row)
        finally:
            for r in runners:
                r.deactivate()
    return rows
