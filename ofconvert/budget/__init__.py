"""int8 / fp16 to a flip budget: keep layers in float until the model's top-1
predictions differ from the fp32 model's on at most N check images.

The check set (:mod:`.data`: separate from calibration and evaluation images;
default a split of the calibration set) first chooses the calibration (int8:
fewest all-int8 flips among the methods given). The default strategy
(``"contiguous"``, :func:`.search.contiguous_search`) keeps a run of layers
(:func:`ofconvert.precision.qdq_layers`, graph order) from the input and/or one
before the output in float -- at most two int8/float boundaries, what ONNX
Runtime CPU runs fastest -- and picks the fastest (prefix, suffix) meeting the
budget, flips and speed (timed alternately with fp32) measured. ``"ranked"``:
layers scored by what keeping each alone in float does on the check set, ordered
greedily, flips fixed per speed lost (:mod:`.sensitivity`), the first k kept. :mod:`.report` writes the models with their
``.budget.json`` report (and the curve as PNG), atomically. See docs/precision.md
and docs/budget.md.
"""
import dataclasses
import json
import re
import time
import types
from typing import Dict, List, Optional

import numpy as np

from ..errors import OfconvertError
from . import data as D
from . import judge as J
from .search import SUFFIXES, CandidateJudge, SpeedMeter, Step, contiguous_search, search, steps_list
from .sensitivity import MODES, Effect, build

__all__ = ["BudgetOptions", "BudgetResult", "FlavourResult", "parse_budget", "quantize_to_budget",
           "BudgetNotMetError", "Step", "MODES", "STRATEGIES", "Effect", "SpeedMeter", "require_met", "choose"]

#: "contiguous": float prefix and/or suffix (default); "ranked": the first k of the sensitivity ranking
STRATEGIES = ("contiguous", "ranked")


class BudgetNotMetError(OfconvertError):
    """No candidate with at least one layer still quantized meets the budget."""


_BUDGET_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(%?)\s*$")


def parse_budget(value, n_check=None):
    """``"1%"`` / ``"0.5%"`` (of the check images) or ``"13"`` / ``13`` (images) ->
    the number of flips allowed (with ``n_check``; a percentage rounds down), or,
    without ``n_check``, only validates. OfconvertError on anything else."""
    m = _BUDGET_RE.match(str(value)) if not isinstance(value, bool) else None
    if m is None:
        raise OfconvertError(f"--max-flips must be a percentage of the check images (e.g. 1%) or a number of "
                             f"images (e.g. 13), got {value!r}")
    x, pct = float(m.group(1)), bool(m.group(2))
    if pct and x >= 100:
        raise OfconvertError(f"--max-flips {value}: a percentage must be below 100 %")
    if not pct and x != int(x):
        raise OfconvertError(f"--max-flips {value}: a number of images must be whole (or add %)")
    if n_check is None:
        return None
    return int(x * n_check / 100.0 + 1e-9) if pct else int(x)


@dataclasses.dataclass(frozen=True)
class BudgetOptions:
    strategy: str = "contiguous"        # see STRATEGIES
    suffixes: tuple = SUFFIXES          # float suffix lengths tried by the contiguous search
    sensitivity_mode: str = "flips"     # see .sensitivity.MODES (strategy "ranked")
    sensitivity_images: int = 64        # check images scoring each layer in "kl" mode ("flips": all)
    threads: int = 2                    # ONNX Runtime intra-op threads (sensitivity, checks, speed)
    speed_batch: int = 8
    speed_rounds: int = 5               # fp32 / candidate timing rounds, alternated (medians)
    speed_run_s: float = 0.3            # each timing run lasts at least this
    speed_backend: str = "ort-cpu"      # what times the int8-cpu candidates: "ort-cpu" or "openvino"
    check_fraction: float = 0.5         # share of --calib used as check set when no --check-data
    decode_workers: Optional[int] = None


@dataclasses.dataclass
class FlavourResult:
    flavour: str                        # "int8" (TensorRT Q/DQ), "int8-cpu" or "fp16"
    budget_flips: int
    met: bool
    k: Optional[int]                    # layers kept in float (prefix + suffix)
    float_layers: List[dict]            # [{layer, nodes, sensitivity, rank}]
    flips: Optional[int]
    img_s: Optional[float]
    steps: List[Step]
    speed_note: str = ""
    speedup: Optional[float] = None     # img_s / fp32 img/s, timed interleaved
    prefix: Optional[int] = None        # the first ``prefix`` layers of the order in float
    suffix: int = 0                     # and the last ``suffix`` of the graph
    expected_flips: Optional[float] = None   # what the budget holds (.judge.expected_flips)
    #: the search's CandidateJudge (builds the chosen model: ``model_for(prefix, suffix)``); not reported
    candidates: object = dataclasses.field(default=None, repr=False, compare=False)

    def to_dict(self):
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "candidates"}
        d["float_layers"] = [dict(x) for x in self.float_layers]
        d["steps"] = [s.to_dict() if hasattr(s, "to_dict") else dataclasses.asdict(s) for s in self.steps]
        return d


