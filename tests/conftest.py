"""Shared fixtures: real exports of zoo models (once per test session) and the
real images of ../shared/datasets (tests skip with the reason when absent)."""
import os
import shutil
import subprocess
import sys

import pytest

from ofconvert.data import datasets_root

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _has_oneflow():
    try:
        import oneflow  # noqa: F401
    except ImportError:
        return False
    return True


HAS_ONEFLOW = _has_oneflow()
needs_oneflow = pytest.mark.skipif(not HAS_ONEFLOW,
                                   reason="oneflow is not installed (needs Python 3.10 + scripts/setup.sh)")


@pytest.fixture(scope="session")
def datasets():
    """Path of ../shared/datasets (or $OFCONVERT_DATASETS); skip if absent."""
    root = datasets_root()
    if not os.path.isdir(os.path.join(root, "imagenet-val-1300")):
        pytest.skip(f"real images not found at {root} (set OFCONVERT_DATASETS)")
    return root


@pytest.fixture(scope="session")
def zoo_onnx(tmp_path_factory):
    """``zoo_onnx(name)`` -> path of an fp32 ONNX export of zoo model ``name``,
    exported through the real OneFlow once per test session (not validated here:
    tests/test_export.py validates). Tests must not modify the file."""
    if not HAS_ONEFLOW:
        pytest.skip("oneflow is not installed: cannot export zoo models")
    folder = tmp_path_factory.mktemp("zoo")
    made = {}

    def get(name):
        if name not in made:
            from ofconvert.exporter import export

            path = str(folder / f"{name}.onnx")
            export(name, path, validate=False, verbose=False)
            made[name] = path
        return made[name]

    return get


def run_cli(*args, cwd=None, env=None, timeout=900):
    """Run ``python -m ofconvert ARGS`` in a subprocess (as a user would)."""
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "ofconvert", *map(str, args)], cwd=cwd or ROOT, env=e,
                          capture_output=True, text=True, timeout=timeout)


def run_tool(script, *args, cwd=None, timeout=900):
    """Run ``python tools/SCRIPT ARGS`` in a subprocess."""
    return subprocess.run([sys.executable, os.path.join(ROOT, "tools", script), *map(str, args)],
                          cwd=cwd or ROOT, capture_output=True, text=True, timeout=timeout)


def has_traceback(proc):
    return "Traceback (most recent call last)" in (proc.stderr + proc.stdout)


@pytest.fixture
def clean_tmp_check(tmp_path, monkeypatch):
    """Points TMPDIR (this process and CLI subprocesses) at a private folder and
    yields a function listing what was left in it, plus oneflow-onnx's own
    ``/tmp/oneflow_model*`` folders created meanwhile."""
    import tempfile

    private = tmp_path / "private-tmp"
    private.mkdir()
    monkeypatch.setenv("TMPDIR", str(private))
    monkeypatch.setattr(tempfile, "tempdir", str(private))
    before = set(os.listdir("/tmp"))

    def leftovers():
        mine = sorted(os.listdir(private))
        theirs = sorted(d for d in set(os.listdir("/tmp")) - before if d.startswith("oneflow_model"))
        return mine + theirs

    yield leftovers


def which(cmd):
    return shutil.which(cmd)
