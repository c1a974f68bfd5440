"""Op conformance: reduce ops (ofconvert.conformance), every tested opset."""
import pytest

pytest.importorskip("oneflow")
from ofconvert.conformance import OPSETS_TESTED, case_names, run_named  # noqa: E402

FAMILY = "reduce"


@pytest.mark.parametrize("opset", OPSETS_TESTED)
@pytest.mark.parametrize("name", case_names(FAMILY))
def test_case(name, opset):
    r = run_named(name, opset)
    assert r.status == "pass", r.detail