@dataclasses.dataclass
class BudgetResult:
    model: str
    precision: str
    max_flips: str
    check: dict                         # images, source, skipped, overlap
    fp32_img_s: Optional[float]
    sensitivity: Dict[str, dict]        # layer -> Effect.to_dict(), in the search's order
    sensitivity_mode: str
    flavours: Dict[str, FlavourResult]
    layers: Dict[str, List[str]]
    search_s: float = 0.0
    sensitivity_s: float = 0.0
    calibration: Optional[dict] = None  # {"chosen": method, "flips"/"expected_flips": {method: all-int8 on check},
    #                                     "cache": {"method", "file", "sha256"} (report.calibration_cache)}
    strategy: str = "contiguous"
    phases_s: Dict[str, float] = dataclasses.field(default_factory=dict)   # seconds per phase, in order
    speed_backend: str = "ort-cpu"      # what timed the candidates (BudgetOptions.speed_backend)

    def to_dict(self):
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "flavours"}
        d = json.loads(json.dumps(d, default=str))   # a deep copy of plain values
        d["flavours"] = {k: v.to_dict() for k, v in self.flavours.items()}
        return d


_FLAVOURS = {"int8": ("int8", "trt"), "int8-cpu": ("int8", "cpu"), "fp16": ("fp16", None)}
_NO_SPEED = {"int8": "TensorRT Q/DQ flavour: flips measured with ONNX Runtime CPU executing its Q/DQ graph; "
                     "its speed only means something on a GPU (TensorRT), not measured here",
             "fp16": "fp16 is for the GPU: flips measured with ONNX Runtime CPU (fp16 weights/activations, "
                     "fp32 where the CPU has no fp16 kernel); CPU speed of fp16 is meaningless, not measured"}


def _scale_sets(scales):
    """``scales`` is {tensor: scale} or {method: {tensor: scale}} -> {method: scales}."""
    if scales and all(isinstance(v, dict) for v in scales.values()):
        return dict(scales)
    return {"given": scales}


def _unpack(scales, means):
    """A CalibrationResult (or {method: CalibrationResult}) given as ``scales``
    brings its own per-channel means: -> (scales as {..}, means)."""
    if hasattr(scales, "scales"):
        return scales.scales, means if means is not None else scales.means
    if isinstance(scales, dict) and scales and all(hasattr(v, "scales") for v in scales.values()):
        found = next((v.means for v in scales.values() if v.means), None)
        return {m: v.scales for m, v in scales.items()}, means if means is not None else found
    return scales, means


