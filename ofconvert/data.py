"""Image decoding and preprocessing shared by validation, calibration, bench and eval.

Preprocessing is split in two so that the expensive half can be cached as uint8:
``load_and_crop`` (decode, RGB, resize shorter side, centre crop -> HWC uint8) and
``normalize`` (uint8 NHWC batch -> float32 NCHW with the model's mean/std).

Decoding rules (``open_rgb``), the same for every raster type Pillow reads:

* EXIF orientation is applied (``ImageOps.exif_transpose``): the pixels are the
  ones a photo viewer shows, so a portrait photo stays portrait. (torchvision's
  ``ImageFolder`` loader does not do this; 1 of the 1000 images of
  imagenet-sample-1000 carries orientation 6.) Unparsable EXIF leaves the pixels
  as stored.
* Multi-frame files (GIF, APNG, animated WebP, multi-page TIFF): the first frame.
* Transparency (RGBA, LA, PA, a palette or grey/RGB image with a transparent
  colour) is composited on white.
* 8-bit modes (``1``, ``L``, ``P``, ``CMYK``, ``YCbCr``, ``LAB``...) convert with
  Pillow's own conversion (CMYK without its ICC profile).
* More than 8 bits per sample is scaled by its bit depth, never clipped:
  16-bit grey (``I;16``, ``I;16B``, ``I;16L``, ``I;16N``) -> ``value >> 8`` (the
  high byte, as Pillow itself decodes 16-bit RGB PNGs); 32-bit integer ``I`` ->
  negatives 0, then ``>> 8`` when every value fits in 0..65535 (16-bit data:
  PGM, older Pillows' 16-bit PNG), else ``>> 23`` (the whole int32 range);
  float ``F`` -> 0..1 data (every finite value within [0, 1]) times 255,
  anything else taken as 0..255, then rounded and clipped (NaN -> 0).
* A file that cannot be decoded raises ``UnreadableImage("<path>: <reason>")``
  with the actual reason: a folder, file not found, empty file, not an image
  (text file, HTML page, PDF, zip...), truncated JPEG/PNG/..., an image type this
  Pillow cannot decode (HEIC, AVIF), an unsupported colour mode.

``resize_crop`` reproduces torchvision's ``Resize(int)`` + ``CenterCrop`` (and so
timm's eval transform) to the pixel: see :func:`resized_size` and :func:`center_crop_box`.
"""
import os
import struct
import warnings

import numpy as np

from .config import PreprocessConfig
from .errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff",
                    ".ppm", ".pgm", ".pbm", ".pnm", ".avif")
DATASETS_ENV = "OFCONVERT_DATASETS"
_ORIENTATION = 0x0112          # EXIF tag
_SNIFF_BYTES = 512


def datasets_root():
    """Folder holding the shared real images (``$OFCONVERT_DATASETS``, default
    ``../shared/datasets`` relative to the project root)."""
    env = os.environ.get(DATASETS_ENV)
    if env:
        return os.path.abspath(env)
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.path.abspath(os.path.join(here, "..", "shared", "datasets"))


#: the labelled validation images under datasets_root() that validation and raw-input checks read
REAL_SET = "imagenet-val-1300"


