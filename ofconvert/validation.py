"""Validation of an exported ONNX against its OneFlow module (Optimum style), for
any model: any number of outputs, any shapes.

For each input set (real images from the shared datasets when the input is an
RGB image, seeded random input always) and batch size (1, 4, 5: never a traced
batch, so a batch baked into the graph is caught), and for each output:
shape, max absolute error, error relative to the output's scale (random-weight
inception_v3 produces logits near 1e12, so absolute tolerances are
meaningless), cosine similarity; top-1 / top-5 agreement only for 2-D
classifier outputs ``(N, K)``; integer outputs must be equal. Printed as a
checklist; typed errors (ShapeError, AtolError, TopKError) are raised after the
whole checklist is printed; the caller decides the policy.
"""
import dataclasses
import os
from typing import List, Optional

import numpy as np

from .config import ModelConfig
from .data import load_batch, real_images
from .errors import AtolError, DataError, NondeterministicError, OfconvertError, ShapeError, TopKError
from .export_io import split_shapes
from .export_options import DEFAULT_RTOL, ValidateOptions
from .options import options_with


@dataclasses.dataclass
class OutputCheck:
    inputs: str              # "real" or "random"
    batch: int
    shape_ok: bool
    max_abs_err: float
    max_rel_err: float       # relative to max |reference|
    cosine: float
    top1_agree: Optional[float]      # None: not a 2-D classifier output
    top5_agree: Optional[float]
    unexplained_top1_flips: int   # flips where the reference margin exceeds 2x the error
    passed: bool
    output: str = "logits"
    ref_shape: tuple = ()
    onnx_shape: tuple = ()
    # set when the fp32 check failed and was judged against OneFlow in float64:
    # the fp32 rounding spread (OneFlow fp32, one-ulp input moves, ONNX Runtime
    # without graph optimizations) and the ONNX error, relative to the fp64 scale
    fp32_rounding_rel_err: Optional[float] = None
    onnx_vs_fp64_rel_err: Optional[float] = None
    declared_shape: Optional[tuple] = None    # set when ONNX Runtime's shape contradicts the declared one

    @property
    def ill_conditioned(self):
        """Accepted only through the fp32-rounding allowance (it failed the plain check)."""
        return self.passed and self.fp32_rounding_rel_err is not None


    def line(self):
        mark = "~" if self.ill_conditioned else "✓" if self.passed else "✗"
        head = f"  [{mark}] {self.output} {self.inputs:6s} batch {self.batch:2d}: "
        if not self.shape_ok and self.declared_shape is not None:
            return head + f"shape {list(self.onnx_shape)} contradicts the declared {list(self.declared_shape)}"
        if not self.shape_ok:
            return head + f"shape {list(self.onnx_shape)} (OneFlow: {list(self.ref_shape)})"
        s = (head + f"max abs err {self.max_abs_err:.3e}, rel err {self.max_rel_err:.3e}, "
             f"cosine {self.cosine:.7f}")
        if self.top1_agree is not None:
            s += f", top-1 agree {self.top1_agree:.3f}, top-5 agree {self.top5_agree:.3f}"
        if self.fp32_rounding_rel_err is not None:
            s += (f"; {'ill-conditioned: ' if self.passed else ''}fp32 itself differs by "
                  f"{self.fp32_rounding_rel_err:.2e} of the scale (OneFlow fp32 vs float64, one-ulp input moves, "
                  f"ONNX Runtime unoptimized); ONNX vs OneFlow float64 {self.onnx_vs_fp64_rel_err:.2e}")
        return s


