"""The op conformance suite runs each family in a worker process
(``python tools/ops_report.py --family F --json ...``): OneFlow 0.9 aborts after
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
            from ofconvert.conformance import OPSETS_TESTED

            out = tmp_path_factory.mktemp("ops") / f"{family}.json"
            cmd = [sys.executable, os.path.join(ROOT, "tools", "ops_report.py"), "--family", family,
                   "--json", str(out), "--md", ""]
            for o in OPSETS_TESTED:
                cmd += ["--opset", str(o)]
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, cwd=ROOT)
            rows = json.load(open(out)) if out.exists() else []
            _RESULTS[family] = ({(r["case"], r["opset"]): r for r in rows},
                                f"worker exit {p.returncode}: {p.stderr.strip()[-500:]}")
        return _RESULTS[family]

    return get
