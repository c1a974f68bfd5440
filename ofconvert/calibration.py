"""INT8 calibration: activation ranges of an fp32 ONNX model, stored as a TensorRT
calibration cache (+ a JSON sidecar) that later runs reuse without decoding images.

Three layers, kept apart (ONNX Runtime quantization style):

* the **data reader** (:class:`ImageCalibrationDataReader`): images from a folder
  (recursive) or a manifest, the model's own preprocessing, a deterministic order,
  bad files skipped and counted;
* the **algorithms** (:class:`RangeCollector`): minmax, percentile and entropy (KL,
  TensorRT's EntropyCalibration2 recipe) over streamed 2048-bin histograms of |x|;
* the **cache** (:func:`write_cache`, :func:`read_cache`, :func:`validate_scales`):
  TensorRT's text format, validated against the model before it is ever used.

Cache format (what TensorRT's ``IInt8Calibrator::writeCalibrationCache`` emits and
what ONNX Runtime's TensorRT provider reads with ``trt_int8_use_native_calibration_table``)::

    TRT-8601-EntropyCalibration2
    input: 3c010a14
    /conv1/Conv_output_0: 3d8f5c29

first line ``TRT-<NV_TENSORRT_VERSION>-<calibrator>``, then one
``<tensor name>: <hex of the IEEE-754 float32 scale, big-endian bits>`` per line;
dynamic range = scale * 127. See docs/precision.md.
"""
import dataclasses
import hashlib
import math
import os
import re
import struct
import time
from typing import Dict, Optional

import numpy as np

from .errors import CalibrationCacheError, DataError, OfconvertError

METHODS = ("entropy", "percentile", "minmax")

#: NV_TENSORRT_VERSION written in the header (8.6.1 -> 8601; 10.x uses
#: major*10000 + minor*100 + patch, e.g. 10.14.1 -> 101401). Readers here accept any
#: ``TRT-<digits>``; ONNX Runtime's TensorRT provider ignores the number.
#: :func:`format_cache` takes another version for a TensorRT that insists on its own.
TRT_CACHE_VERSION = 8601
#: The calibrator name in the header. We always write EntropyCalibration2 (the
#: calibrator TensorRT consumers replay caches with); the real method is in the sidecar.
TRT_CALIBRATOR_NAME = "EntropyCalibration2"
SIDECAR_FORMAT = "ofconvert-calibration/1"
MANIFEST_NAME = "manifest.txt"
INT8_MAX = 127.0
#: smallest dynamic range written (a tensor that is always 0 still needs a usable scale)
MIN_AMAX = 1e-6

_HEADER_RE = re.compile(r"^TRT-(\d+)-([A-Za-z0-9_]+)$")
_LINE_RE = re.compile(r"^(.+): ([0-9a-fA-F]{1,8})$")


@dataclasses.dataclass(frozen=True)
class CalibrationOptions:
    """Algorithm knobs (defaults match TensorRT / NVIDIA's PTQ recipe)."""

    batch_size: int = 8
    num_bins: int = 2048          # histogram bins over [0, max|x|]
    num_quant_bins: int = 128     # int8 magnitude levels (entropy search target)
    percentile: float = 99.99     # for method="percentile"
    threads: Optional[int] = None  # ONNX Runtime intra-op threads (None: its default)

    def key(self):
        return {"num_bins": self.num_bins, "num_quant_bins": self.num_quant_bins, "percentile": self.percentile}


@dataclasses.dataclass
class CalibrationResult:
    cache_path: str
    sidecar_path: str
    scales: Dict[str, float]      # tensor name -> scale (dynamic range = scale * 127)
    reused: bool
    method: str
    num_images: int               # images actually used (decoded) for the ranges
    skipped: int                  # unreadable files skipped
    elapsed_s: float = 0.0

    def dynamic_ranges(self):
        return {k: v * INT8_MAX for k, v in self.scales.items()}


