"""Child processes: the CLI's conversions (``run_isolated``) and the one worker
protocol of the benchmark, the evaluator and the production of missing model
files (``run_worker`` / ``worker_main``), with one child environment (``child_env``).

Workers: ``run_worker("module:function", job, timeout_s)`` starts a fresh Python
that calls ``function(job, emit)``; ``emit(dict)`` sends an event (a stdout line
``@@ofconvert-worker <json>``) that reaches the parent's ``on_event`` as it
happens, and the function's return value (JSON) comes back through a file. A
worker that crashes, exits non-zero or outlives ``timeout_s`` raises
``WorkerFailed`` with the reason (the caller turns it into an n/a or error row);
an interrupted parent kills its worker and removes the job folder.

Conversions: run a CLI command in a child process, so that Ctrl-C / SIGTERM is clean.

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

from .errors import INTERRUPTED_EXIT, OfconvertError, first_line

INTERRUPTED_MESSAGE = "ofconvert: interrupted"
_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))
# tempfile.mkstemp(prefix=".<name>.", suffix=".tmp"): 8 characters of [a-z0-9_] in between
_TEMP_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")
_BOOTSTRAP = "from ofconvert.isolation import child_main; child_main()"
_WORKER_BOOTSTRAP = "from ofconvert.isolation import worker_main; worker_main()"
EVENT_PREFIX = "@@ofconvert-worker "


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
            elif _TEMP_NAME.match(name) and os.path.isdir(path) and not os.path.islink(path):   # a run's stage
                shutil.rmtree(path, ignore_errors=True)
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


_RUN_PREFIX = "ofconvert-run-p"   # + the CLI's pid: its child dies with it (_die_with_parent)


def sweep_run_folders():
    """Remove ``$TMPDIR/ofconvert-run-p<pid>-*`` folders of CLIs that are gone
    (``kill -9`` of the CLI leaves its folder; the next run removes it)."""
    from .fileio import pid_alive

    root = tempfile.gettempdir()
    with contextlib.suppress(OSError):
        for n in os.listdir(root):
            m = re.match(re.escape(_RUN_PREFIX) + r"(\d+)-", n)
            if m and not pid_alive(m.group(1)):
                shutil.rmtree(os.path.join(root, n), ignore_errors=True)


def _watch_listings(watch):
    """``_Listing`` of the cwd and each folder of ``watch`` (absolute, once each)."""
    folders = []
    for f in [os.getcwd(), *watch]:
        f = os.path.abspath(os.fspath(f))
        if f not in folders:
            folders.append(f)
    return [_Listing(f) for f in folders]


def _start_and_wait(child, argv, stdin, entry, private):
    """Start the child of :func:`run_isolated` (TMPDIR=``private``) and wait for its exit code."""
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
    return child.proc.wait()


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
        listings = _watch_listings(watch)
        try:
            sweep_run_folders()
            private = tempfile.mkdtemp(prefix=f"{_RUN_PREFIX}{os.getpid()}-")
        except OSError as e:
            raise OfconvertError(f"cannot create a temporary folder in {tempfile.gettempdir()}: "
                                 f"{e.strerror}") from None
        rc = None
        if child.signum is None:
            rc = _start_and_wait(child, argv, stdin, entry, private)
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


# ---------------------------------------------------------------------------
# Workers (benchmark, evaluator, production of model files)
# ---------------------------------------------------------------------------
class WorkerFailed(Exception):
    """A worker that produced no result; ``reason`` is one line for a report row."""

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


def _last_line(path):
    try:
        with open(path, errors="replace") as f:
            lines = [ln.strip() for ln in f if ln.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


def run_worker(target, job, timeout_s=None, threads=None, on_event=None):
    """Run ``target(job, emit)`` (``"module:function"``) in a fresh Python process
    with :func:`child_env` (``OMP_NUM_THREADS`` = threads) and return its result.
    ``on_event(dict)`` receives the worker's events as they come. Raises
    WorkerFailed(reason) for a crash, a non-zero exit or the timeout; an
    interrupt (KeyboardInterrupt) kills the worker and propagates."""
    import json

    from . import fileio

    with tempfile.TemporaryDirectory(prefix="ofconvert-worker-") as tmp:
        job_path, res_path = os.path.join(tmp, "job.json"), os.path.join(tmp, "result.json")
        err_path = os.path.join(tmp, "stderr.txt")
        fileio.write_json(job_path, job)
        cmd = [sys.executable, "-c", _WORKER_BOOTSTRAP, target, job_path, res_path]
        timed_out = []
        with open(err_path, "w") as err:
            proc = subprocess.Popen(cmd, env=child_env(threads), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=err, text=True, bufsize=1, errors="replace")

            def expire():
                timed_out.append(True)
                with contextlib.suppress(OSError):
                    proc.kill()

            timer = threading.Timer(timeout_s, expire) if timeout_s else None
            try:
                if timer is not None:
                    timer.start()
                for line in proc.stdout:
                    if line.startswith(EVENT_PREFIX) and on_event is not None:
                        on_event(json.loads(line[len(EVENT_PREFIX):]))
                rc = proc.wait()
            finally:
                if timer is not None:
                    timer.cancel()
                if proc.poll() is None:
                    with contextlib.suppress(OSError):
                        proc.kill()
                    proc.wait()
                proc.stdout.close()
        if timed_out:
            raise WorkerFailed(f"worker timed out after {timeout_s:.0f} s")
        if rc == 0 and os.path.isfile(res_path):
            with open(res_path) as f:
                return json.load(f)
        tail = _last_line(err_path)[:200]
        if rc < 0:
            name = signal.Signals(-rc).name if -rc in signal.valid_signals() else str(-rc)
            raise WorkerFailed(f"worker died ({name})" + (f": {tail}" if tail else ""))
        raise WorkerFailed(f"worker exited with code {rc}" + (f": {tail}" if tail else ""))


def worker_main():
    """Entry point of a worker (see ``_WORKER_BOOTSTRAP``): ``sys.argv[1:]`` =
    target, job file, result file. A user error (OfconvertError) is one stderr
    line and exit 2; anything else a traceback whose last line is the reason."""
    import importlib
    import json

    from . import fileio

    target, job_path, res_path = sys.argv[1:4]
    module, func = target.split(":")
    with open(job_path) as f:
        job = json.load(f)

    def emit(event):
        sys.stdout.write(EVENT_PREFIX + json.dumps(event) + "\n")
        sys.stdout.flush()

    try:
        result = getattr(importlib.import_module(module), func)(job, emit)
    except OfconvertError as e:
        sys.stderr.write("\n" + (first_line(e)) + "\n")
        sys.exit(2)
    fileio.write_json(res_path, result)
