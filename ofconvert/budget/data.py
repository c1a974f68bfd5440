"""The check set: images judging a flip budget, decoded once (``preprocache``),
kept as uint8 and normalised batch by batch; the fp32 reference logits
(:class:`CheckSet`: what every candidate is judged against); the default split
of a calibration set into calibration and check halves; overlap between image
sets by file content."""
import dataclasses
import functools
import hashlib
import os
from typing import Optional

import numpy as np

from ..errors import DataError, OfconvertError, first_line


def split_calibration_set(paths, check_fraction=0.5):
    """(calibration paths, check paths): an evenly spread, deterministic
    ``check_fraction`` of ``paths`` is the check set, the rest calibrates. For a
    1-per-class set sorted by class both halves cover half of the classes each."""
    paths = list(paths)
    if not 0 < check_fraction < 1:
        raise OfconvertError(f"check fraction must be in (0, 1), got {check_fraction}")
    n_check = int(round(len(paths) * check_fraction))
    if n_check < 1 or n_check >= len(paths):
        raise DataError(f"cannot split {len(paths)} calibration image(s) into calibration and check sets: "
                        "give --check-data DIR")
    idx = set(np.linspace(0, len(paths), n_check, endpoint=False).astype(int).tolist())
    return [p for i, p in enumerate(paths) if i not in idx], [p for i, p in enumerate(paths) if i in idx]


def content_hashes(paths):
    """{sha256 of the file bytes: path}."""
    out = {}
    for p in paths:
        with open(p, "rb") as f:
            out[hashlib.sha256(f.read()).hexdigest()] = p
    return out


def overlap(a, b):
    """Paths of ``b`` whose content equals a file of ``a`` (same bytes, any name)."""
    ha = content_hashes(a)
    return [p for h, p in content_hashes(b).items() if h in ha]


def require_disjoint(calib_paths, check_paths, calib_name="--calib", check_name="--check-data"):
    """OfconvertError (one line) when a check image has the content of a calibration
    image (same bytes, whatever the path or manifest): a check set that saw the
    calibration judges the calibration on its own images and under-counts flips."""
    shared = overlap(calib_paths, check_paths)
    if shared:
        raise OfconvertError(
            f"{check_name} shares {len(shared)} of its {len(check_paths)} image(s) with {calib_name} "
            f"(same file content, e.g. {shared[0]}): the check set must not hold calibration images; give a "
            f"separate folder, or leave out {check_name} to split {calib_name} into calibration and check halves")


class ImageSet:
    """Decoded images (uint8 NHWC, built once by ``preprocache``) + preprocessing."""

    def __init__(self, paths, preprocess, workers=None):
        from ..preprocache import CacheOptions, get_cached_images

        if not paths:
            raise DataError("no check images")
        entry = get_cached_images(list(paths), preprocess, CacheOptions(workers=workers))
        valid = entry.valid
        if len(valid) == 0:
            raise DataError(f"no readable check images ({len(entry.skipped)} unreadable)")
        self.u8 = np.ascontiguousarray(entry.array[valid])
        self.paths = [entry.paths[i] for i in valid]
        self.skipped = len(entry.skipped)
        self.preprocess = preprocess

    def __len__(self):
        return len(self.u8)

    def reorder(self, idx):
        """Put image ``idx[i]`` at row i (the search runs the images that move most first)."""
        idx = np.asarray(idx)
        self.u8 = np.ascontiguousarray(self.u8[idx])
        self.paths = [self.paths[i] for i in idx]

    def batches(self, batch_size=50, limit=None):
        from ..data import normalize

        n = len(self) if limit is None else min(limit, len(self))
        for i in range(0, n, batch_size):
            yield normalize(self.u8[i:min(i + batch_size, n)], self.preprocess)


@dataclasses.dataclass
class CheckSet:
    """What a candidate is judged against: the check ``images``, the fp32 model's
    logits on them (``ref``, one row per image), the ONNX Runtime intra-op
    ``threads`` candidates run with and the :class:`~.search.SpeedMeter` that
    times them against fp32 (None: flips only)."""

    images: ImageSet
    ref: np.ndarray
    threads: int = 2
    meter: Optional[object] = None   # a SpeedMeter

    def logits(self, model):
        """A ModelProto's logits on the check images."""
        return logits(session(model, self.threads), self.images)

    def reorder(self, idx):
        """Put image ``idx[i]`` (and its fp32 logits) at row i, in place: before any
        candidate is judged (the search runs the images that move most first)."""
        self.images.reorder(idx)
        self.ref = np.ascontiguousarray(self.ref[np.asarray(idx)])
        self.__dict__.pop("reference", None)

    @functools.cached_property
    def reference(self):
        """``ref`` with its margins computed once (:class:`.judge.Reference`)."""
        from .judge import Reference

        return Reference(self.ref)

    def untimed(self):
        """The same check set without the meter (flavours whose CPU speed means nothing)."""
        return dataclasses.replace(self, meter=None)


class Session:
    """An ONNX Runtime CPU session of a ModelProto that keeps the model (the speed
    meter may time it on another backend): ``run`` / ``get_inputs`` as ORT's."""

    def __init__(self, model, threads):
        from ..onnx_io import ort_session

        self.model = model
        self.ort = ort_session(model, purpose="candidate", threads=threads)

    def run(self, *args, **kwargs):
        return self.ort.run(*args, **kwargs)

    def get_inputs(self):
        return self.ort.get_inputs()


def session(model, threads=2):
    """A :class:`Session` for a ModelProto, full graph optimisation (the Q/DQ
    fusions), ``threads`` intra-op threads, one inter-op thread."""
    try:
        return Session(model, threads)
    except Exception as e:
        raise OfconvertError(f"ONNX Runtime cannot load a candidate model: {first_line(e)}") from None


class OpenVINOSession:
    """A model run by the ``openvino`` backend (f32 arithmetic) behind the session
    interface the speed meter times: ``run(None, feed)``, ``get_inputs()``."""

    def __init__(self, model, threads):
        import tempfile
        import types

        import onnx

        from ..runners import make_runner

        self._dir = tempfile.TemporaryDirectory(prefix="ofconvert-ov-")
        path = os.path.join(self._dir.name, "candidate.onnx")
        onnx.save(model, path)
        self.runner = make_runner("openvino", path, threads=threads).activate()
        inp = model.graph.input[0]
        self._inputs = [types.SimpleNamespace(name=inp.name, type="tensor(float)")]

    def get_inputs(self):
        return self._inputs

    def run(self, _names, feed):
        return [self.runner.infer(next(iter(feed.values())))]

    def close(self):
        self.runner.deactivate()
        self._dir.cleanup()


def iter_logits(sess, images, batch_size=50, limit=None):
    """First output of ``sess`` (float32) over ``images``, batch by batch (float32
    input cast to the model's type)."""
    inp = sess.get_inputs()[0]
    dtype = np.float16 if "float16" in inp.type else np.float32
    for x in images.batches(batch_size, limit):
        yield sess.run(None, {inp.name: x.astype(dtype, copy=False)})[0].astype(np.float32)


def logits(sess, images, batch_size=50, limit=None):
    """First output of ``sess`` over ``images`` (see :func:`iter_logits`)."""
    return np.concatenate(list(iter_logits(sess, images, batch_size, limit)))
