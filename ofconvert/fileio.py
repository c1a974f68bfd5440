"""Atomic file writing: a temp file in the destination folder, then os.replace.
A crash or an error never leaves a half-written ONNX, engine, cache or JSON."""
import contextlib
import hashlib
import json
import os
import re
import signal
import tempfile

from .errors import OfconvertError


def check_writable_dir(path):
    """The folder that will hold ``path``: created if missing; OfconvertError if impossible."""
    d = os.path.dirname(os.path.abspath(path)) or "."
    if not os.path.isdir(d):
        check_creatable_dir(d)
        try:
            os.makedirs(d, exist_ok=True)
        except OSError as e:
            raise OfconvertError(f"cannot create output folder {d}: {e.strerror}") from None
    _probe(d, "output folder is not writable")
    return d


def _probe(folder, message):
    """Create and remove a file in ``folder`` (not os.access: root passes os.access
    on a read-only mount)."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".ofconvert-probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OfconvertError(f"{message}: {folder} ({e.strerror})") from None


def check_creatable_dir(folder):
    """OfconvertError unless ``folder`` is a writable folder or could be created
    (its nearest existing ancestor is a writable folder). Creates nothing."""
    d = os.path.abspath(folder)
    if os.path.exists(d) and not os.path.isdir(d):
        raise OfconvertError(f"{folder} names a file, not a folder")
    probe_in = d
    while not os.path.exists(probe_in):
        probe_in = os.path.dirname(probe_in)
    if not os.path.isdir(probe_in):
        raise OfconvertError(f"cannot create folder {folder}: {probe_in} is a file")
    _probe(probe_in, "cannot write in")
    return d


def _not_a_folder(path):
    if os.path.isdir(path):
        raise OfconvertError(f"output path is a folder, expected a file name: {path}")


# temp files are ".<name>.p<pid>.<8 random chars>.tmp": the pid says whose they are
_OWNED_TEMP = re.compile(r"^\..+\.p(\d+)\.[a-z0-9_]{8}\.tmp$")


def temp_prefix(name):
    """``mkstemp`` prefix of a temp file for ``name`` owned by this process."""
    return f".{name}.p{os.getpid()}."


def pid_alive(pid):
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def sweep_orphans(folder):
    """Remove temp files in ``folder`` whose owner process is gone (a run killed
    with SIGKILL cannot clean up after itself: the next write there does)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for n in names:
        m = _OWNED_TEMP.match(n)
        if m and int(m.group(1)) != os.getpid() and not pid_alive(m.group(1)):
            path = os.path.join(folder, n)
            if os.path.isdir(path) and not os.path.islink(path):   # a run's stage folder
                import shutil

                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.unlink(path)


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; on success rename it onto ``path``."""
    _not_a_folder(path)
    d = check_writable_dir(path)
    sweep_orphans(d)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(os.path.basename(path)), suffix=".tmp", dir=d)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)   # mkstemp makes 0600; give the file the usual permissions
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_bytes(path, data: bytes):
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def write_text(path, text: str):
    write_bytes(path, text.encode("utf-8"))


def json_text(obj) -> str:
    """The JSON text every report is written as (numpy values and ``to_dict`` objects allowed)."""
    return json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n"


def write_json(path, obj):
    write_text(path, json_text(obj))


def _json_default(o):
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    if hasattr(o, "to_dict"):
        return o.to_dict()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def sha256_file(path, chunk=1 << 20):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def commit_lock(folder):
    """Inside: SIGINT/SIGTERM held back in this thread and an exclusive lock on
    ``folder``, so two writers committing there leave one complete set, never a
    mix, and a signal cannot land between two renames (Transaction, Stage)."""
    import fcntl

    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    dfd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(dfd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(dfd)           # releases the lock
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class Transaction:
    """Temp files beside the target; ``commit`` moves them all in place with
    SIGINT/SIGTERM held back, so the set is replaced whole or not at all."""

    def __init__(self, target):
        self.target = str(target)
        _not_a_folder(self.target)
        self.folder = check_writable_dir(self.target)
        self.tmp = None
        self.extra = {}            # final path -> temp path
        self.stale = []            # files to remove on commit (reports of the old file)
        sweep_orphans(self.folder)
        self.tmp = self._mktemp("")

    def _mktemp(self, suffix):
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(os.path.basename(self.target) + suffix), suffix=".tmp",
                                   dir=self.folder)
        os.close(fd)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)   # mkstemp makes 0600; give the file the usual permissions
        return tmp

    def add(self, suffix):
        """A temp path for ``<target><suffix>`` (a report)."""
        tmp = self.extra[self.target + suffix] = self._mktemp(suffix)
        return tmp

    def drop(self, suffix):
        """``<target><suffix>`` describes the old file: remove it on commit."""
        self.stale.append(self.target + suffix)

    def commit(self):
        """Rename the set in place. SIGINT/SIGTERM are held back in this thread, and
        an exclusive lock on the folder serialises concurrent commits to it, so two
        writers of one target leave one writer's complete set, never a mix."""
        with commit_lock(self.folder):
            os.replace(self.tmp, self.target)
            for final, tmp in self.extra.items():
                os.replace(tmp, final)
            for path in self.stale:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            self.tmp, self.extra = None, {}

    def cleanup(self):
        for p in [self.tmp] + list(self.extra.values()):
            if p:
                with contextlib.suppress(OSError):
                    os.unlink(p)


