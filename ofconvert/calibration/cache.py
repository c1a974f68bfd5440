"""The TensorRT calibration-cache text format (write, parse, read, validate against
a model) and its JSON sidecar (which model, images, method and options made it).

    TRT-8601-EntropyCalibration2
    input: 3c010a14
    /conv1/Conv_output_0: 3d8f5c29

first line ``TRT-<NV_TENSORRT_VERSION>-<calibrator>``, then one
``<tensor name>: <hex of the IEEE-754 float32 scale, big-endian bits>`` per line;
dynamic range = scale * 127. See docs/precision.md.
"""
import math
import os
import re
import struct

from ..errors import CalibrationCacheError, OfconvertError

#: NV_TENSORRT_VERSION written in the header (8.6.1 -> 8601; 10.x uses
#: major*10000 + minor*100 + patch, e.g. 10.14.1 -> 101401). Readers here accept any
#: ``TRT-<digits>``; ONNX Runtime's TensorRT provider ignores the number.
#: :func:`format_cache` takes another version for a TensorRT that insists on its own.
TRT_CACHE_VERSION = 8601
#: The calibrator name in the header. We always write EntropyCalibration2 (the
#: calibrator TensorRT consumers replay caches with); the real method is in the sidecar.
TRT_CALIBRATOR_NAME = "EntropyCalibration2"
SIDECAR_FORMAT = "ofconvert-calibration/1"

_HEADER_RE = re.compile(r"^TRT-(\d+)-([A-Za-z0-9_]+)$")
_LINE_RE = re.compile(r"^(.+): ([0-9a-fA-F]{1,8})$")


def _scale_to_hex(scale):
    return struct.pack(">f", float(scale)).hex()


def _hex_to_scale(h):
    return struct.unpack(">f", int(h, 16).to_bytes(4, "big"))[0]


def trt_version_number(version):
    """'8.6.1' -> 8601, '10.14.1' -> 101401 (NV_TENSORRT_VERSION), for :func:`format_cache`."""
    parts = [int(p) for p in re.findall(r"\d+", str(version))[:3]] + [0, 0, 0]
    major, minor, patch = parts[:3]
    return major * (10000 if major >= 10 else 1000) + minor * 100 + patch


def format_cache(scales, version=TRT_CACHE_VERSION, calibrator=TRT_CALIBRATOR_NAME):
    """TensorRT calibration-cache text for ``{tensor: scale}`` (insertion order kept)."""
    lines = [f"TRT-{int(version)}-{calibrator}"]
    for name, s in scales.items():
        if "\n" in name:
            raise OfconvertError(f"tensor name {name!r} cannot be written to a calibration cache")
        lines.append(f"{name}: {_scale_to_hex(s)}")
    return "\n".join(lines) + "\n"


def write_cache(path, scales, version=TRT_CACHE_VERSION):
    from ..fileio import write_text

    write_text(path, format_cache(scales, version))


def parse_cache(text, source="<cache>"):
    """Parse TensorRT cache text -> (header dict, {tensor: scale}). Any deviation
    (foreign header, garbled or truncated line, duplicate, negative/non-finite
    scale) raises CalibrationCacheError naming the file and line."""
    if not text:
        raise CalibrationCacheError(f"calibration cache {source} is empty")
    lines = text.split("\n")
    m = _HEADER_RE.match(lines[0].strip())
    if not m:
        raise CalibrationCacheError(
            f"calibration cache {source}: foreign header {lines[0][:60]!r} (expected 'TRT-<version>-<calibrator>')")
    if not text.endswith("\n"):
        raise CalibrationCacheError(f"calibration cache {source} is truncated (last line {lines[-1][:60]!r} "
                                    "has no line end)")
    scales = {}
    for lineno, line in enumerate(lines[1:-1], start=2):
        lm = _LINE_RE.match(line.rstrip("\r"))
        if not lm:
            raise CalibrationCacheError(f"calibration cache {source}, line {lineno}: garbled entry {line[:60]!r} "
                                        "(expected '<tensor>: <8 hex digits>')")
        name, s = lm.group(1), _hex_to_scale(lm.group(2))
        if not (math.isfinite(s) and s >= 0):
            raise CalibrationCacheError(f"calibration cache {source}, line {lineno}: invalid scale {s} for {name!r}")
        if name in scales:
            raise CalibrationCacheError(f"calibration cache {source}, line {lineno}: duplicate tensor {name!r}")
        scales[name] = s
    return {"version": int(m.group(1)), "calibrator": m.group(2)}, scales


