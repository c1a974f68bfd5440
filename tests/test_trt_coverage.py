"""CI's coverage gate for the TensorRT code: CI runs only ``python -m pytest``, so
the gate is a test. It runs the TensorRT tests (the stand-in contract tests and
tests/test_engine.py, without the OneFlow exports) in a subprocess under
pytest-cov and requires >= 90 % of the lines of the TensorRT modules."""
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULES = ("ofconvert.trt", "ofconvert.engine", "ofconvert.runners.tensorrt", "ofconvert.runners.ort_trt",
           "ofconvert.trt_info")
FAIL_UNDER = 90


def test_tensorrt_modules_are_at_least_90_percent_covered(tmp_path):
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
           "tests/test_trt_contract.py", "tests/test_engine.py", "-m", "not slow", "-k", "not real",
           *[f"--cov={m}" for m in MODULES], "--cov-report=term", f"--cov-fail-under={FAIL_UNDER}"]
    env = dict(os.environ, COVERAGE_FILE=str(tmp_path / ".coverage"))
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    total = re.search(r"^TOTAL\s+(\d+)\s+(\d+)\s+(\d+)%", out, re.M)
    assert total, out[-3000:]
    statements, percent = int(total.group(1)), int(total.group(3))
    # every module was measured (a typo in MODULES would shrink TOTAL, not fail it)
    for path in ("ofconvert/trt/backend.py", "ofconvert/trt/plan.py", "ofconvert/engine.py",
                 "ofconvert/runners/tensorrt.py"):
        assert re.search(rf"^{re.escape(path)}\s+\d+", out, re.M), f"{path} not measured:\n{out[-3000:]}"
    assert statements > 500 and percent >= FAIL_UNDER, out[-3000:]
    assert proc.returncode == 0, out[-3000:]   # the tests passed and --cov-fail-under held
