"""Writing a budget result: each flavour's model (``<stem>.int8.onnx``,
``.int8-cpu.onnx`` or ``.fp16.onnx``, normal artefacts) with the budget summary
in its metadata (``ofconvert.budget``), a ``<file>.budget.json`` report beside it
and, for the timed flavour, ``<file>.budget.png`` (flips vs img/s), all in one
:func:`ofconvert.fileio.transaction` per model."""
import json

BUDGET_KEY = "ofconvert.budget"
REPORT_FORMAT = "ofconvert-budget/1"


def summary(res, flavour):
    """What a budgeted model is (its ``ofconvert.budget`` metadata and the report's
    ``this``): the budget, the flips measured and expected on the check set, the
    layers kept in float, the speed and the calibration cache it came from."""
    r = res.flavours[flavour]
    cal = res.calibration or {}
    return {"max_flips": res.max_flips, "budget_flips": r.budget_flips, "check_images": res.check["images"],
            "check_source": res.check.get("source"),
            "flips": r.flips, "expected_flips": r.expected_flips, "float_layers": [x["layer"] for x in r.float_layers],
            "img_s": r.img_s,
            "fp32_img_s": res.fp32_img_s, "speedup": r.speedup, "float_prefix": r.prefix, "float_suffix": r.suffix,
            "calibration": cal.get("chosen"), "calibration_cache": cal.get("cache"),
            "bias_corrected": bool(cal.get("bias_corrected")), "search_s": res.search_s}


def calibration_cache(fp32_path, scales, method, given=()):
    """{"method", "file", "sha256"} of the calibration cache holding exactly ``scales``:
    one of ``given`` (cache paths) or of the ``<stem>.*.calib.cache`` beside the fp32
    model (where ``ofconvert MODEL --int8`` writes them; then ``file`` is its name,
    relative to the model's folder), its file's sha256; when
    none holds them (scales passed from memory), file None and the sha256 of the
    cache ofconvert would write for them (``calibration.format_cache``)."""
    import glob
    import hashlib
    import os

    from ..calibration import format_cache, read_cache
    from ..errors import OfconvertError
    from ..fileio import sha256_file

    stem = os.path.splitext(os.fspath(fp32_path))[0]
    want = {t: float(v) for t, v in scales.items()}
    for path in list(given) + sorted(glob.glob(glob.escape(stem) + ".*.calib.cache")):
        try:
            if read_cache(path) == want:
                # beside the model: its name only (the model and its caches move together, e.g. out of a
                # run's staging folder); elsewhere (a --calib-cache FILE): the absolute path
                beside = os.path.dirname(os.path.abspath(path)) == os.path.dirname(os.path.abspath(fp32_path))
                return {"method": method, "file": os.path.basename(path) if beside else os.path.abspath(path),
                        "sha256": sha256_file(path)}
        except OfconvertError:
            continue
    return {"method": method, "file": None, "sha256": hashlib.sha256(format_cache(scales).encode()).hexdigest()}


def report(res, flavour):
    d = res.to_dict()
    d["format"] = REPORT_FORMAT
    d["flavour"] = flavour
    d["this"] = summary(res, flavour)
    return d


#: label offsets tried, in points from the marker (first free one wins)
_OFFSETS = [(4, 3), (4, -10), (-4, 3), (-4, -10), (4, 12), (4, -19), (-4, 12), (-4, -19), (14, 22), (14, -28),
            (-14, 22), (-14, -28), (4, 32), (4, -38), (-4, 32), (-4, -38)]


