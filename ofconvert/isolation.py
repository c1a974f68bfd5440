"""Run a CLI command in a child process, so that Ctrl-C / SIGTERM is clean.

OneFlow installs C-level signal handling: a SIGINT during an export kills the
process with SIGSEGV (or exit 255), or makes it hang when Python's handler is
re-installed, and the temp files of the export are left behind. So the CLI
(``ofconvert MODEL ...`` and ``ofconvert calib-set``) does the work in a child:

* the child is ``python -c <bootstrap>`` running the same ``ofconvert`` package,
  in a new session (its own process group: a terminal's Ctrl-C reaches only the
  parent), with ``TMPDIR`` pointed at a private folder the parent made, and the
  parent's stdin/stdout/stderr (stdin: /dev/null);
* the parent never imports OneFlow; it catches SIGINT, SIGTERM and SIGHUP with
  Python handlers; on one it SIGKILLs the child's process group, waits for it,
  removes the private folder and every temp file (``.<name>.<8 chars>.tmp``,
  as made by ``fileio.atomic_path`` and the exporter's transaction) that appeared
  in the watched folders (output folder, cwd, caches) while the child ran, plus
  the watched folders the child created if they end up empty, prints one line
  ``ofconvert: interrupted`` and returns 130;
* a child that ends by itself gives its exit code (its own stderr, one line for
  user errors); a child killed by another signal (a crash) gives 128 + signal
  and one ``ofconvert: error:`` line, after the same clean-up.

Limits: SIGKILL cannot be deferred, so a signal that lands during a commit's few
microseconds (the renames of an ONNX and its reports) can leave a half-replaced
set; a SIGKILL of the parent itself leaves the private temp folder (the child
dies with it: PR_SET_PDEATHSIG on Linux).
"""
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from .errors import OfconvertError

INTERRUPTED_EXIT = 130
INTERRUPTED_MESSAGE = "ofconvert: interrupted"
_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))
# tempfile.mkstemp(prefix=".<name>.", suffix=".tmp"): 8 characters of [a-z0-9_] in between
_TEMP_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")
_BOOTSTRAP = "from ofconvert.isolation import child_main; child_main()"


def available():
    """Whether the caller can isolate: signal handlers can only be set from the main thread."""
    return threading.current_thread() is threading.main_thread() and os.name == "posix"


class _Listing:
    """What a watched folder held before the child started."""

    def __init__(self, folder):
        self.folder = folder
        self.names = _names(folder)
        # folders missing now (the child may create them: removed again if left empty)
        self.missing = []
        d = folder
        while d and not os.path.isdir(d):
            self.missing.append(d)
            parent = os.path.dirname(d)
            d = parent if parent != d else None


def _names(folder):
    try:
        return set(os.listdir(folder))
    except OSError:
        return set()


class _Child:
    def __init__(self):
        self.signum = None
        self.proc = None

    def on_signal(self, signum, frame):   # never raises: the parent stays in control
        if self.signum is None:
            self.signum = signum
        self.kill()

    def kill(self):
        p = self.proc
        if p is not None and p.returncode is None:
            with contextlib.suppress(OSError):
                os.killpg(p.pid, signal.SIGKILL)   # the child leads its own group: pgid == pid