def quantize_to_budget(fp32_onnx, check_images, max_flips, precision="int8", scales=None,
                       flavours=None, preprocess=None, options: BudgetOptions = BudgetOptions(),
                       check_source=None, log=None, means=None) -> BudgetResult:
    """Search, for each flavour (``"int8-cpu"``, ``"int8"`` (TensorRT Q/DQ) for int8;
    ``"fp16"``), the fewest layers to keep in float so that top-1 flips vs the fp32
    model on ``check_images`` (a list of image paths) stay <= ``max_flips``
    ("1%" or a count). ``scales``: calibration scales (int8), {tensor: scale}, or
    {method: {tensor: scale}} to let the check set choose the calibration, or the
    ``calibrate(...)`` result(s) themselves (which bring their means) (fewest
    all-int8 expected flips); ``means``: the calibration's per-channel means
    (``calibrate(...).means``, bias correction). The budget holds the expected
    flips on the check set (:mod:`.judge`); the flip counts are reported beside
    them. Returns the result; :func:`ofconvert.budget.report.write_models`
    writes the models and reports; :func:`require_met` raises BudgetNotMetError
    when a flavour missed the budget."""
    t0 = time.perf_counter()
    given = _given_caches(scales)
    scales, means = _check_args(precision, scales, means, options, max_flips)
    flavours = list(flavours or (("int8-cpu", "int8") if precision == "int8" else ("fp16",)))
    log = log or (lambda *_: None)
    phases = _Phases()
    ctx = _check_set(fp32_onnx, check_images, max_flips, flavours, preprocess, options, log)
    phases.done("check_set")   # decoding (or the decoded-image cache) and the fp32 logits
    scales, base, calib = _calibration_choice(ctx, precision, scales, means, options, log)
    if calib is not None:
        calib["cache"] = _cache_of(fp32_onnx, scales, calib["chosen"], given)
    phases.done("calibration_choice")
    # the images whose top-1 margin moves most under int8 first: a failing candidate's
    # expected-flips lower bound then crosses the budget after fewer images
    _most_moved_first(ctx, base)
    evs, ranked = {}, options.strategy == "ranked"
    for fl in flavours:
        prec, tgt = _FLAVOURS[fl]
        evs[fl] = ev = CandidateJudge(ctx.model, ctx.layers, list(ctx.layers), prec, scales, tgt, ctx.images, ctx.ref,
                                 options.threads, speed=ctx.meter if fl == "int8-cpu" else None, log=log,
                                 time_all=ranked, means=means)
        if tgt == ctx.target or prec == "fp16":
            ev.seed(0, 0, base)   # the all-quantized model of the chosen calibration: run already
        ev.stop_above = ctx.budget
        ev.timed(0)
    phases.done("all_quantized")
    order, effects = list(ctx.layers), {}
    if ranked and any(ev.steps[0].judged > ctx.budget for ev in evs.values()):
        order, effects = _ranking(ctx, evs, precision, scales, base, means, options, log)
    sens_s = phases.done("sensitivity")
    results = {}
    for fl, ev in evs.items():
        ev.order = order
        results[fl] = _flavour_result(fl, ev, choose(ev, ctx.budget, options), ctx, effects)
        phases.done(f"search_{fl}")
    fp32_ips = evs["int8-cpu"].steps[0].fp32_img_s if "int8-cpu" in evs else None
    res = BudgetResult(str(fp32_onnx), precision, str(max_flips),
                       {"images": len(ctx.images), "skipped": ctx.images.skipped,
                        "source": _source(check_source)},
                       fp32_ips, {n: effects[n].to_dict() for n in order if n in effects},
                       options.sensitivity_mode, results, ctx.layers, round(time.perf_counter() - t0, 1),
                       round(sens_s, 1), calib, options.strategy, phases.times, options.speed_backend)
    return res


def _source(check_source):
    """The check set's source as given, an existing path made absolute."""
    import os

    if not check_source:
        return "list"
    return os.path.abspath(check_source) if os.path.exists(check_source) else str(check_source)


class _Phases:
    """Seconds spent in each phase of a budget search, in order."""

    def __init__(self):
        self.times, self.t = {}, time.perf_counter()

    def done(self, name):
        now = time.perf_counter()
        self.times[name] = round(now - self.t, 1)
        self.t = now
        return self.times[name]


def _check_args(precision, scales, means, options, max_flips):
    if precision not in ("int8", "fp16"):
        raise OfconvertError("--max-flips needs --int8 or --fp16")
    scales, means = _unpack(scales, means)
    if precision == "int8" and not scales:
        raise OfconvertError("int8 to a flip budget needs calibration scales")
    if options.strategy not in STRATEGIES:
        raise OfconvertError(f"unknown search strategy {options.strategy!r}; known: {', '.join(STRATEGIES)}")
    if options.sensitivity_mode not in MODES:
        raise OfconvertError(f"unknown sensitivity mode {options.sensitivity_mode!r}")
    parse_budget(max_flips)
    return scales, means


def _check_set(fp32_onnx, check_images, max_flips, flavours, preprocess, options, log):
    """The fp32 model, the check images, their fp32 logits, the budget in flips, the
    layers, the SpeedMeter (when int8-cpu is searched)."""
    from ..calibration import preprocess_from_model
    from ..onnx_io import load_onnx
    from ..precision import qdq_layers

    model = load_onnx(fp32_onnx)
    preprocess = preprocess or preprocess_from_model(model)
    images = D.ImageSet(check_images, preprocess, options.decode_workers)
    fp32 = D.session(model, options.threads)
    shape = (images.u8.shape[3], images.u8.shape[1], images.u8.shape[2])
    ctx = types.SimpleNamespace(
        model=model, images=images, budget=parse_budget(max_flips, len(images)), ref=D.logits(fp32, images),
        meter=SpeedMeter(fp32, shape, options.speed_batch, options.speed_rounds, options.speed_run_s,
                         backend=options.speed_backend, threads=options.threads)
        if "int8-cpu" in flavours else None, layers=qdq_layers(model),
        target="cpu" if "int8-cpu" in flavours else "trt")   # the sensitivity's (and timed) flavour for int8
    log(f"flip budget {max_flips} = {ctx.budget} of {len(images)} check images; {len(ctx.layers)} layers")
    return ctx


