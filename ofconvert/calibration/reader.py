"""Calibration images: listing (folder, manifest or calibration-set folder), the
ONNX Runtime-style data reader, the set's content hash, and ``build_calib_set``
(``ofconvert calib-set``)."""
import hashlib
import os

import numpy as np

from ..errors import DataError

MANIFEST_NAME = "manifest.txt"


def list_calibration_images(data, num_images=None):
    """Image paths of a calibration set: ``data`` is a manifest file (one path per
    line, relative to the manifest's folder; ``#`` comments and blank lines ignored),
    a folder holding ``manifest.txt`` (e.g. ``calib/imagenet1k``), or an image folder
    (recursive, sorted). ``num_images``: an evenly spread, deterministic subset."""
    from ..data import list_images

    if isinstance(data, (list, tuple)):   # already a list of image paths (e.g. a split of a set)
        paths = [os.fspath(p) for p in data]
        missing = [p for p in paths if not os.path.isfile(p)]
        if not paths or missing:
            raise DataError("calibration image list: "
                            f"{'empty' if not paths else f'{len(missing)} file(s) not found, e.g. {missing[0]}'}")
        return _subset(paths, num_images)
    data = os.fspath(data)
    if os.path.isdir(data) and os.path.isfile(os.path.join(data, MANIFEST_NAME)):
        data = os.path.join(data, MANIFEST_NAME)   # a calibration-set folder (build_calib_set)
    if os.path.isdir(data):
        paths = list_images(data)
    elif os.path.isfile(data):
        base = os.path.dirname(os.path.abspath(data))
        try:
            with open(data, encoding="utf-8") as f:
                lines = [ln.strip() for ln in f]
        except UnicodeDecodeError:
            raise DataError(f"{data} is not a calibration manifest (a text file with one image path per line) "
                            f"nor an image folder") from None
        paths = [p if os.path.isabs(p) else os.path.normpath(os.path.join(base, p))
                 for p in lines if p and not p.startswith("#")]
        if not paths:
            raise DataError(f"calibration manifest lists no images: {data}")
        missing = [p for p in paths if not os.path.isfile(p)]
        if missing:
            raise DataError(f"calibration manifest {data}: {len(missing)} listed file(s) not found, "
                            f"e.g. {missing[0]}")
    else:
        raise DataError(f"calibration data not found: {data} (expected an image folder or a manifest file)")
    return _subset(paths, num_images)


def _subset(paths, num_images):
    if num_images is not None:
        if int(num_images) < 1:
            raise DataError(f"number of calibration images must be >= 1, got {num_images}")
        n = min(int(num_images), len(paths))
        idx = np.linspace(0, len(paths), n, endpoint=False).astype(int)
        paths = [paths[i] for i in idx]
    return paths


def calibration_set_hash(paths):
    """sha256 over the images' bytes in order: identifies a set wherever it lives,
    without decoding anything."""
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            h.update(hashlib.sha256(f.read()).digest())
    return h.hexdigest()


class ImageCalibrationDataReader:
    """ONNX Runtime ``CalibrationDataReader``-style reader: ``get_next()`` returns
    ``{input_name: float32 NCHW batch}`` or None at the end; ``rewind()`` starts over.

    Images are decoded with the model's preprocessing (``data.load_and_crop`` then
    ``data.normalize``) in the given (sorted) order. Unreadable files (not an image,
    truncated) are skipped and counted in ``skipped``; grayscale / CMYK / alpha images
    are converted to RGB by ``data.open_rgb``.
    """

    def __init__(self, paths, preprocess, input_name="input", batch_size=8, raw=False):
        if not paths:
            raise DataError("no calibration images")
        self.paths = list(paths)
        self.preprocess = preprocess
        self.input_name = input_name
        self.batch_size = max(1, int(batch_size))
        self.raw = bool(raw)   # a raw-image model (--input-format uint8-nhwc): uint8 NHWC batches as decoded
        self.rewind()

    def rewind(self):
        self._pos = 0
        self.skipped = []
        self.num_used = 0

    def __len__(self):
        return len(self.paths)

    def get_next(self):
        from ..data import UnreadableImage, load_and_crop, normalize

        imgs = []
        while len(imgs) < self.batch_size and self._pos < len(self.paths):
            p = self.paths[self._pos]
            self._pos += 1
            try:
                imgs.append(load_and_crop(p, self.preprocess))
            except UnreadableImage:
                self.skipped.append(p)
        if not imgs:
            return None
        self.num_used += len(imgs)
        return {self.input_name: np.stack(imgs) if self.raw else normalize(np.stack(imgs), self.preprocess)}

    def __iter__(self):
        while True:
            batch = self.get_next()
            if batch is None:
                return
            yield batch


def build_calib_set(src_dir, dst_dir, per_class=1):
    """Pick ``per_class`` images per class (first ones in sorted order) from an
    ImageFolder tree (one sub-folder per class) and write ``dst_dir/manifest.txt``
    (paths relative to dst_dir) and ``dst_dir/manifest.json``. No image is copied.
    Returns the manifest path."""
    from ..data import walk_images
    from ..fileio import write_json, write_text

    src_dir, dst_dir = os.path.abspath(os.fspath(src_dir)), os.path.abspath(os.fspath(dst_dir))
    if int(per_class) < 1:
        raise DataError(f"--per-class must be >= 1, got {per_class}")
    if not os.path.isdir(src_dir):
        raise DataError(f"calibration source folder not found: {src_dir}")
    chosen, classes, short = [], 0, 0
    for cls in sorted(os.listdir(src_dir)):
        cdir = os.path.join(src_dir, cls)
        if not os.path.isdir(cdir):
            continue
        files = walk_images(cdir)
        if not files:
            continue
        classes += 1
        short += len(files) < per_class
        chosen.extend(files[:per_class])
    if not chosen:
        raise DataError(f"{src_dir} is not an ImageFolder tree (no class sub-folders with images)")
    manifest = os.path.join(dst_dir, MANIFEST_NAME)
    rel = [os.path.relpath(p, dst_dir) for p in chosen]
    write_text(manifest, "\n".join(rel) + "\n")
    write_json(os.path.join(dst_dir, "manifest.json"), {
        "source": src_dir, "per_class": int(per_class), "classes": classes, "images": len(chosen),
        "classes_with_fewer_images": short, "selection": "first per_class files of each class, sorted by name",
        "paths": "relative to this folder",
    })
    return manifest
