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
greedily, flips fixed per speed lost (:mod:`.sensitivity`), the first k kept.
:mod:`.report` writes the models with their ``.budget.json`` report (and the
curve as PNG), atomically. See docs/precision.md and docs/budget.md.
"""
import dataclasses
import json
import re
import time
import types
from typing import Dict, List, Optional

import numpy as np

from ..artifacts.names import Flavour
from ..errors import OfconvertError
from . import data as D
from . import judge as J
from .search import SUFFIXES, CandidateJudge, SpeedMeter, Step, contiguous_search, search, steps_list
from .sensitivity import MODES, Effect, Quantization, flip_effects, kl_effects, rank

__all__ = ["BudgetOptions", "BudgetResult", "FlavourResult", "CalibrationScales", "parse_budget",
           "quantize_to_budget", "BudgetNotMetError", "Step", "MODES", "STRATEGIES", "Effect", "SpeedMeter",
           "require_met", "choose"]

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
    decode_workers: Optional[int] = None
    check_source: Optional[str] = None  # where the check images came from (report's check.source; None: "list")


@dataclasses.dataclass(frozen=True)
class CalibrationScales:
    """Calibration scales with the per-channel means of the calibration images
    (bias correction), for ``quantize_to_budget(scales=...)`` where they do not
    come as ``calibrate(...)`` results (which bring their means)."""

    scales: dict                        # {tensor: scale} or {method: {tensor: scale}} (the check set chooses)
    means: Optional[dict] = None        # {tensor: per-channel mean} (calibrate(...).means)


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


#: the flavours a budget search makes (artifacts.Flavour: its precision and Q/DQ target)
BUDGET_FLAVOURS = ("int8-cpu", "int8", "fp16")
_NO_SPEED = {"int8": "TensorRT Q/DQ flavour: flips measured with ONNX Runtime CPU executing its Q/DQ graph; "
                     "its speed only means something on a GPU (TensorRT), not measured here",
             "fp16": "fp16 is for the GPU: flips measured with ONNX Runtime CPU (fp16 weights/activations, "
                     "fp32 where the CPU has no fp16 kernel); CPU speed of fp16 is meaningless, not measured"}


def _scale_sets(scales):
    """``scales`` is {tensor: scale} or {method: {tensor: scale}} -> {method: scales}."""
    if scales and all(isinstance(v, dict) for v in scales.values()):
        return dict(scales)
    return {"given": scales}


def _unpack(scales):
    """(scales as {..}, per-channel means or None): ``calibrate(...)`` results (or
    {method: result}) and :class:`CalibrationScales` bring their means."""
    if hasattr(scales, "scales"):
        return scales.scales, scales.means
    if isinstance(scales, dict) and scales and all(hasattr(v, "scales") for v in scales.values()):
        return {m: v.scales for m, v in scales.items()}, next((v.means for v in scales.values() if v.means), None)
    return scales, None


def _precision(flavours):
    """"int8" or "fp16": what ``flavours`` are made of; OfconvertError for unknown or mixed ones."""
    unknown = [f for f in flavours if f not in BUDGET_FLAVOURS]
    if unknown:
        raise OfconvertError(f"unknown budget flavour(s) {', '.join(map(repr, unknown))}; "
                             f"known: {', '.join(BUDGET_FLAVOURS)}")
    precisions = {Flavour(f).precision for f in flavours}
    if len(precisions) > 1:
        raise OfconvertError("int8 and fp16 flavours are searched in separate runs, got " + ", ".join(flavours))
    return precisions.pop()


def quantize_to_budget(fp32_onnx, check_images, max_flips, *, scales=None, flavours=None, preprocess=None,
                       options: BudgetOptions = BudgetOptions(), log=None) -> BudgetResult:
    """Search, for each of ``flavours`` (default ``("int8-cpu", "int8")``: int8 for
    ONNX Runtime CPU and TensorRT Q/DQ; or ``("fp16",)``), the fewest layers to
    keep in float so that top-1 flips vs the fp32 model on ``check_images`` (a
    list of image paths, decoded as ``preprocess`` says, default the model's) stay
    <= ``max_flips`` ("1%" or a count). ``scales`` (int8): calibration scales,
    {tensor: scale}, or {method: {tensor: scale}} to let the check set choose the
    calibration (fewest all-int8 expected flips), or the ``calibrate(...)``
    result(s) themselves or a :class:`CalibrationScales`, which bring the
    calibration's per-channel means (bias correction). The budget holds the
    expected flips on the check set (:mod:`.judge`); the flip counts are reported
    beside them. Returns the result; :func:`ofconvert.budget.report.write_models`
    writes the models and reports; :func:`require_met` raises BudgetNotMetError
    when a flavour missed the budget."""
    t0 = time.perf_counter()
    flavours = list(flavours or ("int8-cpu", "int8"))
    precision = _precision(flavours)
    given = _given_caches(scales)
    scales, means = _check_args(precision, scales, options, max_flips)
    log = log or (lambda *_: None)
    phases = _Phases()
    ctx = _check_set(fp32_onnx, check_images, max_flips, flavours, preprocess, options, log)
    phases.done("check_set")   # decoding (or the decoded-image cache) and the fp32 logits
    quant, base, calib = _calibration_choice(ctx, precision, scales, means, log)
    if calib is not None:
        calib["cache"] = _cache_of(fp32_onnx, quant.scales, calib["chosen"], given)
    phases.done("calibration_choice")
    # the images whose top-1 margin moves most under int8 first: a failing candidate's
    # expected-flips lower bound then crosses the budget after fewer images
    _most_moved_first(ctx.check, base)
    ranked = options.strategy == "ranked"
    judges = _judges(ctx, quant, base, flavours, ranked, log)
    phases.done("all_quantized")
    order, effects = list(ctx.layers), {}
    if ranked and any(judge.steps[0].judged > ctx.budget for judge in judges.values()):
        order, effects = _ranking(ctx, quant, judges, base, options, log)
    sens_s = phases.done("sensitivity")
    results = {}
    for fl, judge in judges.items():
        judge.order = order
        results[fl] = _flavour_result(fl, judge, choose(judge, ctx.budget, options), ctx, effects)
        phases.done(f"search_{fl}")
    return BudgetResult(
        model=str(fp32_onnx), precision=precision, max_flips=str(max_flips),
        check={"images": len(ctx.check.images), "skipped": ctx.check.images.skipped,
               "source": _source(options.check_source)},
        fp32_img_s=judges["int8-cpu"].steps[0].fp32_img_s if "int8-cpu" in judges else None,
        sensitivity={n: effects[n].to_dict() for n in order if n in effects},
        sensitivity_mode=options.sensitivity_mode, flavours=results, layers=ctx.layers,
        search_s=round(time.perf_counter() - t0, 1), sensitivity_s=round(sens_s, 1), calibration=calib,
        strategy=options.strategy, phases_s=phases.times, speed_backend=options.speed_backend)


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


def _check_args(precision, scales, options, max_flips):
    """-> (scales, means) (:func:`_unpack`); OfconvertError for what cannot work."""
    scales, means = _unpack(scales)
    if precision == "int8" and not scales:
        raise OfconvertError("int8 to a flip budget needs calibration scales")
    if options.strategy not in STRATEGIES:
        raise OfconvertError(f"unknown search strategy {options.strategy!r}; known: {', '.join(STRATEGIES)}")
    if options.sensitivity_mode not in MODES:
        raise OfconvertError(f"unknown sensitivity mode {options.sensitivity_mode!r}")
    parse_budget(max_flips)
    return scales, means


def _check_set(fp32_onnx, check_images, max_flips, flavours, preprocess, options, log):
    """The fp32 model, its layers, the check set (:class:`.data.CheckSet`; timed
    when int8-cpu is searched), the budget in flips and the int8 target the
    sensitivity measures (and the calibration choice runs)."""
    from ..calibration import preprocess_from_model
    from ..onnx_io import load_onnx
    from ..precision import qdq_layers

    model = load_onnx(fp32_onnx)
    images = D.ImageSet(check_images, preprocess or preprocess_from_model(model), options.decode_workers)
    fp32 = D.session(model, options.threads)
    timed = "int8-cpu" in flavours
    check = D.CheckSet(images=images, ref=D.logits(fp32, images), threads=options.threads,
                       meter=_speed_meter(fp32, images, options) if timed else None)
    ctx = types.SimpleNamespace(model=model, layers=qdq_layers(model), check=check,
                                budget=parse_budget(max_flips, len(images)),
                                target="cpu" if timed else Flavour(flavours[0]).target)   # fp16: None
    log(f"flip budget {max_flips} = {ctx.budget} of {len(images)} check images; {len(ctx.layers)} layers")
    return ctx


def _speed_meter(fp32, images, options):
    """The SpeedMeter timing candidates against the fp32 session ``fp32``."""
    shape = (images.u8.shape[3], images.u8.shape[1], images.u8.shape[2])   # NHWC uint8 -> CHW
    return SpeedMeter(fp32, shape, batch=options.speed_batch, rounds=options.speed_rounds,
                      run_s=options.speed_run_s, backend=options.speed_backend, threads=options.threads)


def _calibration_choice(ctx, precision, scales, means, log):
    """(the chosen :class:`Quantization` at the sensitivity's target, its
    all-quantized logits, the calibration report): int8 with several calibrations:
    the one with the fewest all-int8 expected flips on the check set."""
    if precision != "int8":
        quant = Quantization(precision, scales, ctx.target)
        return quant, ctx.check.logits(quant.build(ctx.model)), None
    sets = {m: Quantization(precision, sc, ctx.target, means) for m, sc in _scale_sets(scales).items()}
    flips, expected, base, ref = {}, {}, {}, ctx.check.ref
    for m, quant in sets.items():
        base[m] = ctx.check.logits(quant.build(ctx.model))
        flips[m], expected[m] = J.flips(ref, base[m]), round(J.expected_flips(ctx.check.reference, base[m]), 2)
    chosen = min(sets, key=lambda m: (expected[m], flips[m]))
    if len(sets) > 1:
        log(f"calibration chosen on the check set: {chosen} (all-int8 expected flips: "
            + ", ".join(f"{m} {expected[m]} ({flips[m]} counted)" for m in sets) + ")")
    calib = {"chosen": chosen, "flips": flips, "expected_flips": expected, "bias_corrected": bool(means)}
    return sets[chosen], base[chosen], calib


def _most_moved_first(check, base):
    """Reorder the check set (and ``base``, the all-quantized logits, in place) by
    decreasing move of the fp32 top-1 margin under the all-quantized model."""
    r = check.reference
    d = np.asarray(base, np.float64) - r.logits
    idx = np.argsort(-(d[r.rows, r.top] - d[r.rows, r.second]) ** 2, kind="stable")
    check.reorder(idx)
    base[:] = base[idx]


def _judges(ctx, quant, base, flavours, time_all, log):
    """{flavour: CandidateJudge}, each with its all-quantized candidate judged (and,
    int8-cpu, timed); ``quant``: the chosen calibration, ``base`` its logits."""
    judges = {}
    for fl in flavours:
        target = Flavour(fl).target
        check = ctx.check if fl == "int8-cpu" else ctx.check.untimed()
        judges[fl] = judge = CandidateJudge(ctx.model, ctx.layers, dataclasses.replace(quant, target=target), check,
                                            log=log, time_all=time_all)
        if target == quant.target:
            judge.seed(0, 0, base)   # the all-quantized model of the chosen calibration: run already
        judge.stop_above = ctx.budget
        judge.timed(0)
    return judges


def _ranking(ctx, quant, judges, base, options, log):
    """(order, effects) of the "ranked" strategy (:mod:`.sensitivity`), measured
    with ``quant`` (the sensitivity's target) against ``base``, its logits."""
    if options.sensitivity_mode == "kl":
        effects = kl_effects(ctx.model, ctx.layers, quant, ctx.check, options.sensitivity_images, log)
    else:
        base_speedup = judges["int8-cpu"].steps[0].speedup if "int8-cpu" in judges else None
        effects = flip_effects(ctx.model, ctx.layers, quant, ctx.check, base, base_speedup, log)
    order = rank(effects, options.sensitivity_mode)
    log("keep in float first: " + ", ".join(
        f"{n} (fixes {len(effects[n].fixes)}, breaks {len(effects[n].breaks)})" for n in order[:5]))
    return order, effects


def _flavour_result(fl, judge, kj, ctx, effects):
    """The flavour's result: ``kj``, the candidate (prefix k, suffix j) chosen, or
    None (the budget is not met)."""
    met = kj is not None
    step, names = (judge(*kj), judge.names(*kj)) if met else (None, [])
    return FlavourResult(
        flavour=fl, budget_flips=ctx.budget, met=met, k=len(names) if met else None,
        float_layers=[{"layer": n, "nodes": ctx.layers[n],
                       "sensitivity": effects[n].to_dict() if n in effects else None, "rank": i + 1}
                      for i, n in enumerate(names)],
        flips=step.flips if met else None, img_s=step.img_s if met else None, steps=steps_list(judge),
        speed_note=_NO_SPEED.get(fl, ""), speedup=step.speedup if met else None,
        prefix=kj[0] if met else None, suffix=kj[1] if met else 0, expected_flips=step.expected if met else None,
        candidates=judge)


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
