"""Op conformance: topk, cumsum, eye, affine_grid, grid_sample (DETR, PointNet, spatial
transformers; tests/ops/conformance.py) at every tested opset, compared with OneFlow eager
at batch 1, 4 and 5. grid_sample cases pass from opset 16 (5-D: 20) and are refused
below with "needs opset >= N" naming the op (``conformance.judge``)."""
import pytest

pytest.importorskip("oneflow")
FAMILY = "detection"


def test_case(case_outcome):
    from .conformance import judge

    problem = judge(case_outcome)
    assert not problem, problem
