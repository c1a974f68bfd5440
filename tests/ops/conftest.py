"""The op conformance suite runs each family in a worker process
(``python -m scripts.evidence.ops_report --family F --json ...``): OneFlow 0.9 aborts after
some hundreds of nn.Graph compilations in one process, and one crashing case
must not take the other families with it. Each parametrized test then asserts
its own case's outcome."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_RESULTS = {}


@pytest.fixture(scope="session")
def family_outcomes(tmp_path_factory):
    def get(family):
        if family not in _RESULTS:
            from .conformance import case_names, opsets

            out = tmp_path_factory.mktemp("ops") / f"{family}.json"
            cmd = [sys.executable, "-m", "scripts.evidence.ops_report", "--family", family,
                   "--json", str(out), "--md", "", "--resume"]
            for o in opsets():
                cmd += ["--opset", str(o)]
            expected = {(n, o) for n in case_names(family) for o in opsets()}
            workers = []
            # OneFlow 0.9 sometimes segfaults after many compilations: a new worker
            # resumes after the last recorded case (a case that crashes every time
            # stays without an outcome and its test fails with the worker's message)
            for _ in range(4):
                try:
                    p = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=ROOT)
                    workers.append(f"worker exit {p.returncode}: {p.stderr.strip()[-300:]}")
                except subprocess.TimeoutExpired:
                    workers.append("worker timed out after 900 s")
                rows = json.load(open(out)) if out.exists() else []
                if expected <= {(r["case"], r["opset"]) for r in rows}:
                    break
            _RESULTS[family] = ({(r["case"], r["opset"]): r for r in rows}, " | ".join(workers))
        return _RESULTS[family]

    return get


def pytest_generate_tests(metafunc):
    """Each ``tests/ops/test_<family>.py`` declares ``FAMILY``; its ``test_case``
    runs once per (case, opset) of that family."""
    family = getattr(metafunc.module, "FAMILY", None)
    if family and "case_key" in metafunc.fixturenames:
        from .conformance import case_names, opsets

        keys = [(family, n, o) for n in case_names(family) for o in opsets()]
        metafunc.parametrize("case_key", keys, ids=[f"{n}-opset{o}" for _, n, o in keys])


@pytest.fixture
def case_outcome(case_key, family_outcomes):
    """The outcome dict of one (family, case, opset) from the family's worker."""
    family, name, opset = case_key
    outcomes, worker = family_outcomes(family)
    r = outcomes.get((name, opset))
    assert r is not None, f"no outcome for {name} at opset {opset}: {worker}"
    return r