@dataclasses.dataclass
class ValidationReport:
    model: str
    onnx_path: str
    rtol: float
    checks: List[OutputCheck]
    real_images: List[str]
    note: str = ""

    @property
    def passed(self):
        return all(c.passed for c in self.checks)

    @property
    def ill_conditioned(self):
        """Checks accepted only through the fp32-rounding allowance."""
        return sum(c.ill_conditioned for c in self.checks)

    def to_dict(self):
        d = dataclasses.asdict(self)
        d["passed"] = self.passed
        d["ill_conditioned_checks"] = self.ill_conditioned
        for c, dc in zip(self.checks, d["checks"]):
            dc["ill_conditioned"] = c.ill_conditioned
        d["real_images"] = [os.path.basename(p) for p in self.real_images]
        return d


def _cosine(ref, out):
    a, b = ref.reshape(ref.shape[0], -1), out.reshape(out.shape[0], -1)
    num = np.sum(a * b, 1)
    den = np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-300)
    both_zero = (np.linalg.norm(a, axis=1) == 0) & (np.linalg.norm(b, axis=1) == 0)
    return float(np.mean(np.where(both_zero, 1.0, num / den)))


def compare(ref, out, inputs, batch, rtol=DEFAULT_RTOL, output="logits"):
    """Compare one batch of one reference output with the ONNX output -> OutputCheck."""
    ref_a, out_a = np.asarray(ref), np.asarray(out)
    if ref_a.shape != out_a.shape:
        return OutputCheck(inputs, batch, False, float("inf"), float("inf"), 0.0, None, None, 0, False,
                           output, tuple(ref_a.shape), tuple(out_a.shape))
    shapes = (tuple(ref_a.shape), tuple(out_a.shape))
    if ref_a.dtype.kind in "iub" and out_a.dtype.kind in "iub":
        ok = bool(np.array_equal(ref_a, out_a))
        bad = float(np.mean(ref_a != out_a)) if ref_a.size else 0.0
        return OutputCheck(inputs, batch, True, bad, bad, 1.0 if ok else 0.0, None, None, 0, ok, output, *shapes)
    ref64, out64 = ref_a.astype(np.float64), out_a.astype(np.float64)
    if ref64.size == 0:
        return OutputCheck(inputs, batch, True, 0.0, 0.0, 1.0, None, None, 0, True, output, *shapes)
    if not np.all(np.isfinite(out64) == np.isfinite(ref64)):
        return OutputCheck(inputs, batch, True, float("inf"), float("inf"), 0.0, None, None, 0, False, output, *shapes)
    fin = np.isfinite(ref64)
    err = np.where(fin, np.abs(ref64 - out64), 0.0)
    scale = max(float(np.abs(np.where(fin, ref64, 0.0)).max()), 1e-12)
    max_abs = float(err.max())
    rel = max_abs / scale
    cos = _cosine(np.where(fin, ref64, 0.0), np.where(fin, out64, 0.0)) if ref64.ndim >= 1 else 1.0
    top1 = top5 = None
    flips = 0
    if ref64.ndim == 2 and ref64.shape[1] > 1:
        r1, o1 = ref64.argmax(1), out64.argmax(1)
        top1 = float(np.mean(r1 == o1))
        k = min(5, ref64.shape[1])
        r5 = np.argsort(-ref64, 1)[:, :k]
        o5 = np.argsort(-out64, 1)[:, :k]
        top5 = float(np.mean([set(a) == set(b) for a, b in zip(r5, o5)]))
        srt = np.sort(ref64, 1)
        margin = srt[:, -1] - srt[:, -2]
        flips = int(np.sum((r1 != o1) & (margin > 2 * max_abs)))
    passed = rel <= rtol and flips == 0
    return OutputCheck(inputs, batch, True, max_abs, rel, cos, top1, top5, flips, passed, output, *shapes,
                       )


ILL_CONDITIONED_FACTOR = 2.0   # ONNX error may be up to 2x OneFlow's own fp32 rounding error


