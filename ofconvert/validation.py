"""Validation of an exported ONNX against its OneFlow module (Optimum style).

For each input set (real images from the shared datasets, seeded random input)
and batch size (1, 3, 8): max absolute error, error relative to the output's
scale (random-weight inception_v3 produces logits near 1e12, so absolute
tolerances are meaningless), cosine similarity, top-1 / top-5 agreement.
Printed as a checklist; typed errors (ShapeError, AtolError, TopKError) are
raised after the whole checklist is printed; the caller decides the policy.
"""
import dataclasses
import os
from typing import List

import numpy as np

from .config import ModelConfig
from .data import datasets_root, list_images, load_batch
from .errors import AtolError, DataError, ShapeError, TopKError

DEFAULT_BATCHES = (1, 3, 8)
DEFAULT_RTOL = 5e-4        # max |onnx - oneflow| / max |oneflow| (measured fp32 worst case: 4.7e-5, inception_v3)
REAL_SET = "imagenet-val-1300"


@dataclasses.dataclass
class OutputCheck:
    inputs: str              # "real" or "random"
    batch: int
    shape_ok: bool
    max_abs_err: float
    max_rel_err: float       # relative to max |reference|
    cosine: float
    top1_agree: float
    top5_agree: float
    unexplained_top1_flips: int   # flips where the reference margin exceeds 2x the error
    passed: bool

    def line(self):
        mark = "✓" if self.passed else "✗"
        return (f"  [{mark}] {self.inputs:6s} batch {self.batch:2d}: max abs err {self.max_abs_err:.3e}, "
                f"rel err {self.max_rel_err:.3e}, cosine {self.cosine:.7f}, top-1 agree {self.top1_agree:.3f}, "
                f"top-5 agree {self.top5_agree:.3f}")


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

    def to_dict(self):
        d = dataclasses.asdict(self)
        d["passed"] = self.passed
        d["real_images"] = [os.path.basename(p) for p in self.real_images]
        return d


def compare(ref, out, inputs, batch, rtol=DEFAULT_RTOL):
    """Compare one batch of reference logits with ONNX logits -> OutputCheck."""
    ref = np.asarray(ref, np.float64)
    out = np.asarray(out, np.float64)
    if ref.shape != out.shape:
        return OutputCheck(inputs, batch, False, float("inf"), float("inf"), 0.0, 0.0, 0.0, batch, False)
    err = np.abs(ref - out)
    scale = max(float(np.abs(ref).max()), 1e-12)
    max_abs = float(err.max())
    rel = max_abs / scale
    cos = float(np.mean([np.dot(a, b) / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-300) for a, b in zip(ref, out)]))
    r1, o1 = ref.argmax(1), out.argmax(1)
    top1 = float(np.mean(r1 == o1))
    k = min(5, ref.shape[1])
    r5 = np.argsort(-ref, 1)[:, :k]
    o5 = np.argsort(-out, 1)[:, :k]
    top5 = float(np.mean([set(a) == set(b) for a, b in zip(r5, o5)]))
    srt = np.sort(ref, 1)
    margin = srt[:, -1] - srt[:, -2]
    flips = int(np.sum((r1 != o1) & (margin > 2 * max_abs)))
    passed = rel <= rtol and flips == 0
    return OutputCheck(inputs, batch, True, max_abs, rel, cos, top1, top5, flips, passed)


def _oneflow_logits(module, x):
    from .zoo import import_oneflow

    flow = import_oneflow()
    with flow.no_grad():
        return module(flow.tensor(np.ascontiguousarray(x))).numpy()


def real_images(n, root=None):
    """``n`` real images spread over the shared validation set (deterministic)."""
    folder = os.path.join(root or datasets_root(), REAL_SET)
    paths = list_images(folder)
    step = max(1, len(paths) // n)
    return paths[::step][:n]


def validate(module, onnx_path, config: ModelConfig, batches=DEFAULT_BATCHES, rtol=DEFAULT_RTOL,
             use_real=True, use_random=True, seed=0, verbose=True, raise_on_error=True):
    """Run OneFlow and ONNX Runtime on the same inputs; return a ValidationReport and
    (if ``raise_on_error``) raise ShapeError / AtolError / TopKError on failure."""
    from .fileio import write_json
    from .runners.onnxruntime import OnnxRuntimeRunner

    cfg = config.preprocess
    batches = tuple(int(b) for b in batches)
    need = max(batches)
    inputs = {}
    real_paths, note = [], ""
    if use_real:
        try:
            real_paths = real_images(need)
            x, skipped = load_batch(real_paths, cfg)
            inputs["real"] = x
        except DataError as e:
            note = f"real images unavailable ({e}); validated on random input only"
    if use_random:
        rng = np.random.default_rng(seed)
        inputs["random"] = rng.standard_normal((need,) + cfg.input_shape).astype(np.float32)
    module.eval()
    # OneFlow first (all batches), then ONNX Runtime: both in this process is fine
    # for correctness; the benchmark isolates them.
    refs = {(k, b): _oneflow_logits(module, x[:b]) for k, x in inputs.items() for b in batches}
    checks = []
    with OnnxRuntimeRunner(onnx_path, provider="cpu") as ort_runner:
        for (k, b), ref in refs.items():
            checks.append(compare(ref, ort_runner.infer(inputs[k][:b]), k, b, rtol))
    report = ValidationReport(config.name, str(onnx_path), rtol, checks, real_paths, note)
    if verbose:
        print(f"Validating {onnx_path} against OneFlow (rel tol {rtol:g}):")
        for c in checks:
            print(c.line())
        if note:
            print("  note:", note)
    write_json(str(onnx_path) + ".validation.json", report.to_dict())
    if raise_on_error:
        raise_for(report)
    return report


def raise_for(report: ValidationReport):
    bad = [c for c in report.checks if not c.passed]
    if not bad:
        return
    c = bad[0]
    where = f"{report.model}: {c.inputs} input, batch {c.batch}"
    if not c.shape_ok:
        raise ShapeError(f"{where}: ONNX output shape differs from OneFlow's")
    if c.max_rel_err > report.rtol:
        raise AtolError(f"{where}: max error {c.max_abs_err:.3e} = {c.max_rel_err:.2e} of the output scale "
                        f"(tolerance {report.rtol:g})")
    raise TopKError(f"{where}: {c.unexplained_top1_flips} top-1 prediction(s) differ beyond the numerical error")
