"""Ctrl-C / SIGTERM during ``ofconvert MODEL --to onnx``: one line, exit 130,
every existing file byte-identical, no temp file anywhere (ofconvert.isolation).

Before the isolation, OneFlow's own signal handling made the process die with
SIGSEGV (rc 139) or hang, leaving ``.r.onnx.XXXX.tmp`` beside the target and
``ofconvert-weights-XXXX`` in $TMPDIR."""
import hashlib
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT, needs_oneflow

pytestmark = needs_oneflow


def _hashes(folder):
    out = {}
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name), "rb") as f:
            out[name] = hashlib.sha256(f.read()).hexdigest()
    return out


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """An export of resnet50 (no validation) and the sha256 of every file beside it."""
    folder = tmp_path_factory.mktemp("interrupt-out")
    p = subprocess.run([sys.executable, "-m", "ofconvert", "resnet50", "--to", "onnx", "--no-validate",
                        "-o", str(folder / "r.onnx")], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    hashes = _hashes(folder)
    assert {"r.onnx", "r.onnx.json"} <= set(hashes)
    return folder, hashes


def _start(folder, tmp_path):
    """Start ``ofconvert resnet50 --to onnx -o <folder>/r.onnx --force-export`` with a
    private TMPDIR and an empty cwd; returns (process, private tmp, cwd)."""
    private, cwd = tmp_path / "private-tmp", tmp_path / "cwd"
    private.mkdir()
    cwd.mkdir()
    env = dict(os.environ, TMPDIR=str(private), PYTHONPATH=os.pathsep.join(
        [ROOT] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])))
    cmd = [sys.executable, "-m", "ofconvert", "resnet50", "--to", "onnx", "-o", str(folder / "r.onnx"),
           "--force-export"]
    proc = subprocess.Popen(cmd, cwd=str(cwd), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, private, cwd


def _wait_for_temp(proc, folder, at_least, limit=120):
    """Wait ``at_least`` seconds and until a temp file of the export is beside the target."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        busy = [n for n in os.listdir(folder) if n.startswith(".r.onnx.") and n.endswith(".tmp")]
        if busy and time.monotonic() - t0 >= at_least:
            return busy
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    out, err = proc.communicate()
    pytest.fail(f"the export never made its temp file (rc {proc.returncode}): {err[-2000:]}")


def _finish(proc, timeout=60):
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"ofconvert did not exit within {timeout} s of the signal (hang); stderr: {err[-2000:]}")


def _child_pids(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


@pytest.mark.parametrize("signum,delay", [(signal.SIGINT, 3), (signal.SIGTERM, 6)], ids=["SIGINT", "SIGTERM"])
def test_signal_during_export_is_clean(exported, tmp_path, signum, delay):
    folder, before = exported
    proc, private, cwd = _start(folder, tmp_path)
    _wait_for_temp(proc, folder, delay)
    proc.send_signal(signum)
    t0 = time.monotonic()
    out, err = _finish(proc)
    assert proc.returncode == 130, (proc.returncode, err[-2000:])
    assert time.monotonic() - t0 < 30
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "interrupted" in lines[0], err
    assert lines[0] == "ofconvert: interrupted"
    assert "Traceback" not in out + err
    assert _hashes(folder) == before          # same files, byte-identical, nothing new (no .tmp)
    assert os.listdir(private) == []          # no ofconvert-weights-*, no private run folder
    assert os.listdir(cwd) == []


def test_crashed_conversion_is_cleaned_up(exported, tmp_path):
    """A conversion process that dies by itself (here: SIGSEGV, as OneFlow does on a
    signal) gives 128 + signal, one error line, and no temp file left."""
    folder, before = exported
    proc, private, cwd = _start(folder, tmp_path)
    _wait_for_temp(proc, folder, 2)
    kids = _child_pids(proc.pid)
    assert kids, "the conversion runs in a child process of the CLI"
    os.kill(kids[0], signal.SIGSEGV)
    out, err = _finish(proc)
    assert proc.returncode == 128 + signal.SIGSEGV, (proc.returncode, err[-2000:])
    lines = err.strip().splitlines()
    assert lines == ["ofconvert: error: the conversion process died (SIGSEGV)"], err
    assert _hashes(folder) == before
    assert os.listdir(private) == []
    assert os.listdir(cwd) == []


def test_eval_tool_ctrl_c_is_one_line_exit_130(tmp_path, datasets):
    """SIGINT to the whole process group (what a terminal's Ctrl-C does) while
    tools/eval.py runs its OneFlow worker: one line, exit 130, no traceback."""
    tmpd = tmp_path / "tmpdir"
    tmpd.mkdir()
    p = subprocess.Popen([sys.executable, os.path.join(ROOT, "tools", "eval.py"), "--data",
                          os.path.join(datasets, "imagenet-val-1300"), "--models", "efficientnet_lite0",
                          "--backends", "oneflow,ort-cpu", "--no-progress", "--limit", "600"],
                         cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True, env={**os.environ, "TMPDIR": str(tmpd)})
    time.sleep(12)
    os.killpg(p.pid, signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130, err[-1000:]
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "ofconvert: interrupted"
    assert os.listdir(tmpd) == []
