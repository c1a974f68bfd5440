"""ImageNet accuracy and reference-mismatch evaluation of models x backends x precisions.

    from ofconvert.evaluation import evaluate
    rows = evaluate("imagenet-val/", ["efficientnet_lite0"], backends=["oneflow", "ort-cpu"],
                    precisions=["fp32", "fp16"], options=EvalOptions(models_dir="models/"))

Pipeline: the dataset (``ofconvert.datasets``) is decoded once per preprocessing
into the uint8 cache (``ofconvert.preprocache``); each *variant* (backend x
precision) then reads that cache batch by batch, normalises one batch at a time
(never the whole set as float32) and keeps only the top-5 class ids. Variants of
one backend run in their own subprocess (OneFlow and ONNX Runtime in one process
slow each other down 2-3x, and a crashing backend cannot take the run down).
Every variant's top-1 prediction is compared with the reference variant's
(default ``oneflow:fp32``; ``ort-cpu:fp32`` when OneFlow is not installed).

Model files, in ``models_dir`` (stem = model name):
``<stem>.onnx`` (fp32), ``<stem>.fp16.onnx``, ``<stem>.int8-cpu.onnx`` (ort-cpu int8),
``<stem>.int8.onnx`` (int8 Q/DQ for TensorRT-based providers and ort-cuda),
``<stem>.<precision>.engine`` (trt) -- the names of ``ofconvert.artifacts``.
Missing ONNX files are produced through the convert pipeline (export / precision /
calibration) when its pieces are installed, otherwise the cell reads ``n/a`` with
the reason. Every file is checked before any image is decoded: one whose content
(``artifacts.detect_precision``) is not the precision its name means stops the run
(``PrecisionMismatchError``, one line); each row records the file's path, sha256
and detected precision.
"""
import dataclasses
import importlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence

import numpy as np

from . import artifacts
from .config import METADATA_KEY, PRECISIONS, PreprocessConfig, get_config
from .artifacts import PrecisionMismatchError, engine_name, onnx_name
from .errors import BackendUnavailableError, OfconvertError, check_type
from .isolation import child_env
from .runners import BACKENDS as EVAL_BACKENDS  # one backend list: the runner registry
from .preprocache import CacheOptions, get_cached_images

DEFAULT_REFERENCE = "oneflow:fp32"
FALLBACK_REFERENCE = "ort-cpu:fp32"
TOPK = 5


# -- variants ---------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Variant:
    backend: str
    precision: str = "fp32"

    @classmethod
    def parse(cls, spec) -> "Variant":
        if isinstance(spec, Variant):
            return spec
        backend, _, precision = str(spec).strip().partition(":")
        v = cls(backend.strip(), (precision or "fp32").strip())
        v.check()
        return v

    def check(self):
        if self.backend not in EVAL_BACKENDS:
            raise OfconvertError(f"unknown backend {self.backend!r}; known: {', '.join(EVAL_BACKENDS)}")
        if self.precision not in PRECISIONS:
            raise OfconvertError(f"unknown precision {self.precision!r}; known: {', '.join(PRECISIONS)}")
        if self.backend == "oneflow" and self.precision != "fp32":
            raise OfconvertError(f"{self}: the oneflow backend runs fp32 only")

    def __str__(self):
        return f"{self.backend}:{self.precision}"

    @property
    def label(self):
        return f"{self.backend} ({self.precision})"


def expand_variants(backends: Sequence[str], precisions: Sequence[str] = ("fp32",)) -> List[Variant]:
    """backends x precisions, oneflow at fp32 only (skipped silently for others)."""
    out = []
    for b in backends:
        for p in precisions:
            if b == "oneflow" and p != "fp32":
                continue
            v = Variant.parse(f"{b}:{p}")
            if v not in out:
                out.append(v)
    if not out:
        raise OfconvertError("no backend/precision combination to evaluate")
    return out


def oneflow_available():
    return importlib.util.find_spec("oneflow") is not None