def _wait_group_gone(pgid, timeout=3.0):
    """Wait until no process of the killed group is left (grandchildren included)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        except OSError:
            return
        time.sleep(0.02)


def _clean(listings):
    """Remove the temp files that appeared in the watched folders, then the
    watched folders that did not exist before and are now empty."""
    removed = []
    for lst in listings:
        for name in sorted(_names(lst.folder) - lst.names):
            path = os.path.join(lst.folder, name)
            if _TEMP_NAME.match(name) and os.path.isfile(path) and not os.path.islink(path):
                with contextlib.suppress(OSError):
                    os.unlink(path)
                    removed.append(path)
    for lst in listings:
        for d in lst.missing:   # deepest first
            with contextlib.suppress(OSError):
                os.rmdir(d)     # fails (kept) unless empty
    return removed


def child_env(threads=None, **extra):
    """Environment for a child ``python`` that imports this same ``ofconvert``
    (its folder first on PYTHONPATH, whatever the cwd or install), with
    ``OMP_NUM_THREADS`` when ``threads`` is given. The one child environment of
    the CLI, bench and eval workers."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, **extra)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def run_isolated(argv, watch=(), stdin=subprocess.DEVNULL, entry="ofconvert.cli:run_inprocess"):
    """Run ``ofconvert ARGV`` in a child process (see the module docstring) and
    return the exit code for the CLI. ``watch``: folders where the command
    writes (temp files beside its artefacts); the cwd is always watched.
    ``entry``: ``module:function`` the child calls with ARGV (named, not
    imported, so this module never imports the CLI that imports it)."""
    child = _Child()
    old = {}
    private = None
    try:
        for s in _SIGNALS:
            old[s] = signal.signal(s, child.on_signal)
        folders = []
        for f in [os.getcwd(), *watch]:
            f = os.path.abspath(os.fspath(f))
            if f not in folders:
                folders.append(f)
        listings = [_Listing(f) for f in folders]
        try:
            private = tempfile.mkdtemp(prefix="ofconvert-run-")
        except OSError as e:
            raise OfconvertError(f"cannot create a temporary folder in {tempfile.gettempdir()}: "
                                 f"{e.strerror}") from None
        rc = None
        if child.signum is None:
            env = child_env(TMPDIR=private)
            for k in ("TEMP", "TMP"):   # tempfile reads TMPDIR first; keep the others consistent
                if k in env:
                    env[k] = private
            cmd = [sys.executable, "-c", _BOOTSTRAP, str(os.getpid()), entry, *map(str, argv)]
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            try:
                child.proc = subprocess.Popen(cmd, env=env, stdin=stdin, start_new_session=True)
            except OSError as e:
                raise OfconvertError(f"cannot start the conversion process ({sys.executable}): {e.strerror}") from None
            if child.signum is not None:   # a signal came during Popen, before child.proc was set
                child.kill()
            rc = child.proc.wait()
        interrupted = child.signum is not None and (rc is None or rc == -signal.SIGKILL)
        if interrupted or (rc is not None and rc < 0):
            if child.proc is not None:
                _wait_group_gone(child.proc.pid)
            _clean(listings)
        if interrupted:
            sys.stderr.write(INTERRUPTED_MESSAGE + "\n")
            sys.stderr.flush()
            return INTERRUPTED_EXIT
        if rc < 0:
            name = signal.Signals(-rc).name if -rc in signal.valid_signals() else str(-rc)
            sys.stderr.write(f"ofconvert: error: the conversion process died ({name})\n")
            sys.stderr.flush()
            return 128 - rc
        return rc
    finally:
        if private is not None:
            shutil.rmtree(private, ignore_errors=True)
        for s, h in old.items():
            with contextlib.suppress(Exception):
                signal.signal(s, h)


def _die_with_parent(parent_pid):
    """Linux: SIGKILL this process when the parent dies (even from SIGKILL)."""
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)   # PR_SET_PDEATHSIG
    if os.getppid() != parent_pid:   # the parent is already gone
        os._exit(INTERRUPTED_EXIT)


def child_main():
    """Entry point of the child (see ``_BOOTSTRAP``): ``sys.argv[1]`` is the
    parent's pid, ``sys.argv[2]`` the ``module:function`` to run, the rest the
    CLI arguments."""
    import importlib

    parent = int(sys.argv.pop(1))
    module, func = sys.argv.pop(1).split(":")
    _die_with_parent(parent)
    with contextlib.suppress(Exception):   # in case the mask was inherited blocked
        signal.pthread_sigmask(signal.SIG_UNBLOCK, set(_SIGNALS))
    sys.exit(getattr(importlib.import_module(module), func)(sys.argv[1:]))