@contextlib.contextmanager
def transaction(target):
    """``with transaction("m.onnx") as tx``: write ``tx.tmp`` (and ``tx.add(".json")``
    reports), then ``tx.commit()``; without a commit (error, signal) every temp
    file is removed and the existing files stay as they were."""
    tx = Transaction(target)
    try:
        yield tx
    finally:
        tx.cleanup()


class Stage:
    """One conversion's transaction: its artefacts are written into a hidden folder
    beside their final place (``.stage.p<pid>.<rand>.tmp``, swept if the run is
    killed), read from there by the later steps, and moved in together by
    ``commit`` (signals held, folder locked, as ``Transaction.commit``). Without a
    commit nothing of the run is left: not the artefacts, not the folder."""

    def __init__(self, folder):
        self.final = os.path.abspath(folder)
        self.folder = None         # created on first use
        self.stale = []            # final paths to remove on commit

    def path(self, final_path):
        """Where the artefact that ends up at ``final_path`` is written now."""
        if os.path.dirname(os.path.abspath(final_path)) != self.final:
            raise OfconvertError(f"{final_path} is not in the run's output folder {self.final}")
        if self.folder is None:
            check_writable_dir(os.path.join(self.final, "x"))
            sweep_orphans(self.final)
            self.folder = tempfile.mkdtemp(prefix=temp_prefix("stage"), suffix=".tmp", dir=self.final)
        return os.path.join(self.folder, os.path.basename(final_path))

    def drop(self, final_path):
        """``final_path`` describes an old file: removed on commit."""
        self.stale.append(os.path.abspath(final_path))

    def commit(self):
        import shutil

        if self.folder is None:
            return []
        moved = []
        with commit_lock(self.final):
            for name in sorted(os.listdir(self.folder)):
                if name.endswith(".json"):
                    self._relocate(os.path.join(self.folder, name))
                os.replace(os.path.join(self.folder, name), os.path.join(self.final, name))
                moved.append(os.path.join(self.final, name))
            for path in self.stale:
                if path not in moved:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None
        return moved

    def _relocate(self, path):
        """A JSON report written in the stage names the final paths, not the stage's."""
        def fix(v):
            if isinstance(v, str):
                return v.replace(self.folder + os.sep, self.final + os.sep)
            if isinstance(v, list):
                return [fix(x) for x in v]
            if isinstance(v, dict):
                return {k: fix(x) for k, x in v.items()}
            return v

        try:
            with open(path, encoding="utf-8") as f:
                obj = json.load(f)
        except (OSError, ValueError):
            return
        fixed = fix(obj)
        if fixed != obj:
            with open(path, "w", encoding="utf-8") as f:
                f.write(json_text(fixed))

    def cleanup(self):
        import shutil

        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None
