"""The budget chart (budget/report.py): x = the interleaved speed-up, not img/s, and
point labels that do not overlap; the bench chart (report.grouped_bars): one colour
per series, no empty slot for an n/a cell, value labels, a log axis."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ofconvert.budget.report import place_labels  # noqa: E402


def _boxes(fig, texts):
    """The text boxes only (an Annotation's own extent includes its leader line)."""
    from matplotlib.text import Text

    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    return [Text.get_window_extent(t, r) for t in texts]


def _overlaps(boxes):
    return [(i, j) for i in range(len(boxes)) for j in range(i + 1, len(boxes)) if boxes[i].overlaps(boxes[j])]


def test_labels_of_clustered_points_do_not_overlap():
    rng = np.random.default_rng(0)
    xs = list(1.7 + rng.uniform(0, 0.4, 14)) + [1.0, 1.01]          # a cluster, as the curve has near x1.8-2.1
    ys = list(0.9 + rng.uniform(0, 0.15, 14)) + [0.3, 0.31]
    texts = [f"{k}+{j}" for k, j in zip(range(16), range(16, 0, -1))]
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=110)
    ax.plot(xs, ys, "o")
    ax.set_xlim(0.9, 2.3)
    ax.set_ylim(0.0, 1.6)
    anns = place_labels(ax, xs, ys, texts)
    assert len(anns) == 16 and not _overlaps(_boxes(fig, anns))
    naive = [ax.annotate(t, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
             for x, y, t in zip(xs, ys, texts)]
    assert _overlaps(_boxes(fig, naive))                             # what the fixed offset did
    plt.close(fig)


def test_budget_curve_is_drawn_against_the_speedup(tmp_path):
    from types import SimpleNamespace

    from ofconvert.budget.report import plot_curve
    from ofconvert.budget.search import Step

    steps = [Step(k, 3, 0.6, 100.0 + k, 1.0, fp32_img_s=50.0 + k, speedup=2.0 - 0.05 * k, j=j, expected=4.5, images=500)
             for k, j in ((0, 1), (2, 1), (2, 2), (6, 1), (9, 0))]
    r = SimpleNamespace(steps=steps, met=True, speedup=1.95, expected_flips=4.5, prefix=2, suffix=1, budget_flips=5)
    res = SimpleNamespace(flavours={"int8-cpu": r}, check={"images": 500})
    seen = {}
    real = plt.Axes.plot

    def spy(self, *a, **k):
        seen.setdefault("x", list(a[0]) if a and hasattr(a[0], "__len__") else a[0])
        return real(self, *a, **k)

    plt.Axes.plot = spy
    try:
        plot_curve(res, str(tmp_path / "c.png"))
    finally:
        plt.Axes.plot = real
    assert sorted(seen["x"]) == sorted(s.speedup for s in steps)      # speed-ups, not img/s
    assert (tmp_path / "c.png").stat().st_size > 5000


def test_grouped_bars_colours_no_gaps_values_log(tmp_path):
    from ofconvert.report import bar_layout, grouped_bars

    panel = {"title": "batch 8", "groups": ["alexnet", "resnet50"],
             "series": [("oneflow fp32", [2.9, 40.0], None), ("ort-cpu fp32", [None, 120.0], None),
                        ("ort-cpu int8", [474.0, None], None), ("ort-cpu fp16", [None, None], None)]}
    bars, width = bar_layout(panel)
    xs = {(k, i): x for k, i, x, _, _ in bars}
    assert len(bars) == 4 and (1, 0) not in xs and (3, 0) not in xs and (3, 1) not in xs   # n/a: no bar
    assert xs[(0, 0)] == -width / 2 and xs[(2, 0)] == width / 2       # two bars centred, no gap where n/a
    assert [t for _, _, _, _, t in bars] == ["2.9", "474", "40", "120"]
    drawn = {}
    import matplotlib.axes

    real_bar, real_scale = matplotlib.axes.Axes.bar, matplotlib.axes.Axes.set_yscale

    def bar(self, x, h, w, **kw):
        drawn.setdefault("colours", []).append(kw["color"])
        return real_bar(self, x, h, w, **kw)

    def scale(self, v, **kw):
        drawn["scale"] = v
        return real_scale(self, v, **kw)

    matplotlib.axes.Axes.bar, matplotlib.axes.Axes.set_yscale = bar, scale
    try:
        grouped_bars(str(tmp_path / "b.png"), [panel], "img/s")
    finally:
        matplotlib.axes.Axes.bar, matplotlib.axes.Axes.set_yscale = real_bar, real_scale
    c = drawn["colours"]
    assert drawn["scale"] == "log" and c[0] == c[2] and len({c[0], c[1], c[3]}) == 3   # one colour per series
    assert (tmp_path / "b.png").stat().st_size > 5000