def read_cache(path):
    """Read a TensorRT calibration cache -> {tensor: scale}."""
    return read_cache_with_header(path)[1]


def read_cache_with_header(path):
    """Read a TensorRT calibration cache -> (header dict, {tensor: scale})."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CalibrationCacheError(f"calibration cache not found: {path}")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise CalibrationCacheError(f"cannot read calibration cache {path}: {e.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise CalibrationCacheError(f"calibration cache {path} is not text (binary or garbled)") from None
    return parse_cache(text, path)


def validate_scales(scales, expected, source="<cache>"):
    """The cache must name exactly the model's calibration tensors."""
    missing = [t for t in expected if t not in scales]
    extra = [t for t in scales if t not in set(expected)]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} tensor(s) of the model missing (e.g. {missing[0]!r})")
        if extra:
            parts.append(f"{len(extra)} tensor(s) not in the model (e.g. {extra[0]!r})")
        raise CalibrationCacheError(f"calibration cache {source} does not match the model: {'; '.join(parts)}")



def default_cache_path(onnx_path, method):
    stem = os.path.splitext(os.fspath(onnx_path))[0]
    return f"{stem}.{method}.calib.cache"


def sidecar_path_for(cache_path):
    return os.fspath(cache_path) + ".json"


_SIDECAR_FIELDS = {"model_fingerprint": "model (graph or weights differ)", "calib_set_sha256": "calibration images",
                   "num_listed": "number of images", "preprocess": "preprocessing", "method": "method",
                   "options": "calibration options"}


def check_cache(cache_path, tensors, expect):
    """Validate an existing cache + sidecar against the model's ``tensors`` and the
    ``expect``-ed sidecar fields -> (scales, sidecar dict); CalibrationCacheError
    naming what differs."""
    import json

    from ..fileio import sha256_file

    scales = read_cache(cache_path)
    validate_scales(scales, tensors, cache_path)
    sidecar = sidecar_path_for(cache_path)
    try:
        with open(sidecar, encoding="utf-8") as f:
            meta = json.load(f)
    except FileNotFoundError:
        raise CalibrationCacheError(f"calibration cache {cache_path} has no sidecar {sidecar}: cannot tell which "
                                    "model and images made it; recalibrate (--recalibrate)") from None
    except (OSError, ValueError) as e:
        raise CalibrationCacheError(f"unreadable calibration sidecar {sidecar}: {e}") from None
    if not isinstance(meta, dict) or meta.get("cache_sha256") != sha256_file(cache_path):
        raise CalibrationCacheError(f"calibration cache {cache_path} was modified after it was written "
                                    "(sha256 differs from its sidecar); recalibrate (--recalibrate)")
    diffs = [k for k, v in expect.items() if meta.get(k) != v]
    if diffs:
        raise CalibrationCacheError(
            f"calibration cache {cache_path} was made for another {', '.join(_SIDECAR_FIELDS[k] for k in diffs)}; "
            "recalibrate (--recalibrate) or pick another cache path")
    return scales, meta


def read_means(meta, tensors=None):
    """The per-channel means a sidecar dict holds ({tensor: [floats]}), restricted
    to ``tensors``; None when it holds none (a cache written before they were kept,
    or a sidecar edited into something else)."""
    means = meta.get("channel_means") if isinstance(meta, dict) else None
    if not isinstance(means, dict):
        return None
    keep = set(tensors) if tensors is not None else set(means)
    out = {}
    for t, v in means.items():
        if t in keep and isinstance(v, list) and v and all(isinstance(x, (int, float)) for x in v):
            out[t] = v
    return out or None


def read_sidecar_means(cache_path, tensors=None):
    """:func:`read_means` of the sidecar beside ``cache_path`` (None when it has none)."""
    import json

    try:
        with open(sidecar_path_for(cache_path), encoding="utf-8") as f:
            return read_means(json.load(f), tensors)
    except (OSError, ValueError):
        return None