# ---------------------------------------------------------------------------
# calibration images and the data reader
# ---------------------------------------------------------------------------
def list_calibration_images(data, num_images=None):
    """Image paths of a calibration set: ``data`` is a manifest file (one path per
    line, relative to the manifest's folder; ``#`` comments and blank lines ignored),
    a folder holding ``manifest.txt`` (e.g. ``calib/imagenet1k``), or an image folder
    (recursive, sorted). ``num_images``: an evenly spread, deterministic subset."""
    from .data import list_images

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

    def __init__(self, paths, preprocess, input_name="input", batch_size=8):
        if not paths:
            raise DataError("no calibration images")
        self.paths = list(paths)
        self.preprocess = preprocess
        self.input_name = input_name
        self.batch_size = max(1, int(batch_size))
        self.rewind()

    def rewind(self):
        self._pos = 0
        self.skipped = []
        self.num_used = 0

    def __len__(self):
        return len(self.paths)

    def get_next(self):
        from .data import UnreadableImage, load_and_crop, normalize

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
        return {self.input_name: normalize(np.stack(imgs), self.preprocess)}

    def __iter__(self):
        while True:
            batch = self.get_next()
            if batch is None:
                return
            yield batch


# ---------------------------------------------------------------------------
# which tensors get a range
# ---------------------------------------------------------------------------
def calibration_plan(model):
    """(tensors, sources): the tensors that get a range, in graph order, and for
    each the tensor whose statistics give it. Tensors = every activation that
    :func:`ofconvert.precision.quantize_qdq` puts a Q/DQ pair on, for either target
    (inputs of Conv/Gemm/MatMul, both inputs of residual Adds, pooling and Pad
    inputs), plus the tensors they take their scale from. Outputs of MaxPool / Pad /
    Reshape / Flatten / ... are not measured: they reuse their input's range (so
    ONNX Runtime can drop the Q/DQ pairs around them)."""
    from .precision import TARGETS, qdq_activations, scale_sources

    acts = []
    for target in TARGETS:
        acts += [t for t in qdq_activations(model, target) if t not in acts]
    sources = scale_sources(model, acts)
    wanted = set(acts) | set(sources.values())
    order = [i.name for i in model.graph.input] + [o for n in model.graph.node for o in n.output]
    tensors = [t for t in dict.fromkeys(order) if t in wanted]
    sources.update({s: s for s in sources.values()})
    return tensors, sources


def calibration_tensors(model):
    """Names of the tensors a calibration cache for ``model`` lists (see
    :func:`calibration_plan`)."""
    return calibration_plan(model)[0]


def model_fingerprint(model):
    """sha256 of what the calibration depends on: the graph's structure, attributes,
    activation names and weight *values*, not the names of initializers, node names,
    doc strings or metadata. (Two exports of the same model name their shared
    constants differently, e.g. ``const390`` vs ``const397``, so the file hash alone
    would never let a re-exported model reuse its cache.)"""
    h = hashlib.sha256()
    g = model.graph
    inits = {}
    for t in g.initializer:
        d = hashlib.sha256()
        d.update(f"{t.data_type}:{list(t.dims)}:".encode())
        t2 = type(t)()
        t2.CopyFrom(t)
        t2.name, t2.doc_string = "", ""
        d.update(t2.SerializeToString())
        inits[t.name] = "init:" + d.hexdigest()
    for vi in list(g.input) + list(g.output):
        if vi.name not in inits:
            h.update(("io:" + vi.name + ":" + vi.type.SerializeToString().hex() + "\n").encode())
    for n in g.node:
        attrs = sorted((a.name, a.SerializeToString().hex()) for a in n.attribute)
        ins = [inits.get(i, i) for i in n.input]
        h.update(repr((n.op_type, n.domain, ins, list(n.output), attrs)).encode())
    for o in model.opset_import:
        h.update(f"opset:{o.domain}:{o.version}".encode())
    return h.hexdigest()


def model_input_name(model):
    init = {t.name for t in model.graph.initializer}
    inputs = [i.name for i in model.graph.input if i.name not in init]
    if len(inputs) != 1:
        raise OfconvertError(f"calibration needs a model with one image input, this one has {inputs}")
    return inputs[0]