def _judge_against_float64(module, inputs, refs, onnx_outs, names, checks, rtol, onnx_path=None):
    """A model can be so ill-conditioned (random weights, activations of 1e4 that
    BatchNorm subtracts back to O(1)) that OneFlow's own float32 result is off
    by more than the tolerance: measured on random-weight efficientnet_b0 with
    real images, OneFlow fp32 vs fp64 differs by 15 % of the output scale. For a
    check that failed on values, run a float64 copy of the module: the check
    passes only if the ONNX error against float64 is within
    ``ILL_CONDITIONED_FACTOR`` x OneFlow's own float32 error (and so could not be
    told from rounding); a conversion bug is far larger than that. OneFlow's own
    error is the largest of its plain float32 result and of its results for the
    input moved by one float32 rounding step (``_perturbed_outputs``): one sample
    of rounding can cancel by luck. OneFlow's fp32 and fp64 kernels also share
    their accumulation order, so their errors are correlated; the ONNX model's
    own rounding spread is measured too: the same file run by ONNX Runtime with
    its graph optimizations off (other fusions, other rounding). Random-weight
    resnest50 on one real image: that spread alone is 0.10 to 0.37 of the output
    scale, while a conversion bug computes the same wrong value either way."""
    def onnx_out(c):
        return np.asarray(onnx_outs[(c.inputs, c.batch)][names.index(c.output)])

    failed = [c for c in checks if not c.passed and c.shape_ok and np.issubdtype(onnx_out(c).dtype, np.floating)]
    if not failed:
        return
    import copy

    from .zoo import import_oneflow

    flow = import_oneflow()
    try:
        m64 = copy.deepcopy(module).to(flow.float64)
    except Exception:   # a module that cannot be copied or cast: keep the fp32 verdict
        return
    cache = {}
    for c in failed:
        key = (c.inputs, c.batch)
        if key not in cache:
            with flow.no_grad():
                cache[key] = _as_outputs(m64(*[flow.tensor(np.ascontiguousarray(a, np.float64))
                                               for a in _head(inputs[c.inputs], c.batch)]))
        i = names.index(c.output)
        ref64 = np.asarray(cache[key][i], np.float64)
        ref32 = np.asarray(refs[key][i], np.float64)
        out = onnx_out(c).astype(np.float64)
        scale = max(float(np.abs(ref64).max()), 1e-12)
        own = float(np.abs(ref32 - ref64).max()) / scale
        for y in _perturbed_outputs(module, _head(inputs[c.inputs], c.batch), key, cache):
            own = max(own, float(np.abs(np.asarray(y[i], np.float64) - ref64).max()) / scale)
        if onnx_path is not None:
            alt = _unoptimized_onnx_outputs(onnx_path, _head(inputs[c.inputs], c.batch), key, cache)
            own = max(own, float(np.abs(np.asarray(alt[i], np.float64) - out).max()) / scale)
        ours = float(np.abs(out - ref64).max()) / scale
        c.fp32_rounding_rel_err, c.onnx_vs_fp64_rel_err = own, ours
        c.passed = ours <= max(rtol, ILL_CONDITIONED_FACTOR * own)


PERTURBATIONS = 3


def _head(xs, batch):
    """The first ``batch`` samples of every input."""
    return [np.ascontiguousarray(a[:batch]) for a in xs]


def _feeds(session, xs):
    """Each input as the dtype the session declares (float32, or uint8 for a raw-image input)."""
    return {i.name: np.ascontiguousarray(a, np.uint8 if i.type == "tensor(uint8)" else np.float32)
            for i, a in zip(session.get_inputs(), xs)}


def _unoptimized_onnx_outputs(onnx_path, xs, key, cache):
    """The ONNX model's outputs with ONNX Runtime's graph optimizations off."""
    if "ort-noopt" not in cache:
        from .onnx_io import ort_session

        cache["ort-noopt"] = ort_session(onnx_path, purpose="reference")
    sess = cache["ort-noopt"]
    okey = ("noopt",) + key
    if okey not in cache:
        cache[okey] = sess.run(None, _feeds(sess, xs))
    return cache[okey]


