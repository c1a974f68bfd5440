"""tqdm progress bars on stderr, fed directly or by worker events
(start/progress/done); silent when disabled or without tqdm."""
import sys


class Progress:
    def __init__(self, enabled, total, desc, unit="img", leave=False):
        self.enabled, self.total, self.desc, self.unit, self.leave = enabled, total, desc, unit, leave
        self.bar = None

    def __enter__(self):
        if self.enabled and self.total:
            self._open(self.total, self.desc)
        return self

    def _open(self, total, desc):
        try:
            from tqdm import tqdm
        except ImportError:
            return
        self.bar = tqdm(total=total, desc=desc, unit=self.unit, dynamic_ncols=True, leave=self.leave, file=sys.stderr)

    def update(self, n=1):
        if self.bar is not None:
            self.bar.update(n)

    def note(self, text):
        if self.bar is not None:
            self.bar.set_postfix_str(text)

    def event(self, ev):
        """A worker event: ``start`` (id, desc, total) opens a bar, ``progress`` (n)
        advances it, ``done`` closes it."""
        if not self.enabled:
            return
        if ev["event"] == "start":
            self._close()
            self._open(ev["total"], ev["desc"])
        elif ev["event"] == "progress":
            self.update(ev["n"])
        elif ev["event"] == "done":
            self._close()

    def _close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __exit__(self, *exc):
        self._close()