# ---------------------------------------------------------------------------
# algorithms
# ---------------------------------------------------------------------------
class RangeCollector:
    """Streams per-tensor statistics batch by batch (nothing kept but a histogram of
    ``num_bins`` float64 counts per tensor) and turns them into a dynamic range
    (amax) with one of :data:`METHODS`."""

    def __init__(self, method, options: CalibrationOptions):
        if method not in METHODS:
            raise OfconvertError(f"unknown calibration method {method!r}; known: {', '.join(METHODS)}")
        self.method = method
        self.options = options
        self.amax = {}       # tensor -> max |x| seen
        self.hist = {}       # tensor -> counts of |x| over [0, hist_max[tensor]]
        self.hist_max = {}
        self.zeros = {}      # tensor -> number of exact zeros (kept out of the histogram)

    def collect(self, name, x):
        a = np.abs(np.asarray(x, dtype=np.float32).ravel())    # our own copy, modified in place below
        if a.size == 0:
            return
        m = float(a.max())
        if not math.isfinite(m):
            raise OfconvertError(f"calibration: tensor {name!r} has non-finite values (inf/NaN) on real images")
        self.amax[name] = max(self.amax.get(name, 0.0), m)
        if self.method == "minmax":
            return
        n = self.options.num_bins
        if name not in self.hist:
            self.hist[name], self.zeros[name] = np.zeros(n, np.float64), 0
            self.hist_max[name] = m if m > 0 else MIN_AMAX
        elif m > self.hist_max[name]:
            # grow the range: re-bin the old counts onto the wider grid (linear within bins)
            top = self.hist_max[name]
            cum = np.concatenate([[0.0], np.cumsum(self.hist[name])])
            self.hist[name] = np.diff(np.interp(np.linspace(0.0, m, n + 1), np.linspace(0.0, top, n + 1), cum))
            self.hist_max[name] = m
        # index 0: exact zeros; j = 1..n: |x| in ((j-1)w, jw]  (ceil keeps zeros apart at no extra pass)
        np.multiply(a, np.float32(n / self.hist_max[name]), out=a)
        np.ceil(a, out=a)
        idx = a.astype(np.int64)
        np.minimum(idx, n, out=idx)
        counts = np.bincount(idx, minlength=n + 1)
        self.zeros[name] += int(counts[0])
        self.hist[name] += counts[1:]

    def compute(self, name):
        """amax (dynamic range) of one tensor."""
        m = self.amax.get(name, 0.0)
        if self.method == "minmax" or m <= 0 or name not in self.hist:
            return max(m, MIN_AMAX)
        hist, width = self.hist[name], self.hist_max[name] / self.options.num_bins
        if self.method == "percentile":
            cum = self.zeros[name] + np.cumsum(hist)
            i = int(np.searchsorted(cum, cum[-1] * self.options.percentile / 100.0))
            return max(min((i + 1) * width, m), MIN_AMAX)
        # exact zeros are exact at every scale: they say nothing about the best threshold,
        # and their spike (ReLU/ReLU6 outputs, padding) drags the KL optimum towards
        # tiny thresholds (see docs/precision.md)
        return max(entropy_amax(hist, width, self.options.num_quant_bins), MIN_AMAX)