# -- options and results ------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class EvalOptions:
    models_dir: str = "."               # where <stem>.onnx, <stem>.fp16.onnx, ... live (and are produced)
    labels: Optional[str] = None        # label file overriding detection (ofconvert.datasets)
    meta: Optional[str] = None          # devkit meta.mat / '<id> <wnid>' file for the official ground truth
    limit: Optional[int] = None         # first N images
    batch_size: int = 32
    threads: Optional[int] = None       # inference threads (ONNX Runtime CPU)
    cache: CacheOptions = CacheOptions()
    isolate: bool = True                # one subprocess per backend (False: all in this process)
    produce_missing: bool = True        # build missing ONNX files through the convert pipeline
    calib_data: Optional[str] = None    # calibration images for a missing int8 model
    progress: bool = True               # tqdm bars on stderr
    keep_mismatches: bool = True        # list every mismatching image in the rows


@dataclasses.dataclass
class EvalRow:
    """One model x variant. ``status``: "ok", "n/a" (backend/model file unavailable;
    see ``reason``) or "error" (it ran and failed)."""

    model: str
    backend: str
    precision: str
    status: str = "ok"
    reason: str = ""
    pretrained: bool = False            # False: random weights; top-1 means nothing, mismatches do
    is_reference: bool = False
    reference: str = ""
    images: int = 0                     # images evaluated (decodable)
    skipped: int = 0                    # unreadable images left out
    top1: Optional[float] = None
    top5: Optional[float] = None
    mismatches: Optional[int] = None    # top-1 predictions differing from the reference's
    seconds: Optional[float] = None     # wall time of the inference loop (cache reads + normalise + infer)
    images_per_s: Optional[float] = None
    model_path: str = ""                # the file it ran (oneflow: the zoo name)
    model_sha256: str = ""              # sha256 of model_path ("" for oneflow)
    detected_precision: str = ""        # model_path's precision read from its content (ofconvert.artifacts)
    mismatched: List[dict] = dataclasses.field(default_factory=list)  # path, label, reference, prediction

    @property
    def variant(self) -> str:
        return f"{self.backend}:{self.precision}"

    def to_dict(self):
        return dataclasses.asdict(self)


# -- model files -----------------------------------------------------------------------

def model_file(models_dir, stem, variant: Variant) -> str:
    """Where ``variant`` of ``stem`` is expected (oneflow: the zoo name itself)."""
    if variant.backend == "oneflow":
        return stem
    if variant.backend == "trt":
        return os.path.join(models_dir, engine_name(stem, variant.precision))
    return os.path.join(models_dir, onnx_name(stem, variant.precision, variant.backend))


def expected_precision(variant: Variant) -> str:
    """What ``variant``'s file must hold (``artifacts.FLAVOURS``; int8 on ort-cpu: "int8-cpu")."""
    return variant.precision if variant.backend == "trt" else artifacts.flavour(variant.precision, variant.backend)


def check_model_file(path, variant: Variant):
    """Refuse ``path`` (PrecisionMismatchError, one line) unless its content is the
    precision ``variant`` needs. An engine without a usable sidecar is left to the
    runner (which refuses it with the reason)."""
    try:
        artifacts.check_precision(path, expected_precision(variant))
    except PrecisionMismatchError:
        raise
    except OfconvertError:
        if variant.backend != "trt":
            raise


def _onnx_metadata(path):
    import onnx

    try:
        m = onnx.load(path, load_external_data=False)
    except Exception as e:  # protobuf DecodeError & co: a corrupt file is a user error
        raise OfconvertError(f"cannot read ONNX file {path}: {type(e).__name__}") from None
    from .onnx_fix import get_metadata

    return get_metadata(m)


def model_info(name, models_dir):
    """(PreprocessConfig, pretrained) from the zoo, else from ``<models_dir>/<name>.onnx`` metadata."""
    try:
        cfg = get_config(name)
        return cfg.preprocess, cfg.pretrained
    except OfconvertError:
        path = os.path.join(models_dir, name + ".onnx")
        if not os.path.isfile(path):
            raise
    meta = _onnx_metadata(path)
    if METADATA_KEY not in meta:
        raise OfconvertError(f"{path} has no {METADATA_KEY} metadata and {name!r} is not a zoo model: "
                             f"its preprocessing is unknown")
    return PreprocessConfig.from_json(meta[METADATA_KEY]), meta.get("ofconvert.pretrained") == "true"