def _calibration_choice(ctx, precision, scales, means, options, log):
    """(scales, all-quantized logits, calibration report): int8 with several
    calibrations: the one with the fewest all-int8 expected flips on the check set."""
    if precision != "int8":
        return scales, D.logits(D.session(build(ctx.model, precision, scales, ctx.target, set()), options.threads),
                                ctx.images), None
    sets, flips, expected, base = _scale_sets(scales), {}, {}, {}
    for m, sc in sets.items():
        base[m] = D.logits(D.session(build(ctx.model, precision, sc, ctx.target, set(), means), options.threads),
                           ctx.images)
        flips[m], expected[m] = J.flips(ctx.ref, base[m]), round(J.expected_flips(ctx.ref, base[m]), 2)
    chosen = min(sets, key=lambda m: (expected[m], flips[m]))
    if len(sets) > 1:
        log(f"calibration chosen on the check set: {chosen} (all-int8 expected flips: "
            + ", ".join(f"{m} {expected[m]} ({flips[m]} counted)" for m in sets) + ")")
    calib = {"chosen": chosen, "flips": flips, "expected_flips": expected, "bias_corrected": bool(means)}
    return sets[chosen], base[chosen], calib


def _most_moved_first(ctx, base):
    """Reorder the check images (and their fp32 logits, and ``base`` in place) by
    decreasing move of the fp32 top-1 margin under the all-quantized model."""
    rows, top, second, _ = J._margins(np.asarray(ctx.ref, np.float64))
    d = np.asarray(base, np.float64) - ctx.ref
    idx = np.argsort(-(d[rows, top] - d[rows, second]) ** 2, kind="stable")
    ctx.images.reorder(idx)
    ctx.ref = np.ascontiguousarray(ctx.ref[idx])
    base[:] = base[idx]


def _ranking(ctx, evs, precision, scales, base, means, options, log):
    """(order, effects) of the "ranked" strategy (:mod:`.sensitivity`)."""
    from .sensitivity import layer_effects, rank

    base_speedup = evs["int8-cpu"].steps[0].speedup if "int8-cpu" in evs else None
    effects = layer_effects(ctx.model, ctx.layers, precision, scales, ctx.target, ctx.images, ctx.ref, base,
                            options.sensitivity_mode, options.threads, options.sensitivity_images,
                            ctx.meter, base_speedup, log, means)
    order = rank(effects, options.sensitivity_mode)
    log("keep in float first: " + ", ".join(
        f"{n} (fixes {len(effects[n].fixes)}, breaks {len(effects[n].breaks)})" for n in order[:5]))
    return order, effects


def _flavour_result(fl, ev, kj, ctx, effects):
    step = ev(*kj) if kj is not None else None
    names = ev.names(*kj) if kj is not None else []
    r = FlavourResult(
        fl, ctx.budget, kj is not None, len(names) if kj is not None else None,
        [{"layer": n, "nodes": ctx.layers[n], "sensitivity": effects[n].to_dict() if n in effects else None,
          "rank": i + 1} for i, n in enumerate(names)],
        step.flips if step else None, step.img_s if step else None, steps_list(ev),
        _NO_SPEED.get(fl if fl != "int8-cpu" else "", ""), step.speedup if step else None,
        kj[0] if kj else None, kj[1] if kj else 0, step.expected if step else None)
    r.candidates = ev
    return r


def _given_caches(scales):
    """{method: cache path} of ``calibrate(...)`` results passed as ``scales``."""
    if hasattr(scales, "cache_path"):
        return {"given": scales.cache_path}
    if isinstance(scales, dict) and scales and all(hasattr(v, "cache_path") for v in scales.values()):
        return {m: v.cache_path for m, v in scales.items()}
    return {}


def _cache_of(fp32_onnx, scales, method, given):
    from .report import calibration_cache

    return calibration_cache(fp32_onnx, scales, method, [given[method]] if method in given else [])


def choose(ev, budget, options: BudgetOptions = BudgetOptions()):
    """(prefix k, suffix j) the strategy picks for ``budget`` flips, or None (unmet);
    all layers in float is the fp32 model, not an answer."""
    if options.strategy == "ranked":
        k = search(ev, budget, len(ev.order) - 1)
        return None if k is None else (k, 0)
    return contiguous_search(ev, budget, options.suffixes)


def require_met(res: BudgetResult):
    """BudgetNotMetError naming the flavours that missed the budget."""
    missed = [f for f, r in res.flavours.items() if not r.met]
    if missed:
        best = {f: min(s.judged for s in res.flavours[f].steps) for f in missed}
        raise BudgetNotMetError(
            f"flip budget {res.max_flips} ({res.flavours[missed[0]].budget_flips} of {res.check['images']} check "
            f"images) cannot be met for {', '.join(missed)} with any layer still quantized (fewest expected flips "
            f"measured: {', '.join(f'{f} {b}' for f, b in best.items())}); raise --max-flips or use the fp32 model")
