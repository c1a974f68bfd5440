"""Evaluation reports: the top-1 / mismatch and top-5 tables, CSV, PNG and the
JSON context (dataset, caches, timings); written by ``ofconvert.report``."""
from typing import Dict, List, Optional, Sequence

from .. import report
from .variants import EvalRow

RANDOM_MARK = "†"
CSV_FIELDS = ("model", "backend", "precision", "status", "pretrained", "is_reference", "reference", "images",
              "skipped", "top1", "top5", "mismatches", "seconds", "images_per_s", "setup_seconds", "inference_seconds",
              "settings", "input_format", "model_path", "model_sha256", "detected_precision", "reason")
PROJECT_IMAGES = 50000


def _columns(rows):
    return list(dict.fromkeys((r.backend, r.precision) for r in rows))


def _pct(x):
    return "-" if x is None else f"{100.0 * x:.2f}%"


def _name(rows, model):
    first = next(r for r in rows if r.model == model)
    return model if first.pretrained else f"{model} {RANDOM_MARK}"


def format_markdown(rows: Sequence[EvalRow], metric="top1") -> str:
    """The report table: rows = models, columns = backend (precision). ``metric="top1"``:
    cells ``top-1 / mismatches vs reference``; ``"top5"``: top-5 accuracy."""
    cols = _columns(rows)
    models = list(dict.fromkeys(r.model for r in rows))
    cell = {(r.model, r.backend, r.precision): r for r in rows}
    notes = []
    lines = ["| model | " + " | ".join(f"{b} ({p})" for b, p in cols) + " |", "|" + " --- |" * (len(cols) + 1)]
    for m in models:
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
        lines.append(f"| {_name(rows, m)} | " + " | ".join(out) + " |")
    if metric == "top1" and rows:
        lines += ["", "Cells: top-1 / number of top-1 predictions that differ from the reference "
                      f"({rows[0].reference})."]
    if any(not r.pretrained for r in rows):
        lines.append(f"{RANDOM_MARK} random weights: accuracy is meaningless, mismatch counts are what matters.")
    lines += [f"[{i}] {n}" for i, n in enumerate(notes, 1)]
    if metric == "top1":
        lines += format_files(rows)
    return "\n".join(lines)


def format_files(rows: Sequence[EvalRow]) -> List[str]:
    """Markdown lines: the file behind every cell that ran (path, precision read
    from its content, sha256)."""
    ran = [r for r in rows if r.model_sha256 or (r.backend == "oneflow" and r.status in ("ok", "error"))]
    return report.files_markdown([(r.model, f"{r.backend} ({r.precision})", r.model_path if r.model_sha256 else "",
                                   r.detected_precision, r.model_sha256) for r in ran], "variant")


def format_csv(rows: Sequence[EvalRow]) -> str:
    return report.csv_text(rows, CSV_FIELDS)


def panels(rows: Sequence[EvalRow]):
    """One bar-chart panel: top-1 per model and variant, the mismatch count on each bar."""
    models = list(dict.fromkeys(r.model for r in rows))
    cell = {(r.model, r.backend, r.precision): r for r in rows if r.status == "ok" and r.top1 is not None}
    series = []
    for b, p in _columns(rows):
        got = [cell.get((m, b, p)) for m in models]
        series.append((f"{b} ({p})", [100 * r.top1 if r else None for r in got],
                       [("ref" if r.is_reference else str(r.mismatches)) if r else None for r in got]))
    return [{"title": "ImageNet top-1 / mismatches vs reference\n(number on a bar: mismatches vs reference; "
                      f"{RANDOM_MARK} random weights)", "groups": [_name(rows, m) for m in models], "series": series}]


def write_reports(rows: Sequence[EvalRow], out_dir, context: Optional[dict] = None, png=True) -> Dict[str, str]:
    """Write eval.md, eval.json (every mismatching image), eval.csv and eval.png into
    ``out_dir``; returns {kind: path}. ``context``: extra JSON fields (dataset, timings)."""
    md = format_markdown(rows) + "\n\nTop-5:\n\n" + format_markdown(rows, metric="top5") + "\n"
    split = time_split_markdown((context or {}).get("time_split") or [])
    if split:
        md += "\nTime split (decode, set-up, inference) and the projection:\n\n" + split + "\n"
    payload = dict(context or {}, rows=[r.to_dict() for r in rows])
    return report.write_reports(out_dir, "eval", md, payload, format_csv(rows), panels(rows) if png and rows else None,
                                ylabel="top-1 (%)", ylim=(0, 105))


def report_context(ev) -> dict:
    """Dataset, cache and timing facts of an ``Evaluator`` for the JSON report."""
    return {
        "dataset": {"root": ev.dataset.root, "layout": ev.dataset.layout, "labels": ev.dataset.label_source,
                    "images": len(ev.dataset)},
        "reference": str(ev.reference),
        "caches": [{"preprocess": c.preprocess.to_dict(), "npy": c.npy_path, "hit": c.hit,
                    "fast_decode": c.fast_decode, "build_seconds": round(c.build_seconds, 3), "workers": c.workers,
                    "skipped": [{"path": p, "reason": r} for p, r in c.skipped.items()]}
                   for c in ev.caches.values()],
        "timings": {k: round(v, 3) for k, v in ev.timings.items()},
        "time_split": time_split(ev.rows if hasattr(ev, "rows") else [], ev),
    }


def time_split(rows: Sequence[EvalRow], ev, batch=None) -> List[dict]:
    """Per variant that ran: decode (its preprocessing's share of this run), set-up
    (session, auto's choice, first batch) and inference seconds, and the time
    projected for ``PROJECT_IMAGES`` images from those parts (decode and inference
    scale with the images, set-up does not)."""
    decode = sum(v for k, v in ev.timings.items() if k.startswith("decode"))
    n_decoded = max(len(ev.dataset), 1)
    out = []
    for r in rows:
        if r.status != "ok" or r.inference_seconds is None or not r.images:
            continue
        first = min(int(batch or ev.options.batch_size), r.images)
        rate = (r.images - first) / r.inference_seconds if r.inference_seconds > 0 and r.images > first else None
        proj = (decode / n_decoded * PROJECT_IMAGES + r.setup_seconds + PROJECT_IMAGES / rate) if rate else None
        out.append({"variant": f"{r.model} {r.backend}:{r.precision}", "settings": r.settings,
                    "input_format": r.input_format or "float-nchw", "decode_s": round(decode, 3),
                    "setup_s": round(r.setup_seconds, 3), "inference_s": round(r.inference_seconds, 3),
                    "inference_img_per_s": round(rate, 1) if rate else None,
                    f"projected_{PROJECT_IMAGES}_s": round(proj, 1) if proj else None})
    return out


def time_split_markdown(split: List[dict]) -> str:
    """The time split as a markdown table (decode is shared by the variants of one preprocessing)."""
    if not split:
        return ""
    lines = [f"| variant | settings | input | decode s | set-up s | inference s | inference img/s | "
             f"{PROJECT_IMAGES:,} images, projected s |", "|---|---|---|---:|---:|---:|---:|---:|"]
    for d in split:
        lines.append(f"| {d['variant']} | {d['settings'] or '-'} | {d['input_format']} | {d['decode_s']:.2f} | "
                     f"{d['setup_s']:.2f} | {d['inference_s']:.2f} | {d['inference_img_per_s'] or '-'} | "
                     f"{d[f'projected_{PROJECT_IMAGES}_s'] or '-'} |")
    return "\n".join(lines)


