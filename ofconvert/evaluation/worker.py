"""Worker side of the evaluator (runs in the per-backend process started by
``isolation.run_worker``, or in-process with ``isolate=False``): each job reads
the uint8 cache batch by batch, normalises, infers and keeps the top-5 ids."""
import time

import numpy as np

from ..config import PreprocessConfig
from ..errors import BackendUnavailableError, OfconvertError, first_line

TOPK = 5


def run_backend(spec, emit):
    """``isolation.run_worker`` target: ``spec["jobs"]`` -> {id: result}."""
    return {str(k): v for k, v in run_jobs(spec["jobs"], emit).items()}


def run_jobs(jobs, emit):
    """Run ``jobs`` (dicts built by the Evaluator) and return {id: result}.
    ``emit(event)`` receives start/progress/done events."""
    from ..data import normalize
    from ..runners import make_runner

    results = {}
    for j in jobs:
        emit({"event": "start", "id": j["id"], "desc": f"{j['model']} {j['backend']}:{j['precision']}",
              "total": int(np.load(j["valid"]).shape[0])})
        try:
            res = _run_one(j, make_runner, normalize, emit)
        except (OfconvertError, ImportError) as e:
            status = "n/a" if isinstance(e, (BackendUnavailableError, ImportError)) else "error"
            res = {"status": status, "reason": first_line(e)}
        except Exception as e:  # a backend failing on this model: report it in the row, go on
            res = {"status": "error", "reason": f"{type(e).__name__}: {first_line(e, default='')}"}
        res["id"] = j["id"]
        emit(dict(res, event="done"))
        results[j["id"]] = res
    return results


def _run_one(j, make_runner, normalize, emit):
    pre = PreprocessConfig.from_json(j["preprocess"])
    takes_threads = j["backend"].startswith("ort-") or j["backend"] == "openvino"
    kwargs = {"threads": j["threads"]} if takes_threads and j["threads"] else {}
    t_setup = time.perf_counter()
    settings = ""
    if j["backend"] == "ort-cuda":   # no CUDA graph: the last batch is smaller
        settings = _cuda_settings(j)
        kwargs.update(settings.runner_kwargs())
    runner = make_runner(j["backend"], j["path"], **kwargs)
    images = np.load(j["npy"], mmap_mode="r")
    valid = np.load(j["valid"])
    bs = j["batch"]
    top = np.zeros((len(valid), TOPK), dtype=np.int32)
    with runner:
        raw = getattr(runner, "input_dtype", None) == np.uint8   # a raw-image model: the cached uint8 NHWC as is
        t0 = time.perf_counter()
        setup = t0 - t_setup
        t_first = t0   # no batch (no valid image): no first-batch set-up
        for s in range(0, len(valid), bs):
            idx = valid[s:s + bs]
            x = np.ascontiguousarray(images[idx]) if raw else normalize(images[idx], pre)
            logits = np.asarray(runner.infer(x))
            if s == 0:   # the first batch builds the cuDNN plans: set-up, not inference
                t_first = time.perf_counter()
            if logits.ndim != 2 or logits.shape[0] != len(idx) or logits.shape[1] < TOPK:
                raise OfconvertError(f"{j['path']}: expected logits of shape ({len(idx)}, classes), "
                                     f"got {logits.shape}")
            top[s:s + len(idx)] = np.argsort(-logits, axis=1, kind="stable")[:, :TOPK]
            emit({"event": "progress", "id": j["id"], "n": len(idx)})
        seconds = time.perf_counter() - t0
    np.save(j["out"], top)
    first = t_first - t0
    return {"status": "ok", "seconds": seconds, "setup_seconds": setup + first, "inference_seconds": seconds - first,
            "settings": settings.label if settings else "", "input_format": "uint8-nhwc" if raw else ""}


def _cuda_settings(j):
    """The ort-cuda settings of job ``j``: ``auto`` decided (without CUDA graphs) at its batch, host input."""
    from ..runners import ort_auto
    from ..runners.ort_settings import EVAL_SETTINGS, OrtCudaSettings

    st = OrtCudaSettings.parse(j.get("ort_cuda") or "auto")
    if st.cuda_graph:
        raise OfconvertError("the evaluator runs ort-cuda without CUDA graphs (its last batch is smaller): "
                             "drop 'graph'")
    if not st.auto:
        return st
    try:
        return ort_auto.decide(j["path"], j["precision"], j["batch"], "host",
                               candidates=ort_auto.NO_GRAPH_CANDIDATES).settings
    except OfconvertError:
        return EVAL_SETTINGS
