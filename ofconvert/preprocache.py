"""On-disk cache of decoded + resized + cropped images (uint8 NHWC, memory-mapped).

Decoding dominates evaluation time on CPU, and it only depends on the images and
the preprocessing (not on the backend or precision), so each image is decoded
once per ``PreprocessConfig`` in parallel worker processes and written into a
``.npy`` file that every later variant reads through ``np.load(mmap_mode="r")``.

Cache entry ``<cache_dir>/<key>.npy`` + ``<key>.json`` (index: paths, skipped
files with the reason, preprocessing). The key hashes the image paths, sizes and
mtimes, the preprocessing key and the decode mode, so editing or replacing an
image invalidates it. The .npy is written under a temporary name and renamed when
complete; the JSON index is written last, so an entry without its index (a crash)
is never used.

Workers write their rows straight into the memory-mapped file (no pixel data is
pickled) and are started with the 'spawn' method (safe next to OneFlow/CUDA).
"""
import dataclasses
import hashlib
import json
import os
import time
from typing import Callable, List, Optional, Sequence

import numpy as np

from . import fileio
from .config import PreprocessConfig
from .data import UnreadableImage, load_and_crop
from .errors import OfconvertError

CACHE_ENV = "OFCONVERT_CACHE"
CACHE_VERSION = 2   # 2: torchvision-exact resize (long side truncated), EXIF orientation, 16-bit decode
_CHUNK = 16


def default_cache_dir():
    """``$OFCONVERT_CACHE`` or ``~/.cache/ofconvert``; images go in ``preproc/`` below."""
    return os.path.abspath(os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "ofconvert"))


@dataclasses.dataclass(frozen=True)
class CacheOptions:
    cache_dir: Optional[str] = None     # None: default_cache_dir()
    workers: Optional[int] = None       # decode processes; None: all cores (max 8); 1: in-process
    fast_decode: bool = False           # JPEG draft mode (see docs/eval.md for the measured tolerance)
    rebuild: bool = False               # ignore an existing entry


@dataclasses.dataclass
class CachedImages:
    """A complete cache entry. ``array`` is (N, S, S, 3) uint8, row i = ``paths[i]``;
    rows of skipped images are zero and excluded from ``valid``."""

    npy_path: str
    index_path: str
    paths: List[str]
    skipped: dict                       # path -> reason
    preprocess: PreprocessConfig
    fast_decode: bool
    hit: bool                           # True when reused, False when built now
    build_seconds: float = 0.0
    workers: int = 0                    # decode processes used to build it (1: in-process; 0: reused)

    @property
    def array(self):
        return np.load(self.npy_path, mmap_mode="r")

    @property
    def valid(self) -> np.ndarray:
        """Row indices of the images that decoded."""
        bad = set(self.skipped)
        return np.array([i for i, p in enumerate(self.paths) if p not in bad], dtype=np.int64)


def cache_key(paths: Sequence[str], cfg: PreprocessConfig, fast_decode=False) -> str:
    h = hashlib.sha256()
    h.update(f"v{CACHE_VERSION}|{cfg.key()}|crop{cfg.crop_pct}|fast{int(bool(fast_decode))}\n".encode())
    for p in paths:
        try:
            st = os.stat(p)
            sig = f"{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            sig = "missing"
        h.update(f"{os.path.abspath(p)}|{sig}\n".encode())
    return h.hexdigest()[:24]


def get_cached_images(paths: Sequence[str], cfg: PreprocessConfig, options: CacheOptions = CacheOptions(),
                      progress: Optional[Callable[[int], None]] = None) -> CachedImages:
    """Return the cache entry for ``paths`` x ``cfg``, building it if needed.
    ``progress(n)`` is called with the number of images finished since the last call."""
    paths = [os.path.abspath(p) for p in paths]
    if not paths:
        raise OfconvertError("no images to preprocess")
    folder = os.path.join(options.cache_dir or default_cache_dir(), "preproc")
    key = cache_key(paths, cfg, options.fast_decode)
    npy, index = os.path.join(folder, key + ".npy"), os.path.join(folder, key + ".json")
    if not options.rebuild:
        entry = _load_entry(npy, index, paths, cfg)
        if entry is not None:
            if progress:
                progress(len(paths))
            return entry
    t0 = time.perf_counter()
    skipped, workers = _build(npy, paths, cfg, options, progress)
    fileio.write_json(index, {
        "version": CACHE_VERSION, "key": key, "preprocess": cfg.to_dict(), "fast_decode": options.fast_decode,
        "shape": [len(paths), cfg.input_size, cfg.input_size, 3], "paths": paths,
        "skipped": [{"path": p, "reason": r} for p, r in skipped.items()],
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    })
    return CachedImages(npy, index, paths, skipped, cfg, options.fast_decode, hit=False,
                        build_seconds=time.perf_counter() - t0, workers=workers)


def _load_entry(npy, index, paths, cfg):
    if not (os.path.isfile(npy) and os.path.isfile(index)):
        return None
    try:
        with open(index, encoding="utf-8") as f:
            meta = json.load(f)
        arr = np.load(npy, mmap_mode="r")
    except (OSError, ValueError):
        return None
    if (meta.get("paths") != paths or arr.shape != (len(paths), cfg.input_size, cfg.input_size, 3)
            or arr.dtype != np.uint8):
        return None
    skipped = {s["path"]: s["reason"] for s in meta.get("skipped", [])}
    return CachedImages(npy, index, paths, skipped, cfg, bool(meta.get("fast_decode")), hit=True)


def _plan(options, n):
    """(worker processes, images per chunk): about 4 chunks per worker, at most _CHUNK."""
    w = max(1, min(int(options.workers or min(os.cpu_count() or 1, 8)), n))
    chunk = max(1, min(_CHUNK, -(-n // (4 * w))))
    return w, chunk


def _build(npy, paths, cfg, options, progress):
    shape = (len(paths), cfg.input_size, cfg.input_size, 3)
    nw, size = _plan(options, len(paths))
    chunks = [list(range(i, min(i + size, len(paths)))) for i in range(0, len(paths), size)]
    skipped = {}
    with fileio.atomic_path(npy) as tmp:
        mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        del mm  # workers reopen it; the header is on disk
        jobs = [(tmp, [(i, paths[i]) for i in c], cfg.to_json(), options.fast_decode) for c in chunks]
        if nw == 1:
            results = map(_decode_chunk, jobs)
            _collect(results, skipped, progress)
        else:
            import multiprocessing as mp

            with mp.get_context("spawn").Pool(nw) as pool:
                _collect(pool.imap_unordered(_decode_chunk, jobs), skipped, progress)
    return {p: skipped[p] for p in paths if p in skipped}, nw


def _collect(results, skipped, progress):
    for n_done, bad in results:
        skipped.update(bad)
        if progress:
            progress(n_done)


def _decode_chunk(job):
    """Worker: decode ``items`` into rows of the memory-mapped .npy at ``npy``.
    Returns (number of images, {path: reason} of those skipped)."""
    npy, items, cfg_json, fast = job
    cfg = PreprocessConfig.from_json(cfg_json)
    mm = np.load(npy, mmap_mode="r+")
    bad = {}
    for i, p in items:
        try:
            mm[i] = load_and_crop(p, cfg, fast=fast)
        except UnreadableImage as e:
            bad[p] = str(e).replace(p + ": ", "", 1)
        except Exception as e:  # decompression bombs, odd modes...: skip and count, never crash
            bad[p] = f"{type(e).__name__}: {e}"
    del mm  # no flush(): msync of the whole map per chunk is slow; the page cache is shared
    return len(items), bad
