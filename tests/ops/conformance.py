"""Op conformance cases: small OneFlow modules, one op or pattern each, exported
with a dynamic batch and compared with OneFlow eager at batch sizes other than
the traced ones. Used by ``tests/ops/`` (one file per op family) and by
``scripts/evidence/ops_report.py`` (which writes ``docs/ops.md``).

A case passes when ``ofconvert.export`` writes a file whose outputs match
OneFlow (shape and values) at batch 1, 4 and 5; it *fails cleanly* when export
raises one ``ExportError`` naming the op; anything else (a raw exception, or a
file that computes something else) is a defect. A case with ``min_opset`` (an op
ONNX has only from that opset) must pass from it on and, below it, be refused
with "needs opset >= N" naming the op; a case with ``refused`` must be refused at
every opset with that text in the error (``judge``).
"""
import dataclasses
import os
import tempfile
from typing import Callable, Tuple

OPSETS = (13, 17)          # plus the newest the installed onnx and ONNX Runtime support: see opsets()
BATCHES = (1, 4, 5)


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    family: str
    make: Callable            # () -> oneflow.nn.Module
    shape: Tuple[int, ...] = (3, 8, 8)
    rtol: float = 1e-4
    min_opset: int = 0        # below it: refused with "needs opset >= {min_opset}" and the op's name
    op: str = ""              # the OneFlow op a refusal names
    refused: str = ""         # refused at every opset, with this text in the error


def judge(outcome):
    """'' when an outcome (an ``Outcome`` or its dict) is what its case promises,
    else why not: a pass, or the refusal the case declares (``min_opset``, ``refused``)."""
    r = outcome if isinstance(outcome, dict) else outcome.__dict__
    case = get_case(r["case"])
    want = [case.refused] if case.refused else (
        [f"needs opset >= {case.min_opset}"] if r["opset"] < case.min_opset else [])
    if not want:
        return "" if r["status"] == "pass" else f"{r['status']}: {r['detail']}"
    want += [f"`{case.op}`"] if case.op else []
    if r["status"] != "refused" or not all(w in r["detail"] for w in want):
        return f"expected a refusal mentioning {want} at opset {r['opset']}, got {r['status']}: {r['detail']}"
    return ""


def opsets():
    from ofconvert.exporter import max_opset

    return tuple(sorted(set(OPSETS) | {max_opset()}))


def case_names(family):
    """Names of one family's cases; [] when OneFlow is not installed (the tests skip)."""
    try:
        return [c.name for c in cases() if c.family == family]
    except ImportError:
        return []


def fn_module(f):
    """A module whose forward is ``f(x)`` (built lazily: OneFlow imports here)."""
    import oneflow.nn as nn

    class Fn(nn.Module):
        def forward(self, x):
            return f(x)

    return Fn()


def seq(*mods):
    import oneflow.nn as nn

    return nn.Sequential(*mods)


_CACHE = []


def cases():
    if not _CACHE:
        from .cases import all_cases

        _CACHE.extend(all_cases())
    return list(_CACHE)


def families():
    return sorted({c.family for c in cases()})


def get_case(name):
    for c in cases():
        if c.name == name:
            return c
    raise KeyError(name)


@dataclasses.dataclass
class Outcome:
    case: str
    family: str
    opset: int
    status: str            # "pass" | "refused" (typed ExportError) | "wrong" | "crash"
    detail: str = ""


def run_case(case: Case, opset: int, folder=None) -> Outcome:
    """Export ``case`` at ``opset`` (dynamic batch) and compare with OneFlow eager."""
    import numpy as np

    from ofconvert._oneflow import import_oneflow
    from ofconvert.errors import ExportError, ValidationError
    from ofconvert.exporter import export

    flow = import_oneflow()
    flow.manual_seed(0)
    np.random.seed(0)
    module = case.make()
    module.eval()
    with tempfile.TemporaryDirectory(prefix="ofconvert-ops-", dir=folder) as d:
        path = os.path.join(d, f"{case.name}.onnx")
        try:
            export(module, path, input_shape=case.shape, opset=opset, verbose=False,
                   validation_options={"batches": BATCHES, "use_real": False, "rtol": case.rtol})
        except ValidationError as e:
            return Outcome(case.name, case.family, opset, "wrong", str(e))
        except ExportError as e:
            return Outcome(case.name, case.family, opset, "refused", str(e))
        except Exception as e:  # a defect: raw exception escaped
            return Outcome(case.name, case.family, opset, "crash", f"{type(e).__name__}: {str(e)[:300]}")
        return Outcome(case.name, case.family, opset, "pass")