def real_images(n, root=None):
    """``n`` real images spread over the shared validation set (deterministic)."""
    folder = os.path.join(root or datasets_root(), REAL_SET)
    paths = list_images(folder)
    step = max(1, len(paths) // n)
    return paths[::step][:n]


def is_image_file(name):
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _pil_filter(name):
    from PIL import Image

    return {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST,
            "lanczos": Image.LANCZOS}[name]


class UnreadableImage(Exception):
    """Raised by ``open_rgb``/``load_and_crop`` for a file that is not a decodable
    image; the message is ``"<path>: <reason>"``."""


# -- what a file is, when Pillow cannot tell ------------------------------------------

def looks_like_text(head: bytes) -> bool:
    """True if ``head`` (the first bytes of a file) reads as UTF-8 text without NULs."""
    if not head or b"\0" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as e:
        return e.start >= len(head) - 3       # only a multi-byte character cut at the end
    return True


_IMAGE_SIGNATURES = ((b"\xff\xd8", "JPEG"), (b"\x89PNG", "PNG"), (b"GIF8", "GIF"), (b"BM", "BMP"),
                     (b"II*\0", "TIFF"), (b"MM\0*", "TIFF"))
_OTHER_SIGNATURES = ((b"%PDF", "PDF document"), (b"PK\x03\x04", "zip archive"), (b"\x1f\x8b", "gzip archive"),
                     (b"\x93NUMPY", "NumPy array"), (b"\x80\x02", "Python pickle"),
                     (b"\x80\x03", "Python pickle"), (b"\x80\x04", "Python pickle"), (b"\x80\x05", "Python pickle"))


def _text_kind(head):
    t = head.decode("utf-8", "replace").lstrip("\ufeff \t\r\n").lower()
    if t.startswith("<svg") or (t.startswith("<?xml") and "<svg" in t):
        return "not a raster image (SVG vector drawing)"
    if t.startswith(("<!doctype html", "<html")):
        return "not an image (HTML page; a failed download?)"
    return "not an image (text file)"


def _iso_media_kind(head):
    """HEIC/AVIF (ISO base media ``ftyp`` box) -> reason, else None."""
    if head[4:8] != b"ftyp":
        return None
    brand = head[8:12]
    if brand.startswith(b"avi"):
        return "AVIF image that this Pillow cannot decode (upgrade Pillow to a build with AVIF support)"
    if brand in (b"heic", b"heix", b"hevc", b"hevx", b"mif1", b"msf1"):
        return "HEIC/HEIF image: Pillow cannot decode it (convert it to JPEG or PNG)"
    return "not an image (video or other ISO media file)"


def describe_unidentified(head: bytes, size: int) -> str:
    """Reason why Pillow could not identify a file starting with ``head`` (``size`` bytes)."""
    if size == 0:
        return "empty file (0 bytes)"
    iso = _iso_media_kind(head)
    if iso:
        return iso
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return f"truncated or corrupt WEBP file ({size} bytes)"
    for sig, kind in _IMAGE_SIGNATURES:
        if head.startswith(sig):
            return f"truncated or corrupt {kind} file ({size} bytes)"
    for sig, kind in _OTHER_SIGNATURES:
        if head.startswith(sig):
            return f"not an image ({kind})"
    if looks_like_text(head):
        return _text_kind(head)
    return f"not an image (unrecognised format; first bytes {head[:8].hex(' ')})"


def _decode_failure(fmt, e):
    """Reason for an exception raised while Pillow decoded a file of format ``fmt``."""
    msg = str(e).strip() or type(e).__name__
    kind = f"{fmt} file" if fmt else "image file"
    if isinstance(e, EOFError) or "truncated" in msg.lower():
        detail = msg.replace("image file is truncated", "").strip(" ()")
        return f"truncated {kind}" + (f" ({detail})" if detail else "")
    return f"corrupt or unsupported {kind} ({type(e).__name__}: {msg})"


# -- decoding -------------------------------------------------------------------------

_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, struct.error)


def _open_file(path):
    """Binary file object for ``path``; UnreadableImage for a folder, a missing or
    unreadable file."""
    if os.path.isdir(path):
        raise UnreadableImage(f"{path}: is a folder, not an image file")
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise UnreadableImage(f"{path}: file not found") from None
    except OSError as e:
        raise UnreadableImage(f"{path}: cannot read the file ({e.strerror or e})") from None


def _load(f, path, draft_size):
    """Open + decode (first frame) the image in file object ``f``."""
    from PIL import Image, UnidentifiedImageError

    fmt = None
    try:
        img = Image.open(f)
        fmt = img.format
        if draft_size and fmt == "JPEG":
            img.draft("RGB", (draft_size, draft_size))
        img.load()
    except UnidentifiedImageError:
        f.seek(0)
        reason = describe_unidentified(f.read(_SNIFF_BYTES), os.fstat(f.fileno()).st_size)
        raise UnreadableImage(f"{path}: {reason}") from None
    except Image.DecompressionBombError as e:
        raise UnreadableImage(f"{path}: too many pixels to decode safely ({e})") from None
    except _DECODE_ERRORS as e:
        raise UnreadableImage(f"{path}: {_decode_failure(fmt, e)}") from None
    return img


def _upright(img):
    """``img`` turned as its EXIF orientation says (unchanged without one, or when
    the EXIF block cannot be parsed)."""
    from PIL import ImageOps

    try:
        orientation = img.getexif().get(_ORIENTATION)
        if orientation in (2, 3, 4, 5, 6, 7, 8):
            return ImageOps.exif_transpose(img)
    except _DECODE_ERRORS + (KeyError,):
        pass
    return img


def _float_to_u8(a):
    """Float samples -> uint8: 0..1 data times 255, anything else as 0..255."""
    a = a.astype(np.float64)
    finite = a[np.isfinite(a)]
    if finite.size and finite.min() >= 0.0 and finite.max() <= 1.0:
        a = a * 255.0
    a = np.nan_to_num(a, nan=0.0, posinf=255.0, neginf=0.0)
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def _int32_to_u8(a):
    """32-bit integer samples -> uint8: 16-bit data (max <= 65535) >> 8, else >> 23."""
    a = np.clip(a.astype(np.int64), 0, None)
    shift = 8 if a.max(initial=0) <= 0xFFFF else 23
    return (a >> shift).astype(np.uint8)