def _produce(name, variant: Variant, path, options: EvalOptions, reason_missing):
    """Create the missing ``path`` through the convert pipeline (``ofconvert.convert``,
    in a subprocess: it may export through OneFlow or build a TensorRT engine).
    Returns None on success, else the n/a reason."""
    try:
        get_config(name)
    except OfconvertError:
        return f"{reason_missing} (not a zoo model, cannot produce it)"
    if not oneflow_available() and not os.path.isfile(model_file(options.models_dir, name, Variant("ort-cpu"))):
        return f"{reason_missing}, and OneFlow is not installed here to export it"
    if variant.backend == "trt" and importlib.util.find_spec("tensorrt") is None:
        return f"{reason_missing}, and TensorRT is not installed here to build it"
    if variant.precision == "int8" and not options.calib_data:
        return f"{reason_missing}; pass --calib-data (calibration images) to produce it"
    if importlib.util.find_spec("ofconvert.pipeline") is None:
        return f"{reason_missing} (ofconvert.convert is not available to produce it)"
    if options.progress:
        print(f"producing {path} (ofconvert.convert, {variant.precision}) ...", file=sys.stderr, flush=True)
    opts = {"model": name, "to": "trt" if variant.backend == "trt" else "onnx",
            # int8 ONNX: convert writes <stem>.int8.onnx and <stem>.int8-cpu.onnx from the first
            "output": path if variant.backend == "trt" or variant.precision != "int8"
            else model_file(options.models_dir, name, Variant("ort-cuda", "int8")),
            "precision": variant.precision, "validate": False,
            "calib": os.path.abspath(options.calib_data) if variant.precision == "int8" else None}
    code = ("import json, sys\n"
            "from ofconvert.pipeline import ConvertOptions, convert\n"
            "from ofconvert.errors import OfconvertError\n"
            "try:\n"
            "    convert(ConvertOptions(**json.loads(sys.argv[1])), log=lambda *a: None)\n"
            "except OfconvertError as e:\n"
            "    sys.stderr.write('\\n' + str(e).splitlines()[0] + '\\n'); sys.exit(2)\n")
    r = subprocess.run([sys.executable, "-c", code, json.dumps(opts)], env=child_env(),
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0 or not os.path.isfile(path):
        tail = (r.stderr.strip().splitlines() or [f"exit status {r.returncode}"])[-1]
        return f"{reason_missing}; producing it failed: {tail}"
    return None


# -- the evaluator -------------------------------------------------------------------------

class Evaluator:
    """Runs an evaluation; ``run()`` returns the rows. Keeps ``dataset``, ``caches``
    (preprocess key -> CachedImages) and ``reference`` for reports."""

    def __init__(self, data, models: Sequence[str], variants: Sequence, reference=None,
                 options: Optional[EvalOptions] = None):
        from .datasets import load_dataset

        self.options = options or EvalOptions()
        if isinstance(models, str):
            models = [m for m in models.split(",") if m]
        if not models:
            raise OfconvertError("no model to evaluate")
        self.models = list(models)
        self.variants = [Variant.parse(v) for v in variants]
        if reference is None:
            reference = DEFAULT_REFERENCE if oneflow_available() else FALLBACK_REFERENCE
        self.reference = Variant.parse(reference)
        if self.reference not in self.variants:
            self.variants.insert(0, self.reference)
        if self.options.limit is not None and int(self.options.limit) < 1:
            raise OfconvertError(f"--limit must be >= 1, got {self.options.limit}")
        if int(self.options.batch_size) < 1:
            raise OfconvertError(f"batch size must be >= 1, got {self.options.batch_size}")
        self.dataset = load_dataset(data, labels=self.options.labels, meta=self.options.meta)
        self.dataset = self.dataset.limit(self.options.limit)
        self.infos = {m: model_info(m, self.options.models_dir) for m in self.models}
        self.caches = {}
        self.timings = {}

    # public API wraps *_impl (Polygraphy style)
    def run(self) -> List[EvalRow]:
        with tempfile.TemporaryDirectory(prefix="ofconvert-eval-") as work:
            return self.run_impl(work)

    def run_impl(self, work) -> List[EvalRow]:
        self._check_files()
        self._decode_all()
        rows, jobs = self._plan(work)
        results = {}
        for backend, bjobs in _group(jobs, "backend").items():   # one process per backend
            if self.options.isolate:
                results.update(self._run_subprocess(backend, bjobs, work))
            else:
                with _Progress(self.options.progress, 0, backend) as bar:
                    results.update(run_jobs(bjobs, bar.event))
        self._score(rows, jobs, results)
        return rows

    def _check_files(self):
        """Before any decoding: refuse a model file (or the fp32 ``<stem>.onnx`` a
        missing one would be produced from) whose content is another precision."""
        opts = self.options
        for name in self.models:
            for v in self.variants:
                if v.backend == "oneflow":
                    continue
                path = model_file(opts.models_dir, name, v)
                if os.path.isfile(path):
                    check_model_file(path, v)
                elif opts.produce_missing:
                    source = model_file(opts.models_dir, name, Variant("ort-cpu", "fp32"))
                    if os.path.isfile(source):
                        artifacts.check_precision(source, "fp32", role=f"the source of {os.path.basename(path)}")

    def _decode_all(self):
        """Decode once per preprocessing (cache hit: nothing to do)."""
        opts = self.options
        for name in self.models:
            pre = self.infos[name][0]
            if pre.key() in self.caches:
                continue
            t0 = time.perf_counter()
            with _Progress(opts.progress, len(self.dataset), f"decode {pre.input_size}px {pre.interpolation}") as bar:
                cache = self.caches[pre.key()] = get_cached_images(self.dataset.paths, pre, opts.cache, bar.update)
            hit = " (cache hit)" if cache.hit else ""
            self.timings[f"decode {pre.input_size}px {pre.interpolation}{hit}"] = time.perf_counter() - t0

    def _plan(self, work):
        """One row per model x variant; a job for each row whose model file exists
        (or could be produced)."""
        opts = self.options
        rows, jobs = [], []
        for name in self.models:
            pre, pretrained = self.infos[name]
            cache = self.caches[pre.key()]
            valid_path = os.path.join(work, "valid-" + os.path.basename(cache.npy_path))
            if not os.path.exists(valid_path):
                np.save(valid_path, cache.valid)
            for v in self.variants:
                path = model_file(opts.models_dir, name, v)
                row = EvalRow(name, v.backend, v.precision, pretrained=pretrained, is_reference=(v == self.reference),
                              reference=str(self.reference), skipped=len(cache.skipped), model_path=path)
                rows.append(row)
                if v.backend != "oneflow" and not os.path.isfile(path):
                    why = f"{os.path.basename(path)} not found in {os.path.abspath(opts.models_dir)}"
                    why = _produce(name, v, path, opts, why) if opts.produce_missing else why
                    if why:
                        row.status, row.reason = "n/a", why
                        continue
                if v.backend != "oneflow":
                    check_model_file(path, v)
                    row.model_path, row.model_sha256 = os.path.abspath(path), artifacts.sha256(path)
                    try:
                        row.detected_precision = artifacts.detect_precision(path)
                    except OfconvertError:   # an engine without a usable sidecar: its runner says why
                        row.detected_precision = "unknown"
                jobs.append({"id": len(rows) - 1, "backend": v.backend, "precision": v.precision,
                             "model": name, "path": path, "npy": cache.npy_path, "valid": valid_path,
                             "preprocess": pre.to_json(), "batch": int(opts.batch_size),
                             "threads": opts.threads, "out": os.path.join(work, f"pred-{len(rows) - 1}.npy")})
        return rows, jobs

    def _run_subprocess(self, backend, jobs, work):
        spec = os.path.join(work, f"jobs-{backend}.json")
        with open(spec, "w") as f:
            json.dump(jobs, f)
        errlog = os.path.join(work, f"stderr-{backend}.txt")
        code = "import sys; from ofconvert.evaluation import _worker_main; _worker_main(sys.argv[1])"
        env = child_env()
        if self.options.threads:
            env.setdefault("OMP_NUM_THREADS", str(self.options.threads))
        with open(errlog, "w") as err, _Progress(self.options.progress, 0, backend) as bar:
            p = subprocess.Popen([sys.executable, "-c", code, spec], stdout=subprocess.PIPE, stderr=err,
                                 env=env, text=True, bufsize=1)
            results = {}
            for line in p.stdout:
                if line.startswith("@@ofconvert-eval "):
                    ev = json.loads(line.split(" ", 1)[1])
                    bar.event(ev)
                    if ev["event"] == "done":
                        results[ev["id"]] = ev
            p.wait()
        if p.returncode != 0:
            with open(errlog, errors="replace") as f:
                lines = [ln.strip() for ln in f if ln.strip()]
            tail = lines[-1] if lines else f"exit status {p.returncode}"
            for j in jobs:
                results.setdefault(j["id"], {"id": j["id"], "status": "error",
                                             "reason": f"{backend} worker died: {tail}"})
        return results

    def _score(self, rows, jobs, results):
        ds = self.dataset
        labels_all = np.asarray(ds.labels, dtype=np.int64)
        preds = {}
        for j in jobs:
            row, res = rows[j["id"]], results.get(j["id"], {"status": "error", "reason": "no result"})
            if res.get("status") != "ok":
                row.status, row.reason = res.get("status", "error"), res.get("reason", "")
                continue
            top = np.load(j["out"])
            valid = np.load(j["valid"])
            labels = labels_all[valid]
            row.images = int(len(valid))
            row.top1 = float(np.mean(top[:, 0] == labels)) if len(valid) else None
            row.top5 = float(np.mean((top == labels[:, None]).any(axis=1))) if len(valid) else None
            row.seconds = res["seconds"]
            row.images_per_s = row.images / res["seconds"] if res["seconds"] else None
            preds[j["id"]] = (top[:, 0], valid)
        ref_ids = {r.model: i for i, r in enumerate(rows) if r.is_reference}
        for i, row in enumerate(rows):
            ri = ref_ids.get(row.model)
            if i not in preds or ri not in preds:
                continue
            mine, valid = preds[i]
            ref, _ = preds[ri]
            diff = np.nonzero(mine != ref)[0]
            row.mismatches = int(len(diff))
            if self.options.keep_mismatches:
                row.mismatched = [{"path": ds.relpath(ds.paths[valid[k]]), "label": int(labels_all[valid[k]]),
                                   "reference": int(ref[k]), "prediction": int(mine[k])} for k in diff]


def _group(items, key):
    out: Dict[str, list] = {}
    for it in items:
        out.setdefault(it[key], []).append(it)
    return out


def evaluate(data, models, variants=None, *, backends=None, precisions=None, reference=None,
             options: Optional[EvalOptions] = None) -> List[EvalRow]:
    """Evaluate ``models`` (zoo names, or stems of ONNX files in ``options.models_dir``)
    on the labelled images in ``data``. Variants: ``variants`` ("ort-cpu:fp16", ...) or
    ``backends`` x ``precisions`` (default: ort-cpu at fp32). Returns one EvalRow per
    model x variant, the reference included."""
    check_type(data, (str, os.PathLike), "data", "an image folder path")
    check_type(models, (str, list, tuple), "models", "a model name or a list of names")
    if options is not None:
        check_type(options, EvalOptions, "options", "an ofconvert.EvalOptions")
    if variants is None:
        variants = expand_variants(backends or ["ort-cpu"], precisions or ["fp32"])
    return Evaluator(data, models, variants, reference=reference, options=options).run()


# -- worker side (runs inside the per-backend subprocess) ---------------------------------

def run_jobs(jobs, emit):
    """Run ``jobs`` (dicts built by Evaluator) and return {id: result}. ``emit(event)``
    receives start/progress/done events."""
    from .data import normalize
    from .runners import make_runner

    results = {}
    for j in jobs:
        emit({"event": "start", "id": j["id"], "desc": f"{j['model']} {j['backend']}:{j['precision']}",
              "total": int(np.load(j["valid"]).shape[0])})
        try:
            res = _run_one(j, make_runner, normalize, emit)
        except (OfconvertError, ImportError) as e:
            status = "n/a" if isinstance(e, (BackendUnavailableError, ImportError)) else "error"
            res = {"status": status, "reason": str(e).splitlines()[0] if str(e) else type(e).__name__}
        except Exception as e:  # a backend failing on this model: report it in the row, go on
            res = {"status": "error", "reason": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
        res["id"] = j["id"]
        emit(dict(res, event="done"))
        results[j["id"]] = res
    return results


def _run_one(j, make_runner, normalize, emit):
    pre = PreprocessConfig.from_json(j["preprocess"])
    kwargs = {"threads": j["threads"]} if j["backend"].startswith("ort-") and j["threads"] else {}
    runner = make_runner(j["backend"], j["path"], **kwargs)
    images = np.load(j["npy"], mmap_mode="r")
    valid = np.load(j["valid"])
    bs = j["batch"]
    top = np.zeros((len(valid), TOPK), dtype=np.int32)
    with runner:
        t0 = time.perf_counter()
        for s in range(0, len(valid), bs):
            idx = valid[s:s + bs]
            x = normalize(images[idx], pre)
            logits = np.asarray(runner.infer(x))
            if logits.ndim != 2 or logits.shape[0] != len(idx) or logits.shape[1] < TOPK:
                raise OfconvertError(f"{j['path']}: expected logits of shape ({len(idx)}, classes), "
                                     f"got {logits.shape}")
            top[s:s + len(idx)] = np.argsort(-logits, axis=1, kind="stable")[:, :TOPK]
            emit({"event": "progress", "id": j["id"], "n": len(idx)})
        seconds = time.perf_counter() - t0
    np.save(j["out"], top)
    return {"status": "ok", "seconds": seconds}


def _worker_main(spec_path):
    with open(spec_path) as f:
        jobs = json.load(f)

    def emit(ev):
        sys.stdout.write("@@ofconvert-eval " + json.dumps(ev) + "\n")
        sys.stdout.flush()

    run_jobs(jobs, emit)


class _Progress:
    """tqdm bars (images/s) fed by worker events; silent when disabled or without tqdm."""

    def __init__(self, enabled, total, desc):
        self.enabled, self.total, self.desc = enabled, total, desc
        self.bar = None

    def __enter__(self):
        if self.enabled and self.total:
            self._open(self.total, self.desc)
        return self

    def _open(self, total, desc):
        try:
            from tqdm import tqdm
        except ImportError:
            return
        self.bar = tqdm(total=total, desc=desc, unit="img", dynamic_ncols=True, leave=False, file=sys.stderr)

    def update(self, n):
        if self.bar is not None:
            self.bar.update(n)

    def event(self, ev):
        if not self.enabled:
            return
        if ev["event"] == "start":
            self._close()
            self._open(ev["total"], ev["desc"])
        elif ev["event"] == "progress":
            self.update(ev["n"])
        elif ev["event"] == "done":
            self._close()

    def _close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __exit__(self, *exc):
        self._close()


# -- reports ----------------------------------------------------------------------------------

RANDOM_MARK = "†"


def _columns(rows):
    cols = []
    for r in rows:
        if (r.backend, r.precision) not in cols:
            cols.append((r.backend, r.precision))
    return cols


def format_markdown(rows: Sequence[EvalRow], metric="top1") -> str:
    """The report table: rows = models, columns = backend (precision). ``metric="top1"``:
    cells ``top-1 / mismatches vs reference``; ``"top5"``: top-5 accuracy."""
    cols = _columns(rows)
    models = list(dict.fromkeys(r.model for r in rows))
    cell = {(r.model, r.backend, r.precision): r for r in rows}
    notes = []
    head = "| model | " + " | ".join(f"{b} ({p})" for b, p in cols) + " |"
    lines = [head, "|" + " --- |" * (len(cols) + 1)]
    any_random = False
    for m in models:
        some = next(r for r in rows if r.model == m)
        name = m if some.pretrained else f"{m} {RANDOM_MARK}"
        any_random |= not some.pretrained
        out = []
        for b, p in cols:
            r = cell.get((m, b, p))
            if r is None:
                out.append("")
            elif r.status != "ok":
                notes.append(f"{m} {b} ({p}): {r.reason}")
                out.append(f"{r.status} [{len(notes)}]")
            elif metric == "top5":
                out.append(_pct(r.top5))
            else:
                mm = "ref" if r.is_reference else ("n/a" if r.mismatches is None else str(r.mismatches))
                out.append(f"{_pct(r.top1)} / {mm}")
        lines.append(f"| {name} | " + " | ".join(out) + " |")
    if metric == "top1" and rows:
        ref = rows[0].reference
        lines.append("")
        lines.append(f"Cells: top-1 / number of top-1 predictions that differ from the reference ({ref}).")
    if any_random:
        lines.append(f"{RANDOM_MARK} random weights: accuracy is meaningless, mismatch counts are what matters.")
    for i, n in enumerate(notes, 1):
        lines.append(f"[{i}] {n}")
    if metric == "top1":
        lines += format_files(rows)
    return "\n".join(lines)


def format_files(rows: Sequence[EvalRow]) -> List[str]:
    """Markdown lines: the file behind every cell that ran (path, precision read
    from its content, sha256)."""
    ran = [r for r in rows if r.model_sha256 or (r.backend == "oneflow" and r.status in ("ok", "error"))]
    if not ran:
        return []
    lines = ["", "Files (precision read from the file's content):", "",
             "| model | variant | file | precision | sha256 |", "| --- | --- | --- | --- | --- |"]
    for r in ran:
        if r.model_sha256:
            lines.append(f"| {r.model} | {r.backend} ({r.precision}) | {r.model_path} | {r.detected_precision} "
                         f"| {r.model_sha256} |")
        else:
            lines.append(f"| {r.model} | {r.backend} ({r.precision}) | OneFlow zoo model {r.model} (no file) "
                         f"| fp32 | |")
    return lines


def _pct(x):
    return "-" if x is None else f"{100.0 * x:.2f}%"


CSV_FIELDS = ("model", "backend", "precision", "status", "pretrained", "is_reference", "reference", "images",
              "skipped", "top1", "top5", "mismatches", "seconds", "images_per_s", "model_path", "model_sha256",
              "detected_precision", "reason")


def format_csv(rows: Sequence[EvalRow]) -> str:
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_FIELDS)
    for r in rows:
        w.writerow(["" if getattr(r, f) is None else getattr(r, f) for f in CSV_FIELDS])
    return buf.getvalue()


def plot_png(rows: Sequence[EvalRow], path, title="ImageNet top-1 / mismatches vs reference"):
    """Grouped bars: top-1 per model and variant, mismatch count on each bar."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from . import fileio

    cols = _columns(rows)
    models = list(dict.fromkeys(r.model for r in rows))
    cell = {(r.model, r.backend, r.precision): r for r in rows}
    fig, ax = plt.subplots(figsize=(max(7, 0.9 * len(models) * max(1, len(cols)) + 3), 4.5))
    width = 0.8 / max(1, len(cols))
    for k, (b, p) in enumerate(cols):
        xs, ys, labels = [], [], []
        for i, m in enumerate(models):
            r = cell.get((m, b, p))
            if r is None or r.status != "ok" or r.top1 is None:
                continue
            xs.append(i + (k - (len(cols) - 1) / 2) * width)
            ys.append(100 * r.top1)
            labels.append("ref" if r.is_reference else str(r.mismatches))
        bars = ax.bar(xs, ys, width, label=f"{b} ({p})")
        for bar, lab in zip(bars, labels):
            ax.annotate(lab, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom",
                        fontsize=7)
    names = [m if cell_any(rows, m).pretrained else f"{m} {RANDOM_MARK}" for m in models]
    ax.set_xticks(range(len(models)))
    ax.set_xticklabels(names)
    ax.set_ylabel("top-1 (%)")
    ax.set_ylim(0, 105)
    ax.set_title(title + "\n(number on a bar: mismatches vs reference; † random weights)", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    with fileio.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def cell_any(rows, model):
    return next(r for r in rows if r.model == model)


def write_reports(rows: Sequence[EvalRow], out_dir, context: Optional[dict] = None, png=True) -> Dict[str, str]:
    """Write eval.md, eval.json (every mismatching image), eval.csv and eval.png into
    ``out_dir``; returns {kind: path}. ``context``: extra JSON fields (dataset, timings)."""
    from . import fileio

    out = {}
    md = format_markdown(rows) + "\n\nTop-5:\n\n" + format_markdown(rows, metric="top5") + "\n"
    out["md"] = os.path.join(out_dir, "eval.md")
    fileio.write_text(out["md"], md)
    out["json"] = os.path.join(out_dir, "eval.json")
    fileio.write_json(out["json"], dict(context or {}, rows=[r.to_dict() for r in rows]))
    out["csv"] = os.path.join(out_dir, "eval.csv")
    fileio.write_text(out["csv"], format_csv(rows))
    if png:
        out["png"] = plot_png(rows, os.path.join(out_dir, "eval.png"))
    return out


def report_context(ev: "Evaluator") -> dict:
    """Dataset, cache and timing facts for the JSON report."""
    return {
        "dataset": {"root": ev.dataset.root, "layout": ev.dataset.layout, "labels": ev.dataset.label_source,
                    "images": len(ev.dataset)},
        "reference": str(ev.reference),
        "caches": [{"preprocess": c.preprocess.to_dict(), "npy": c.npy_path, "hit": c.hit,
                    "fast_decode": c.fast_decode, "build_seconds": round(c.build_seconds, 3), "workers": c.workers,
                    "skipped": [{"path": p, "reason": r} for p, r in c.skipped.items()]}
                   for c in ev.caches.values()],
        "timings": {k: round(v, 3) for k, v in ev.timings.items()},
    }