def entropy_amax(hist, width, num_quant_bins=128):
    """TensorRT's EntropyCalibration2 threshold search (the recipe of NVIDIA's "8-bit
    inference with TensorRT", GTC 2017, as in pytorch-quantization): for each
    candidate threshold i (in bins, ``num_quant_bins`` .. ``len(hist)``), P = the
    first i bins with the outliers folded into the last one; Q = those bins (without
    the outliers) merged into ``num_quant_bins`` levels and spread back evenly over
    the non-empty bins; keep the i minimising KL(P || Q). Returns ``i * width``.

    Closed form over cumulative sums (within a level Q is constant, so
    sum p*log q needs only per-level sums): all ~2000 candidates at once in
    O(candidates * levels), instead of O(candidates * bins) per tensor."""
    h = np.asarray(hist, np.float64)
    n, nq = len(h), int(num_quant_bins)
    if n <= nq or h.sum() <= 0:
        return n * width
    ch = np.concatenate([[0.0], np.cumsum(h)])
    cnz = np.concatenate([[0.0], np.cumsum(h > 0)])
    with np.errstate(divide="ignore", invalid="ignore"):
        chl = np.concatenate([[0.0], np.cumsum(np.where(h > 0, h * np.log(np.where(h > 0, h, 1.0)), 0.0))])
    i = np.arange(nq, n + 1)                                   # candidates: bins kept
    tail = ch[n] - ch[i]                                        # outliers folded into bin i-1
    edges = (np.arange(nq + 1)[None, :] * i[:, None] + nq - 1) // nq   # level g = bins [edges[g], edges[g+1])
    gsum = np.diff(ch[edges], axis=1)                           # per-level sum of kept bins (no outliers)
    gcnt = np.diff(cnz[edges], axis=1)                          # per-level count of non-empty bins
    last = h[i - 1]
    gcnt[:, -1] += (last == 0) & (tail > 0)                     # bin i-1 non-empty through its outliers
    psum = gsum.copy()
    psum[:, -1] += tail
    plast = last + tail
    total, qtotal = ch[n], ch[i]
    with np.errstate(divide="ignore", invalid="ignore"):
        sum_plogp = chl[i - 1] + np.where(plast > 0, plast * np.log(np.where(plast > 0, plast, 1.0)), 0.0)
        logq = np.log(np.where(gcnt > 0, gsum / np.where(gcnt > 0, gcnt, 1.0), 1.0))
        sum_plogq = np.where(psum > 0, psum * logq, 0.0).sum(1)
        kl = sum_plogp / total - np.log(total) + np.log(qtotal) - sum_plogq / total
    invalid = ((psum > 0) & (gsum <= 0)).any(1) | (qtotal <= 0) | ~np.isfinite(kl)
    kl[invalid] = np.inf
    if not np.isfinite(kl).any():
        return n * width
    return int(i[int(np.argmin(kl))]) * width


# ---------------------------------------------------------------------------
# cache format
# ---------------------------------------------------------------------------
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
    from .fileio import write_text

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


# ---------------------------------------------------------------------------
# calibrate
# ---------------------------------------------------------------------------
def default_cache_path(onnx_path, method):
    stem = os.path.splitext(os.fspath(onnx_path))[0]
    return f"{stem}.{method}.calib.cache"


def sidecar_path_for(cache_path):
    return os.fspath(cache_path) + ".json"


def _preprocess_from_model(model):
    from .config import METADATA_KEY, PreprocessConfig

    from .onnx_fix import get_metadata

    meta = get_metadata(model)
    if METADATA_KEY not in meta:
        raise OfconvertError(f"no preprocessing given and the ONNX has no {METADATA_KEY!r} metadata")
    return PreprocessConfig.from_json(meta[METADATA_KEY])


