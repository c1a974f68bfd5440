"""Op conformance: conv ops (tests/ops/cases.py) at every tested opset, compared
with OneFlow eager at batch 1, 4 and 5 (the export traces at 2 and 3)."""
import pytest

pytest.importorskip("oneflow")
FAMILY = "conv"


def test_case(case_outcome):
    assert case_outcome["status"] == "pass", case_outcome["detail"]
