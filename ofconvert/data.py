"""Image decoding and preprocessing shared by validation, calibration, bench and eval.

Preprocessing is split in two so that the expensive half can be cached as uint8:
``load_and_crop`` (decode, RGB, resize shorter side, centre crop -> HWC uint8) and
``normalize`` (uint8 NHWC batch -> float32 NCHW with the model's mean/std).
"""
import os
import warnings

import numpy as np

from .config import PreprocessConfig
from .errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm")
DATASETS_ENV = "OFCONVERT_DATASETS"


def datasets_root():
    """Folder holding the shared real images (``$OFCONVERT_DATASETS``, default
    ``../shared/datasets`` relative to the project root)."""
    env = os.environ.get(DATASETS_ENV)
    if env:
        return os.path.abspath(env)
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.path.abspath(os.path.join(here, "..", "shared", "datasets"))


def is_image_file(name):
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _pil_filter(name):
    from PIL import Image

    return {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST,
            "lanczos": Image.LANCZOS}[name]


class UnreadableImage(Exception):
    """Raised by ``load_and_crop`` for a file that is not a decodable image."""


def open_rgb(path, draft_size=None):
    """Decode ``path`` to an RGB PIL image. Grayscale, CMYK, palette and alpha images
    are converted (alpha composited on white). Truncated or non-image files raise
    ``UnreadableImage``. ``draft_size``: let the JPEG decoder downscale by a power of
    two while keeping both sides >= that size (fast path; see evaluate docs)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = Image.open(path)
            if draft_size and img.format == "JPEG":
                img.draft("RGB", (draft_size, draft_size))
            img.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise UnreadableImage(f"{path}: {e}") from None
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        bg = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, img)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return img


def resize_crop(img, cfg: PreprocessConfig):
    """Resize the shorter side to ``cfg.resize_size`` and centre-crop ``cfg.input_size``."""
    w, h = img.size
    r = cfg.resize_size
    if w <= h:
        nw, nh = r, max(r, int(round(h * r / w)))
    else:
        nw, nh = max(r, int(round(w * r / h))), r
    img = img.resize((nw, nh), _pil_filter(cfg.interpolation))
    s = cfg.input_size
    left, top = int(round((nw - s) / 2.0)), int(round((nh - s) / 2.0))
    return img.crop((left, top, left + s, top + s))


def load_and_crop(path, cfg: PreprocessConfig, fast=False):
    """Decode + resize + crop -> (input_size, input_size, 3) uint8."""
    img = open_rgb(path, draft_size=cfg.resize_size if fast else None)
    return np.asarray(resize_crop(img, cfg), dtype=np.uint8)


def normalize(batch_u8, cfg: PreprocessConfig, dtype=np.float32):
    """uint8 NHWC (or HWC) -> float NCHW normalised with the model's mean/std."""
    a = np.asarray(batch_u8)
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4 or a.shape[-1] != 3:
        raise ValueError(f"expected NHWC uint8 images, got shape {a.shape}")
    mean = np.asarray(cfg.mean, np.float32) * 255.0
    inv_std = 1.0 / (np.asarray(cfg.std, np.float32) * 255.0)
    x = (a.astype(np.float32) - mean) * inv_std
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2)).astype(dtype, copy=False)


def list_images(folder):
    """Sorted image files under ``folder`` (recursive); DataError if none."""
    if not os.path.isdir(folder):
        raise DataError(f"image folder not found: {folder}")
    out = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        out.extend(os.path.join(root, f) for f in sorted(files) if is_image_file(f))
    if not out:
        raise DataError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in {folder}")
    return out


def load_batch(paths, cfg: PreprocessConfig):
    """Preprocess ``paths`` -> (float32 NCHW batch, list of skipped paths)."""
    imgs, skipped = [], []
    for p in paths:
        try:
            imgs.append(load_and_crop(p, cfg))
        except UnreadableImage:
            skipped.append(p)
    if not imgs:
        return np.zeros((0,) + cfg.input_shape, np.float32), skipped
    return normalize(np.stack(imgs), cfg), skipped


def sample_images(n, name="imagenet-val-1300", root=None):
    """First ``n`` images (sorted) of one of the shared sets; DataError if absent."""
    folder = os.path.join(root or datasets_root(), name)
    return list_images(folder)[:n]
