"""Temp files carry their owner's pid (``.<name>.p<pid>.<8>.tmp``, ``$TMPDIR/ofconvert-run-p<pid>-*``):
what a run killed with SIGKILL leaves behind is removed by the next run that writes
there, and nothing of a live process is touched."""
import os
import subprocess
import sys

from ofconvert import fileio, isolation


def _dead_pid():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_the_next_write_sweeps_temp_files_of_dead_processes_only(tmp_path):
    dead = _dead_pid()
    orphan = tmp_path / f".m.onnx.p{dead}.abcd1234.tmp"
    report = tmp_path / f".m.onnx.json.p{dead}.x_y_z_01.tmp"
    live = tmp_path / f".m.onnx.p{os.getppid()}.abcd1234.tmp"   # our parent (pytest's shell) is alive
    mine = tmp_path / ".notes.txt.tmp"                          # not ours: no pid, never touched
    for f in (orphan, report, live, mine):
        f.write_bytes(b"x")
    fileio.write_bytes(str(tmp_path / "other.bin"), b"data")
    assert not orphan.exists() and not report.exists()
    assert live.exists() and mine.exists()
    assert (tmp_path / "other.bin").read_bytes() == b"data"


def test_a_transaction_names_its_temp_files_with_its_pid_and_sweeps(tmp_path):
    dead = _dead_pid()
    orphan = tmp_path / f".m.onnx.p{dead}.abcd1234.tmp"
    orphan.write_bytes(b"x")
    with fileio.transaction(str(tmp_path / "m.onnx")) as tx:
        assert os.path.basename(tx.tmp).startswith(f".m.onnx.p{os.getpid()}.")
        assert not orphan.exists()
        with open(tx.tmp, "wb") as f:
            f.write(b"onnx")
        tx.commit()
    assert sorted(os.listdir(tmp_path)) == ["m.onnx"]


def test_run_folders_of_gone_clis_are_removed(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    dead = tmp_path / f"ofconvert-run-p{_dead_pid()}-abc"
    live = tmp_path / f"ofconvert-run-p{os.getpid()}-abc"
    other = tmp_path / "ofconvert-run-abc"   # an old-style name: no pid, left alone
    for d in (dead, live, other):
        d.mkdir()
        (d / "f").write_bytes(b"x")
    isolation.sweep_run_folders()
    assert not dead.exists() and live.exists() and other.exists()
