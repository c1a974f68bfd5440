"""Writing a budget result: each flavour's model (``<stem>.int8.onnx``,
``.int8-cpu.onnx`` or ``.fp16.onnx``, normal artefacts) with the budget summary
in its metadata (``ofconvert.budget``), a ``<file>.budget.json`` report beside it
and, for the timed flavour, ``<file>.budget.png`` (flips vs img/s), all in one
:func:`ofconvert.fileio.transaction` per model."""
import json

BUDGET_KEY = "ofconvert.budget"
REPORT_FORMAT = "ofconvert-budget/1"


def summary(res, flavour):
    r = res.flavours[flavour]
    return {"max_flips": res.max_flips, "budget_flips": r.budget_flips, "check_images": res.check["images"],
            "flips": r.flips, "expected_flips": r.expected_flips, "float_layers": [x["layer"] for x in r.float_layers],
            "img_s": r.img_s,
            "fp32_img_s": res.fp32_img_s, "speedup": r.speedup, "float_prefix": r.prefix, "float_suffix": r.suffix,
            "calibration": (res.calibration or {}).get("chosen"),
            "bias_corrected": bool((res.calibration or {}).get("bias_corrected"))}


def report(res, flavour):
    d = res.to_dict()
    d["format"] = REPORT_FORMAT
    d["flavour"] = flavour
    d["this"] = summary(res, flavour)
    return d


def plot_curve(res, path, budgets=None, title=None):
    """flips (% of check images) vs ONNX Runtime CPU img/s, one point per measured step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = res.flavours.get("int8-cpu")
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    if r is not None:
        steps = sorted((s for s in r.steps if s.img_s), key=lambda s: s.img_s)
        ax.plot([s.img_s for s in steps], [s.flip_pct for s in steps], "o", label="int8-cpu candidates (timed)")
        for s in steps:
            ax.annotate(f"{s.k}+{s.j}" + (f" {s.speedup:.2f}x" if s.speedup else ""), (s.img_s, s.flip_pct),
                        textcoords="offset points", xytext=(4, 4), fontsize=7)
        if r.met:
            ax.plot([r.img_s], [100.0 * r.flips / res.check["images"]], "r*", ms=14, label=f"chosen ({r.prefix}+{r.suffix} in float)")
    if res.fp32_img_s:
        ax.axvline(res.fp32_img_s, color="gray", ls=":", label=f"fp32 {res.fp32_img_s:.0f} img/s")
    for b in budgets or [r.budget_flips * 100.0 / res.check["images"]] if r else []:
        ax.axhline(b, color="r", ls="--", lw=0.8)
    ax.set_xlabel("ONNX Runtime CPU img/s (batch 8)")
    ax.set_ylabel(f"top-1 flips vs fp32, % of {res.check['images']} check images")
    ax.set_title(title or "flips vs speed: k+j = float prefix+suffix (x = speed-up vs fp32, timed interleaved)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
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
        model = r._evaluator.model_for(r.prefix, r.suffix)
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