def collect_ranges(model, reader, method, options: CalibrationOptions):
    """Run the fp32 ``model`` (ModelProto) in ONNX Runtime over ``reader`` with the
    measured tensors exposed as outputs; returns ``{tensor: amax}`` for every tensor
    of :func:`calibration_plan`. Only one batch of activations is alive at a time."""
    import onnx
    import onnxruntime as ort

    plan, sources = calibration_plan(model)
    tensors = [t for t in plan if sources[t] == t]
    aug = onnx.ModelProto()
    aug.CopyFrom(model)
    outs = {o.name for o in aug.graph.output}
    for t in tensors:
        if t not in outs:
            aug.graph.output.append(onnx.ValueInfoProto(name=t))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.log_severity_level = 3
    if options.threads:
        so.intra_op_num_threads = int(options.threads)
    try:
        sess = ort.InferenceSession(aug.SerializeToString(), sess_options=so, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise OfconvertError(f"ONNX Runtime cannot load the model for calibration: {str(e).splitlines()[0]}") from None
    del aug
    collector = RangeCollector(method, options)
    reader.rewind()
    for feed in reader:
        for name, value in zip(tensors, sess.run(tensors, feed)):
            collector.collect(name, value)
    if reader.num_used == 0:
        raise DataError(f"no readable calibration images ({len(reader.skipped)} unreadable file(s), "
                        f"e.g. {reader.skipped[0] if reader.skipped else '-'})")
    amax = {t: collector.compute(t) for t in tensors}
    return {t: amax[sources[t]] for t in plan}


_SIDECAR_FIELDS = {"model_fingerprint": "model (graph or weights differ)", "calib_set_sha256": "calibration images",
                   "num_listed": "number of images", "preprocess": "preprocessing", "method": "method",
                   "options": "calibration options"}


def check_cache(cache_path, tensors, expect):
    """Validate an existing cache + sidecar against the model's ``tensors`` and the
    ``expect``-ed sidecar fields -> (scales, sidecar dict); CalibrationCacheError
    naming what differs."""
    import json

    from .fileio import sha256_file

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


def calibrate(onnx_path, data, preprocess, method="entropy", num_images=None, cache_path=None,
              regenerate=False, options: Optional[CalibrationOptions] = None) -> CalibrationResult:
    """Calibrate ``onnx_path`` (fp32) on ``data`` and write/reuse the cache.

    A cache at ``cache_path`` (default ``<stem>.<method>.calib.cache`` beside the ONNX)
    whose sidecar matches the model (fingerprint: graph + weight values, see
    :func:`model_fingerprint`), calibration-set hash, method, preprocessing and
    options, and whose tensors are exactly the model's, is reused without decoding
    any image (:func:`check_cache`). Any mismatch raises CalibrationCacheError, or
    recalibrates when ``regenerate`` is true.
    """
    import onnx

    from .fileio import sha256_file, write_json

    t0 = time.perf_counter()
    options = options or CalibrationOptions()
    if method not in METHODS:
        raise OfconvertError(f"unknown calibration method {method!r}; known: {', '.join(METHODS)}")
    onnx_path = os.fspath(onnx_path)
    if not os.path.isfile(onnx_path):
        raise OfconvertError(f"ONNX file not found: {onnx_path}")
    try:
        model = onnx.load(onnx_path)
    except Exception as e:
        raise OfconvertError(f"cannot load ONNX {onnx_path}: {str(e).splitlines()[0] if str(e) else e}") from None
    preprocess = preprocess or _preprocess_from_model(model)
    cache_path = os.fspath(cache_path) if cache_path else default_cache_path(onnx_path, method)
    sidecar = sidecar_path_for(cache_path)
    tensors = calibration_tensors(model)
    paths = list_calibration_images(data, num_images)
    expect = {
        "method": method,
        "model_fingerprint": model_fingerprint(model),
        "calib_set_sha256": calibration_set_hash(paths),
        "num_listed": len(paths),
        "preprocess": preprocess.key(),
        "options": options.key(),
    }

    if os.path.exists(cache_path) and not regenerate:
        scales, meta = check_cache(cache_path, tensors, expect)
        return CalibrationResult(cache_path, sidecar, scales, True, method, int(meta.get("num_images", 0)),
                                 int(meta.get("skipped", 0)), time.perf_counter() - t0)

    reader = ImageCalibrationDataReader(paths, preprocess, model_input_name(model), options.batch_size)
    amax = collect_ranges(model, reader, method, options)
    del model
    # round-trip through float32 so the returned scales equal what a reader of the cache gets
    scales = {t: float(np.float32(a / INT8_MAX)) for t, a in amax.items()}
    write_cache(cache_path, scales)
    elapsed = time.perf_counter() - t0
    meta = dict(format=SIDECAR_FORMAT, cache=os.path.basename(cache_path), model=os.path.basename(onnx_path),
                header=f"TRT-{TRT_CACHE_VERSION}-{TRT_CALIBRATOR_NAME}", model_sha256=sha256_file(onnx_path),
                **expect,
                preprocess_config=preprocess.to_dict(), calib_source=os.path.abspath(os.fspath(data)),
                num_images=reader.num_used, skipped=len(reader.skipped),
                skipped_files=[os.path.basename(p) for p in reader.skipped[:20]],
                num_tensors=len(scales), cache_sha256=sha256_file(cache_path), elapsed_s=round(elapsed, 3),
                created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    write_json(sidecar, meta)
    return CalibrationResult(cache_path, sidecar, scales, False, method, reader.num_used, len(reader.skipped),
                             elapsed)


# ---------------------------------------------------------------------------
# calibration set
# ---------------------------------------------------------------------------
def build_calib_set(src_dir, dst_dir, per_class=1):
    """Pick ``per_class`` images per class (first ones in sorted order) from an
    ImageFolder tree (one sub-folder per class) and write ``dst_dir/manifest.txt``
    (paths relative to dst_dir) and ``dst_dir/manifest.json``. No image is copied.
    Returns the manifest path."""
    from .data import walk_images
    from .fileio import write_json, write_text

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
