"""Op conformance: reduce ops (ofconvert.conformance), every tested opset, compared
with OneFlow eager at batch 1, 4 and 5 (the export traces at 2 and 3)."""
import pytest

pytest.importorskip("oneflow")
from ofconvert.conformance import OPSETS_TESTED, case_names  # noqa: E402

FAMILY = "reduce"


@pytest.mark.parametrize("opset", OPSETS_TESTED)
@pytest.mark.parametrize("name", case_names(FAMILY))
def test_case(name, opset, family_outcomes):
    outcomes, worker = family_outcomes(FAMILY)
    r = outcomes.get((name, opset))
    assert r is not None, f"no outcome for {name} at opset {opset}: {worker}"
    assert r["status"] == "pass", r["detail"]