def _perturbed_outputs(module, xs, key, cache):
    """OneFlow fp32 outputs for ``x`` with every element moved by at most one
    float32 rounding step (relative 2**-24): how far OneFlow's own float32 result
    can land from the exact one for inputs it cannot tell apart. Cached per key."""
    pkey = ("perturbed",) + key
    if pkey not in cache:
        from .zoo import import_oneflow

        flow = import_oneflow()
        rng = np.random.default_rng(1234)
        outs = []
        for _ in range(PERTURBATIONS):
            xp = [(np.asarray(x, np.float64) * (1.0 + rng.uniform(-2.0 ** -24, 2.0 ** -24, size=x.shape)))
                  .astype(np.float32) for x in xs]
            with flow.no_grad():
                outs.append(_as_outputs(module(*[flow.tensor(np.ascontiguousarray(x)) for x in xp])))
        cache[pkey] = outs
    return cache[pkey]


def _as_outputs(y):
    """A module's result -> list of numpy arrays (tuple/list/dict flattened in order,
    ``None`` entries dropped: as the exporter's ``flatten_outputs``)."""
    if y is None:
        return []
    if isinstance(y, dict):
        y = list(y.values())
    if isinstance(y, (list, tuple)):
        out = []
        for v in y:
            out.extend(_as_outputs(v))
        return out
    return [y.numpy()]


def _oneflow_outputs(module, xs):
    from .zoo import import_oneflow

    flow = import_oneflow()
    with flow.no_grad():
        return _as_outputs(module(*[flow.tensor(np.ascontiguousarray(x)) for x in xs]))


DETERMINISM_RTOL = 1e-5   # two identical calls may differ by threaded-reduction rounding, never more


def require_deterministic(module, inputs, refs):
    """Run OneFlow again on the first validated input: a module whose output moves
    between two identical calls (random ops, Python-side state, train mode) cannot
    be judged (a reference that changes forgives anything): NondeterministicError."""
    (k, b), first = next(iter(refs.items()))
    again = _oneflow_outputs(module, _head(inputs[k], b))
    for i, (a, c) in enumerate(zip(first, again)):
        a64, c64 = np.asarray(a, np.float64), np.asarray(c, np.float64)
        if a64.shape != c64.shape:
            raise NondeterministicError(f"the module is not deterministic: two identical calls return output {i} "
                                        f"with shapes {list(a64.shape)} and {list(c64.shape)}")
        fin = np.isfinite(a64) & np.isfinite(c64)
        if not np.array_equal(np.isfinite(a64), np.isfinite(c64)):
            raise NondeterministicError(f"the module is not deterministic: two identical calls differ in which "
                                        f"values of output {i} are finite")
        scale = max(float(np.abs(np.where(fin, a64, 0)).max(initial=0.0)), 1e-12)
        diff = float(np.abs(np.where(fin, a64 - c64, 0)).max(initial=0.0)) / scale
        if diff > DETERMINISM_RTOL:
            raise NondeterministicError(f"the module is not deterministic: two identical calls differ by {diff:.2e} "
                                        f"of output {i}'s scale; random ops, Python state or train mode?")
    if len(first) != len(again):
        raise NondeterministicError(f"the module is not deterministic: two identical calls return {len(first)} "
                                    f"and {len(again)} outputs")


