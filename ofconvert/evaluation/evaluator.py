"""The evaluator's driver: checks every model file before decoding, decodes the
dataset once per preprocessing (``ofconvert.preprocache``), runs the variants of
each backend in one worker process (``isolation.run_worker``; a crash turns only
that backend's rows into errors) and scores top-1 / top-5 / mismatches."""
import os
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence

import numpy as np

from .. import artifacts
from ..errors import OfconvertError, check_type
from ..isolation import WorkerFailed, run_worker
from ..preprocache import get_cached_images
from ..progress import Progress
from .variants import (
    DEFAULT_REFERENCE,
    FALLBACK_REFERENCE,
    EvalOptions,
    EvalRow,
    Variant,
    expand_variants,
    model_file,
    model_info,
    oneflow_available,
)
from .worker import run_jobs


class Evaluator:
    """Runs an evaluation; ``run()`` returns the rows. Keeps ``dataset``, ``caches``
    (preprocess key -> CachedImages) and ``reference`` for reports."""

    def __init__(self, data, models: Sequence[str], variants: Sequence, reference=None,
                 options: Optional[EvalOptions] = None):
        from ..datasets import load_dataset

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
            raise OfconvertError(f"--batch must be >= 1, got {self.options.batch_size}")
        self.dataset = load_dataset(data, labels=self.options.labels, meta=self.options.meta)
        self.dataset = self.dataset.limit(self.options.limit)
        self.infos = {m: model_info(m, self.options.models_dir) for m in self.models}
        self.caches = {}
        self.timings = {}

    def run(self) -> List[EvalRow]:
        with tempfile.TemporaryDirectory(prefix="ofconvert-eval-") as work:
            return self.run_impl(work)

    def run_impl(self, work) -> List[EvalRow]:
        self._check_files()
        self._decode_all()
        rows, jobs = self._plan(work)
        results = {}
        for backend, bjobs in _group(jobs, "backend").items():   # one process per backend
            with Progress(self.options.progress, 0, backend) as bar:
                if self.options.isolate:
                    results.update(self._run_worker(backend, bjobs, bar))
                else:
                    results.update(run_jobs(bjobs, bar.event))
        self._score(rows, jobs, results)
        return rows

    def _check_files(self):
        """Before any decoding: refuse a model file (or the fp32 ``<stem>.onnx`` a
        missing one would be produced from) whose content is another precision."""
        opts = self.options
        for name in self.models:
            for v in self.variants:
                artifacts.check_existing(opts.models_dir, name, v.precision, v.backend, produce=opts.produce_missing)

    def _decode_all(self):
        """Decode once per preprocessing (cache hit: nothing to do)."""
        opts = self.options
        for name in self.models:
            pre = self.infos[name][0]
            if pre.key() in self.caches:
                continue
            t0 = time.perf_counter()
            with Progress(opts.progress, len(self.dataset), f"decode {pre.input_size}px {pre.interpolation}") as bar:
                cache = self.caches[pre.key()] = get_cached_images(self.dataset.paths, pre, opts.cache, bar.update)
            hit = " (cache hit)" if cache.hit else ""
            self.timings[f"decode {pre.input_size}px {pre.interpolation}{hit}"] = time.perf_counter() - t0

    def _plan(self, work):
        """One row per model x variant; a job for each row whose model file exists
        (or could be produced)."""
        opts = self.options
        log = (lambda m: print(m, file=sys.stderr, flush=True)) if opts.progress else None
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
                if v.backend != "oneflow":
                    try:
                        info = artifacts.locate(opts.models_dir, name, v.precision, v.backend, opts.produce_missing,
                                                opts.calib, log=log)
                    except artifacts.PrecisionMismatchError:
                        raise
                    except OfconvertError as e:
                        row.status, row.reason = "n/a", str(e)
                        continue
                    row.model_path, row.model_sha256 = info["path"], info["sha256"]
                    row.detected_precision = info["precision"]
                jobs.append({"id": len(rows) - 1, "backend": v.backend, "precision": v.precision,
                             "model": name, "path": path, "npy": cache.npy_path, "valid": valid_path,
                             "preprocess": pre.to_json(), "batch": int(opts.batch_size),
                             "threads": opts.threads, "out": os.path.join(work, f"pred-{len(rows) - 1}.npy"),
                             "ort_cuda": opts.ort_cuda})
        return rows, jobs

    def _run_worker(self, backend, jobs, bar):
        results = {}

        def on_event(ev):
            bar.event(ev)
            if ev["event"] == "done":
                results[ev["id"]] = ev

        try:
            run_worker("ofconvert.evaluation.worker:run_backend", {"jobs": jobs}, threads=self.options.threads,
                       on_event=on_event)
        except WorkerFailed as e:
            for j in jobs:
                results.setdefault(j["id"], {"id": j["id"], "status": "error", "reason": f"{backend} {e.reason}"})
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
            row.setup_seconds, row.settings = res.get("setup_seconds"), res.get("settings", "")
            row.inference_seconds = res.get("inference_seconds")
            row.input_format = res.get("input_format", "")
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
