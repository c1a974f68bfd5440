"""Benchmark reports: markdown (one table per batch size, n/a footnotes, ort-cuda
speed-ups, per-request latency with several streams, the files), CSV, PNG;
written by ``ofconvert.report``."""
import dataclasses
import io

from .. import report
from ..runners.ort_settings import OrtCudaSettings
from .options import BenchResult


def fmt(v):
    return f"{v:,.0f}" if v >= 100 else f"{v:,.1f}"


def markdown(results, env=None, options=None):
    """One table per batch size (rows: models, columns: backend(precision)), n/a
    cells footnoted with their reason; a speed-up table when several ort-cuda
    settings ran (against the first)."""
    out = io.StringIO()
    if options is not None:
        out.write(f"Protocol: {options.warmup} warm-up + {options.iters} timed batches per cell"
                  + (f" and stream ({options.streams} concurrent streams, one session each; img/s = all images / "
                     "wall time)" if options.streams > 1 else "; img/s = batch / mean batch latency")
                  + " (synchronised).\n")
    if env:
        out.write(f"Environment: CPU {env.get('cpu')} ({env.get('cpu_count')} cores), GPU {env.get('gpu') or 'none'}, "
                  f"Python {env.get('python')}, onnxruntime {env.get('onnxruntime')}, oneflow {env.get('oneflow')}, "
                  f"TensorRT {env.get('tensorrt')}" + (f", OpenVINO {env['openvino']}" if env.get("openvino") else "")
                  + ".\n")
    settings = list(dict.fromkeys(r.settings for r in results if r.backend == "ort-cuda"))
    if settings:
        out.write("ort-cuda settings: " + "; ".join(f"[{s}] = {OrtCudaSettings.parse(s).spec}" for s in settings)
                  + " (iobind = IO binding, nhwc = prefer_nhwc, graph = CUDA graph, algo = cuDNN conv algo search; "
                  "plain = ONNX Runtime's defaults).\n")
        chosen = [r for r in results if r.settings == "auto" and r.settings_ran]
        if chosen:
            out.write("auto ran: " + "; ".join(dict.fromkeys(
                f"{r.model} {r.precision} batch {r.batch}: {r.settings_ran}" for r in chosen)) + ".\n")
    out.write("Inputs: plain columns feed a host (numpy) batch and copy the logits back every batch; `dev-in` columns "
              "keep the batch on the GPU (IO binding), logits stay there.\n")
    for batch in sorted({r.batch for r in results}):
        rows = [r for r in results if r.batch == batch]
        out.write(_table(rows, f"Batch {batch} (img/s)", lambda r: fmt(r.img_per_s)))
        if any(r.streams > 1 for r in rows):
            out.write(_table(rows, f"Batch {batch}: latency per request, p50 / p99 (ms)",
                             lambda r: f"{r.latency_ms_p50:.1f} / {r.latency_ms_p99:.1f}"))
    out.write(_speedup_markdown(results))
    out.write(_files_markdown(results))
    return out.getvalue()


def _table(rows, title, cell_text):
    out = io.StringIO()
    models = list(dict.fromkeys(r.model for r in rows))
    cols = list(dict.fromkeys(r.column for r in rows))
    cell = {(r.model, r.column): r for r in rows}
    notes = {}
    out.write(f"\n### {title}\n\n| model | " + " | ".join(cols) + " |\n")
    out.write("|---|" + "---:|" * len(cols) + "\n")
    for m in models:
        vals = []
        for c in cols:
            r = cell.get((m, c))
            if r is None:
                vals.append("")
            elif r.status == "ok":
                vals.append(cell_text(r))
            else:
                n = notes.setdefault(r.reason, len(notes) + 1)
                vals.append(f"n/a [{n}]")
        size = next(r.input_size for r in rows if r.model == m)
        out.write(f"| {m} ({size}) | " + " | ".join(vals) + " |\n")
    for reason, n in notes.items():
        out.write(f"\n[{n}] {reason}")
    if notes:
        out.write("\n")
    return out.getvalue()


def _files_markdown(results):
    """The file behind every column: path, precision read from its content, sha256."""
    seen = {}
    for r in results:
        key = (r.model, r.column)
        if key not in seen and (r.model_file or (r.backend == "oneflow" and r.status == "ok")):
            seen[key] = (r.model, r.column, r.model_file, r.detected_precision, r.model_sha256)
    lines = report.files_markdown(list(seen.values()), "column")
    return "\n".join(lines) + "\n" if lines else ""


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
            out.write(f"| {m} | {p} | {b} | {i} | {fmt(base.img_per_s)} | {fmt(r.img_per_s)} | "
                      f"{r.img_per_s / base.img_per_s:.2f}x |\n")
    return out.getvalue()


def to_csv(results):
    return report.csv_text(results, [f.name for f in dataclasses.fields(BenchResult)])


def panels(results):
    """Bar-chart panels (``report.grouped_bars``): one per batch size, img/s."""
    out = []
    for batch in sorted({r.batch for r in results}):
        rows = [r for r in results if r.batch == batch]
        models = list(dict.fromkeys(r.model for r in rows))
        cols = list(dict.fromkeys(r.column for r in rows))
        ok = {(r.model, r.column): r.img_per_s for r in rows if r.status == "ok"}
        out.append({"title": f"batch {batch}, img/s (an n/a cell has no bar)", "groups": models,
                    "series": [(c, [ok.get((m, c)) for m in models], None) for c in cols]})
    return out


def write_reports(results, out_dir, env=None, options=None, stem="bench", png=True):
    """Write ``<stem>.md/.json/.csv`` (and ``.png``) into out_dir; returns their paths."""
    payload = {"environment": env, "protocol": dataclasses.asdict(options) if options else None,
               "results": [r.to_dict() for r in results]}
    return report.write_reports(out_dir, stem, markdown(results, env, options), payload, to_csv(results),
                                panels(results) if png and results else None, ylabel="img/s")