def validate(module, onnx_path, config: ModelConfig, options: Optional[ValidateOptions] = None, **settings):
    """Run OneFlow and ONNX Runtime on the same inputs; return a ValidationReport,
    write it to ``options.report_path`` (default ``<onnx>.validation.json``; ``False``:
    not written) and (if ``options.raise_on_error``) raise ShapeError / AtolError /
    TopKError. ``options``: ``ValidateOptions``; ``settings``: its fields as keywords,
    overriding it (``validate(m, p, cfg, batches=(1, 2), report_path=False)``)."""
    from .fileio import write_json

    o = options_with(ValidateOptions, options, settings, "validate()")
    if not isinstance(config, ModelConfig):
        raise OfconvertError(f"config must be an ofconvert.ModelConfig, got {type(config).__name__}")
    batches = _batches(o.batches)
    inputs, plan, real_paths, note = _plan(config, o, batches)
    from ._oneflow import eval_mode

    with eval_mode(module):   # the caller's mode comes back
        checks = _run_checks(module, onnx_path, inputs, plan, o.rtol)
    report = ValidationReport(config.name, str(onnx_path), o.rtol, checks, real_paths, note)
    if report.ill_conditioned:
        report.note = (report.note + "; " if report.note else "") + (
            f"{report.ill_conditioned} of {len(checks)} checks (marked ~) exceed the tolerance and were accepted "
            f"only because the model's own fp32 arithmetic differs from float64 by as much (ill-conditioned: "
            f"random weights?)")
    if o.verbose:
        print(f"Validating {o.label or onnx_path} against OneFlow (rel tol {o.rtol:g}):")
        for c in checks:
            print(c.line())
        if report.note:
            print("  note:", report.note)
    if o.report_path is not False:
        write_json(o.report_path or str(onnx_path) + ".validation.json", report.to_dict())
    if o.raise_on_error:
        raise_for(report)
    return report


def _batches(batches):
    """The batch sizes as a tuple of positive ints, else one-line OfconvertError."""
    try:
        out = tuple(int(b) for b in batches)
    except (TypeError, ValueError):
        raise OfconvertError(f"batches must be positive integers, got {batches!r}") from None
    if not out or min(out) < 1:
        raise OfconvertError(f"batches must be positive integers, got {batches!r}")
    return out


def _plan(config, o, batches):
    """-> (inputs {set: [array per input]}, [(set, batch)...] to check, real image paths, note)."""
    shapes = _shapes(o.input_shape, config)
    if o.input_format == "uint8-nhwc":
        from .models.raw_input import uint8_images

        inputs, real_paths, note = uint8_images(config.preprocess, max(batches), o.use_real, o.seed)
    else:
        inputs, real_paths, note = _make_inputs(config.preprocess, shapes, max(batches), o.use_real,
                                                o.use_random, o.seed)
    plan = [(k, b) for k in inputs for b in batches]
    for h, w in o.sizes or ():
        k = f"random {h}x{w}"
        rng = np.random.default_rng(o.seed + h * 7919 + w)
        inputs[k] = [rng.standard_normal((max(batches),) + (tuple(s[:1]) + (h, w) if len(s) == 3 else tuple(s)))
                     .astype(np.float32) for s in shapes]
        plan += [(k, b) for b in sorted({batches[0], batches[-1]})]
    return inputs, plan, real_paths, note


def _shapes(input_shape, config):
    """Per-sample shapes, one per input."""
    return split_shapes(input_shape) or [tuple(config.input_shape)]


def _make_inputs(cfg, shapes, need, use_real, use_random, seed):
    """{"real": [array per input], "random": [...]}: real images where an input is
    the RGB image of the preprocessing (each such input other images), random
    input elsewhere and always under "random"."""
    inputs, real_paths, note = {}, [], ""
    images = [i for i, s in enumerate(shapes) if s == tuple(cfg.input_shape)]
    rng = np.random.default_rng(seed)
    random = [rng.standard_normal((need,) + s).astype(np.float32) for s in shapes]
    if use_real and images:
        try:
            listed = real_images(need * len(images))
            x, skipped = load_batch(listed, cfg)
            if not len(x):
                raise DataError(f"none of the {len(skipped)} images could be read")
            real_paths = [p for p in listed if p not in skipped]   # the report names the images used
            real = list(random)
            for j, i in enumerate(images):
                real[i] = np.ascontiguousarray(np.roll(x, -j * need, axis=0)[:need])
            inputs["real"] = real
        except DataError as e:
            note = f"real images unavailable ({e}); validated on random input only"
    elif use_real:
        what = "input shape" if len(shapes) == 1 else "no input shape"
        note = (f"{what} {'; '.join(str(list(s)) for s in shapes)} is not an RGB image of the preprocessing: "
                "validated on random input")
    if use_random or not inputs:
        inputs["random"] = random
    return inputs, real_paths, note