def _to_8bit_grey(img):
    """A high-bit-depth grey image (I;16*, I, F) -> ``L``, or ``LA`` when it has a
    transparent grey value."""
    from PIL import Image

    a = np.asarray(img)
    if img.mode == "F":
        grey = _float_to_u8(a)
    elif img.mode == "I":
        grey = _int32_to_u8(a)
    else:                                       # I;16, I;16B, I;16L, I;16N
        grey = (a.astype(np.uint16) >> 8).astype(np.uint8)
    out = Image.fromarray(grey)
    transparent = img.info.get("transparency")
    if isinstance(transparent, int):
        alpha = Image.fromarray(np.where(a == transparent, 0, 255).astype(np.uint8))
        out = Image.merge("LA", (out, alpha))
    return out


def _has_alpha(img):
    return img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info


def _on_white(img):
    from PIL import Image

    rgba = img.convert("RGBA")
    bg = Image.new("RGBA", img.size, (255, 255, 255, 255))
    return Image.alpha_composite(bg, rgba).convert("RGB")


def to_rgb(img):
    """Any decoded PIL image -> 8-bit ``RGB`` by the rules of the module docstring
    (``ValueError`` for a mode Pillow cannot convert)."""
    if img.mode in ("I", "F") or img.mode.startswith("I;16"):
        img = _to_8bit_grey(img)
    if _has_alpha(img):
        return _on_white(img)
    return img if img.mode == "RGB" else img.convert("RGB")


def open_rgb(path, draft_size=None):
    """Decode ``path`` to an 8-bit RGB PIL image (rules: module docstring).
    Anything that is not a decodable image raises ``UnreadableImage`` with the
    reason. ``draft_size``: let the JPEG decoder downscale by a power of two while
    keeping both sides >= that size (fast path; see evaluate docs)."""
    with warnings.catch_warnings(), _open_file(path) as f:
        warnings.simplefilter("ignore")
        img = _load(f, path, draft_size)
        try:                    # inside the with: TIFF EXIF is read from the file
            return to_rgb(_upright(img))
        except (ValueError, OSError) as e:
            raise UnreadableImage(f"{path}: unsupported {img.format} colour mode {img.mode} ({e})") from None


# -- resize + centre crop (torchvision semantics) --------------------------------------

def resized_size(w, h, size):
    """(width, height) after resizing the shorter side to ``size``, exactly as
    torchvision's ``transforms.Resize(size)`` (int): the long side is *truncated*,
    ``int(size * long / short)`` (torchvision.transforms.functional
    ``_compute_resized_output_size``)."""
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    return (new_short, new_long) if w <= h else (new_long, new_short)


def center_crop_box(w, h, crop):
    """(left, top, right, bottom) of torchvision's ``CenterCrop(crop)`` on a w x h
    image: offsets ``int(round((side - crop) / 2.0))`` (torchvision.transforms.
    functional ``center_crop``; Python's round, halves to even). ``crop`` <= both sides."""
    left, top = int(round((w - crop) / 2.0)), int(round((h - crop) / 2.0))
    return left, top, left + crop, top + crop


def resize_crop(img, cfg: PreprocessConfig):
    """Resize the shorter side to ``cfg.resize_size`` and centre-crop ``cfg.input_size``
    (torchvision ``Resize(resize_size)`` + ``CenterCrop(input_size)``, timm's eval transform)."""
    nw, nh = resized_size(img.size[0], img.size[1], cfg.resize_size)
    if (nw, nh) != tuple(img.size):
        img = img.resize((nw, nh), _pil_filter(cfg.interpolation))
    return img.crop(center_crop_box(nw, nh, cfg.input_size))


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


def walk_images(folder):
    """Sorted image files under ``folder`` (recursive, folders in sorted order);
    [] when there are none. The one image walker (datasets, calibration use it)."""
    out = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        out.extend(os.path.join(root, f) for f in sorted(files) if is_image_file(f))
    return out


def list_images(folder):
    """Sorted image files under ``folder`` (recursive); DataError if none."""
    if not os.path.isdir(folder):
        raise DataError(f"image folder not found: {folder}")
    out = walk_images(folder)
    if not out:
        raise DataError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in {folder}")
    return out


def load_crops(paths, cfg: PreprocessConfig):
    """Decode, resize and crop ``paths`` -> (uint8 NHWC batch, list of the unreadable
    paths skipped)."""
    imgs, skipped = [], []
    for p in paths:
        try:
            imgs.append(load_and_crop(p, cfg))
        except UnreadableImage:
            skipped.append(p)
    s = cfg.input_size
    return (np.stack(imgs) if imgs else np.zeros((0, s, s, 3), np.uint8)), skipped


def load_batch(paths, cfg: PreprocessConfig):
    """Preprocess ``paths`` -> (float32 NCHW batch, list of skipped paths)."""
    crops, skipped = load_crops(paths, cfg)
    if not len(crops):
        return np.zeros((0,) + cfg.input_shape, np.float32), skipped
    return normalize(crops, cfg), skipped


def sample_images(n, name=REAL_SET, root=None):
    """First ``n`` images (sorted) of one of the shared sets; DataError if absent."""
    folder = os.path.join(root or datasets_root(), name)
    return list_images(folder)[:n]
