"""Reports shared by the benchmark and the evaluator: the environment, the
"Files" table, CSV, a grouped-bar PNG and the writer of ``<stem>.md/.json/.csv/.png``
(each file atomic). matplotlib loads only to draw."""
import csv
import io
import os
import platform
import subprocess
import sys
import time

from . import fileio


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
        "time": time.strftime("%Y-%m-%d %H:%M:%S %z"), "openvino": version("openvino"),
    }


def files_markdown(entries, column="column"):
    """Markdown lines of the "Files" table: ``entries`` are (model, column, path,
    detected precision, sha256); path "" = the OneFlow zoo model (no file)."""
    if not entries:
        return []
    lines = ["", "### Files (precision read from the file's content)", "",
             f"| model | {column} | file | precision | sha256 |", "|---|---|---|---|---|"]
    for model, col, path, prec, sha in entries:
        if path:
            lines.append(f"| {model} | {col} | {path} | {prec} | {sha} |")
        else:
            lines.append(f"| {model} | {col} | OneFlow model {model} (no file) | fp32 | |")
    return lines


def csv_text(rows, fields):
    """One CSV line per row (objects with those attributes); None is empty."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(fields)
    for r in rows:
        w.writerow(["" if getattr(r, f) is None else getattr(r, f) for f in fields])
    return buf.getvalue()


def _fmt_value(v):
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"


def bar_layout(panel):
    """[(series index, group index, x, value, text)] of one panel's bars: in each
    group only the series with a value get a slot, centred on the group (an n/a cell
    leaves no gap); text: the series' annotation, else the value."""
    groups, series = panel["groups"], panel["series"]
    width = 0.8 / max(1, max((sum(v[i] is not None for _, v, _ in series) for i in range(len(groups))), default=1))
    bars = []
    for i in range(len(groups)):
        here = [k for k, (_, values, _) in enumerate(series) if values[i] is not None]
        for pos, k in enumerate(here):
            _, values, notes = series[k]
            text = notes[i] if notes and notes[i] else _fmt_value(values[i])
            bars.append((k, i, i + (pos - (len(here) - 1) / 2) * width, values[i], text))
    return bars, width


def _log_scale(panel, ylim):
    """Log y when asked (``panel["log"]``), or, without fixed limits, when the values
    span more than 20x (2.9 img/s beside 474 img/s stays visible)."""
    if "log" in panel:
        return bool(panel["log"])
    vals = [v for _, values, _ in panel["series"] for v in values if v is not None and v > 0]
    return ylim is None and len(vals) > 1 and max(vals) / min(vals) > 20


def grouped_bars(path, panels, ylabel, ylim=None, dpi=100):
    """Grouped bar chart, one panel per entry of ``panels``: dicts with ``title``,
    ``groups`` (x labels) and ``series``: [(label, values, annotations)], values
    None where missing (no bar and no empty slot), annotations None or one text per
    value (default: the value on the bar); optional ``log`` (default: log y when the
    values span more than 20x and no ``ylim``). One colour per series label, the
    same in every panel."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    labels = list(dict.fromkeys(label for p in panels for label, _, _ in p["series"]))
    cmap = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20")
    colour = {label: cmap(i % cmap.N) for i, label in enumerate(labels)}
    width_in = max(7, max(0.9 * len(p["groups"]) * max(1, len(p["series"])) + 3 for p in panels))
    fig, axes = plt.subplots(len(panels), 1, figsize=(min(width_in, 16), 4.5 * len(panels)), squeeze=False)
    for ax, panel in zip(axes[:, 0], panels):
        bars, width = bar_layout(panel)
        log = _log_scale(panel, ylim)
        for k, i, x, v, text in bars:
            label = panel["series"][k][0]
            ax.bar([x], [v], width, color=colour[label])
            ax.annotate(text, (x, v), xytext=(0, 2), textcoords="offset points", ha="center", va="bottom",
                        fontsize=7 if len(bars) < 24 else 6, rotation=90 if len(text) > 4 and width < 0.2 else 0)
        ax.set_xticks(range(len(panel["groups"])))
        ax.set_xticklabels(panel["groups"])
        ax.set_ylabel(ylabel + (" (log scale)" if log else ""))
        if log:
            ax.set_yscale("log")
            ax.margins(y=0.15)
        if ylim:
            ax.set_ylim(*ylim)
        elif not log:
            ax.set_ylim(0, max([v for _, _, _, v, _ in bars] or [1]) * 1.15)
        ax.set_title(panel["title"], fontsize=9)
        shown = [label for label, _, _ in panel["series"]]
        ax.legend([Patch(color=colour[label]) for label in shown], shown, fontsize=7, loc="upper left",
                  bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    with fileio.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    plt.close(fig)
    return path


def write_reports(out_dir, stem, markdown, payload, csv, panels=None, ylabel="", ylim=None):
    """Write ``<stem>.md``, ``.json`` (payload), ``.csv`` and, with ``panels``, ``.png``
    (see :func:`grouped_bars`; skipped with a note when matplotlib is missing) into
    out_dir; returns {kind: path}."""
    paths = {"md": os.path.join(out_dir, stem + ".md"), "json": os.path.join(out_dir, stem + ".json"),
             "csv": os.path.join(out_dir, stem + ".csv")}
    fileio.write_text(paths["md"], markdown)
    fileio.write_json(paths["json"], payload)
    fileio.write_text(paths["csv"], csv)
    if panels:
        try:
            paths["png"] = grouped_bars(os.path.join(out_dir, stem + ".png"), panels, ylabel, ylim)
        except ImportError as e:
            print(f"{stem}: no chart ({e})", file=sys.stderr)
    return paths