def _declared_ok(declared, actual, xs):
    """Does ONNX Runtime's actual shape fit the declared one: ints equal, ``batch``,
    ``height``, ``width`` and expressions of them (``width/4``) equal to their value
    for the inputs ``xs`` (other symbols: anything)?"""
    from .dynamic_dims import eval_dim

    if len(declared) != len(actual):
        return False
    values = {"batch": xs[0].shape[0]}
    image = next((x for x in xs if x.ndim == 4), None)
    if image is not None:
        values.update(height=image.shape[2], width=image.shape[3])
    for d, a in zip(declared, actual):
        want = d if isinstance(d, int) else None if d is None else eval_dim(d, values)
        if want is not None and want != a:
            return False
    return True


def _declared_shapes(onnx_path):
    """Output shapes as the file declares them (ONNX Runtime's own view merges in
    what its shape inference found, so it cannot tell a false declaration)."""
    from .onnx_io import load_onnx

    g = load_onnx(onnx_path, external_data=False).graph
    return [[d.dim_param if d.HasField("dim_param") else d.dim_value if d.HasField("dim_value") else None
             for d in o.type.tensor_type.shape.dim] for o in g.output]


def _run_checks(module, onnx_path, inputs, plan, rtol):
    """OneFlow first (every (input set, batch) of ``plan``; twice on one:
    require_deterministic), then ONNX Runtime on the same inputs, each output's
    shape also against its declared shape; failed value checks judged against float64."""
    from .runners.onnxruntime import OnnxRuntimeRunner

    refs = {(k, b): _oneflow_outputs(module, _head(inputs[k], b)) for k, b in plan}
    require_deterministic(module, inputs, refs)
    checks, onnx_outs = [], {}
    with OnnxRuntimeRunner(onnx_path, provider="cpu") as ort_runner:
        sess = ort_runner.session
        names = [o.name for o in sess.get_outputs()]
        declared = _declared_shapes(onnx_path)
        for (k, b), ref in refs.items():
            xs = _head(inputs[k], b)
            outs = sess.run(None, _feeds(sess, xs))
            if len(outs) != len(ref):
                checks.append(OutputCheck(k, b, False, float("inf"), float("inf"), 0.0, None, None, 0, False,
                                          f"{len(outs)} ONNX outputs vs {len(ref)} OneFlow outputs"))
                continue
            onnx_outs[(k, b)] = outs
            for name, r, o, d in zip(names, ref, outs, declared):
                c = compare(r, o, k, b, rtol, output=name)
                if c.shape_ok and not _declared_ok(d, np.shape(o), xs):
                    c.shape_ok = c.passed = False
                    c.declared_shape = tuple(d)
                checks.append(c)
    _judge_against_float64(module, inputs, refs, onnx_outs, names, checks, rtol, onnx_path)
    return checks


def raise_for(report: ValidationReport):
    bad = [c for c in report.checks if not c.passed]
    if not bad:
        return
    c = bad[0]
    where = f"{report.model}: output {c.output}, {c.inputs} input, batch {c.batch}"
    if not c.shape_ok and c.declared_shape is not None:
        raise ShapeError(f"{where}: ONNX output shape {list(c.onnx_shape)} contradicts its declared shape "
                         f"{list(c.declared_shape)}")
    if not c.shape_ok:
        raise ShapeError(f"{where}: ONNX output shape {list(c.onnx_shape)} differs from OneFlow's {list(c.ref_shape)}")
    if c.max_rel_err > report.rtol:
        raise AtolError(f"{where}: max error {c.max_abs_err:.3e} = {c.max_rel_err:.2e} of the output scale "
                        f"(tolerance {report.rtol:g})")
    raise TopKError(f"{where}: {c.unexplained_top1_flips} top-1 prediction(s) differ beyond the numerical error")