def place_labels(ax, xs, ys, texts, fontsize=7, colors=None, avoid=(), **kw):
    """Annotate point i with texts[i] (in colors[i]) at the first offset of
    :data:`_OFFSETS` whose text box overlaps neither a label already placed nor a
    marker (the points and the (x, y) of ``avoid``; boxes estimated from the font
    size; the axes' limits must be final); a label that fits nowhere goes to the
    least crowded offset with a leader line. Returns the annotations."""
    import numpy as np

    ax.figure.canvas.draw()                       # final limits and transforms
    px = ax.figure.dpi / 72.0
    pts = ax.transData.transform(np.column_stack([xs, ys])) if len(xs) else np.zeros((0, 2))
    extra = ax.transData.transform(np.asarray(list(avoid), float).reshape(-1, 2)) if len(avoid) else []
    marks = [(x - 4 * px, y - 4 * px, x + 4 * px, y + 4 * px) for x, y in list(pts) + list(extra)]
    placed, out = [], []

    def box(i, dx, dy):
        w, h = 0.62 * fontsize * len(texts[i]) * px, 1.25 * fontsize * px
        x0 = pts[i][0] + dx * px - (w if dx < 0 else 0.0)
        y0 = pts[i][1] + dy * px
        return (x0, y0, x0 + w, y0 + h)

    frame = ax.bbox.extents

    def outside(b):
        return b[0] < frame[0] or b[1] < frame[1] or b[2] > frame[2] or b[3] > frame[3]

    def hits(b, others):
        return sum(not (b[2] <= o[0] or o[2] <= b[0] or b[3] <= o[1] or o[3] <= b[1]) for o in others)

    for i in sorted(range(len(texts)), key=lambda i: (pts[i][0], pts[i][1])):
        others = [m for j, m in enumerate(marks) if j != i]
        cost = [hits(b, placed + others) + 2 * outside(b) for b in (box(i, dx, dy) for dx, dy in _OFFSETS)]
        best = int(np.argmin(cost))
        dx, dy = _OFFSETS[best]
        placed.append(box(i, dx, dy))
        out.append(ax.annotate(texts[i], (xs[i], ys[i]), textcoords="offset points", xytext=(dx, dy),
                               fontsize=fontsize, ha="right" if dx < 0 else "left", va="bottom",
                               color=colors[i] if colors else None,
                               arrowprops=({"arrowstyle": "-", "lw": 0.5, "color": "gray"}
                                           if cost[best] or best >= 4 else None),
                               **kw))
    return out


def plot_curve(res, path, budgets=None, title=None):
    """Top-1 flips (% of the check images: counted, and expected, the judged value)
    vs the speed-up over fp32 (the median of per-round ratios, each round timing
    the candidate and fp32 back to back; never absolute img/s taken at different
    moments), one point per timed candidate, labelled k+j."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = res.flavours.get("int8-cpu")
    n = res.check["images"]
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=110)
    steps = sorted((s for s in (r.steps if r else []) if s.speedup), key=lambda s: s.speedup)
    xs = [s.speedup for s in steps]
    ax.plot(xs, [100.0 * s.expected / n for s in steps], "o", label="expected flips (what the budget holds)")
    ax.plot(xs, [s.flip_pct for s in steps], "x", color="gray", label="counted flips")
    if r is not None and r.met and r.speedup:
        ax.plot([r.speedup], [100.0 * r.expected_flips / n], "r*", ms=14,
                label=f"chosen: {r.prefix}+{r.suffix} in float, x{r.speedup:.2f}")
    ax.axvline(1.0, color="gray", ls=":", label="fp32 (x1)")
    for b in budgets or ([r.budget_flips * 100.0 / n] if r else []):
        ax.axhline(b, color="r", ls="--", lw=0.8)
    ax.set_xlabel("ONNX Runtime CPU speed-up vs fp32 (batch 8; fp32 timed interleaved with each candidate)")
    ax.set_ylabel(f"top-1 flips vs fp32, % of {n} check images")
    ax.set_title(title or "int8-cpu candidates: k+j = first k + last j layers kept in float", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    place_labels(ax, xs, [100.0 * s.expected / n for s in steps], [f"{s.k}+{s.j}" for s in steps])
    fig.savefig(path, format="png")
    plt.close(fig)


def write_models(res, paths, log=None):
    """Write every flavour of ``res`` (met ones only) to ``paths[flavour]``, each
    with its report (and the PNG beside the timed flavour) -> {flavour: path}."""
    import onnx

    from ..fileio import json_text, transaction
    from ..onnx_fix import set_metadata

    out = {}
    for fl, r in res.flavours.items():
        if not r.met:
            continue
        model = r.candidates.model_for(r.prefix, r.suffix)
        set_metadata(model, {BUDGET_KEY: json.dumps(summary(res, fl), sort_keys=True)})
        try:
            onnx.checker.check_model(model)
        except Exception as e:  # our own rewrite produced an invalid model: a bug
            raise RuntimeError(f"internal error: budget model fails onnx.checker: {e}") from e
        dst = paths[fl]
        with transaction(dst) as tx:
            onnx.save(model, tx.tmp)
            with open(tx.add(".budget.json"), "w", encoding="utf-8") as f:
                f.write(json_text(report(res, fl)))
            if fl == "int8-cpu":
                plot_curve(res, tx.add(".budget.png"))
            else:
                tx.drop(".budget.png")
            tx.commit()
        out[fl] = dst
        if log:
            log(f"{fl}: {r.k} layer(s) in float, {r.flips}/{res.check['images']} flips (expected {r.expected_flips})"
                + (f", {r.img_s:.0f} img/s = {r.speedup:.2f}x fp32 ({res.fp32_img_s:.0f}, timed interleaved)"
                   if r.img_s and res.fp32_img_s and r.speedup else "")
                + f" -> {dst}")
    return out
