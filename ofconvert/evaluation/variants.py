"""Evaluation variants (backend x precision), options, result rows, and where
each variant's model file is (``ofconvert.artifacts``)."""
import dataclasses
import importlib.util
import os
from typing import List, Optional, Sequence

from .. import artifacts
from ..config import METADATA_KEY, PRECISIONS, PreprocessConfig, get_config
from ..errors import OfconvertError
from ..preprocache import CacheOptions
from ..runners import get_backend

DEFAULT_REFERENCE = "oneflow:fp32"
FALLBACK_REFERENCE = "ort-cpu:fp32"


@dataclasses.dataclass(frozen=True)
class Variant:
    backend: str
    precision: str = "fp32"

    @classmethod
    def parse(cls, spec) -> "Variant":
        if isinstance(spec, Variant):
            return spec
        backend, _, precision = str(spec).strip().partition(":")
        v = cls(backend.strip(), (precision or "fp32").strip())
        v.check()
        return v

    def check(self):
        get_backend(self.backend)
        if self.precision not in PRECISIONS:
            raise OfconvertError(f"unknown precision {self.precision!r}; known: {', '.join(PRECISIONS)}")
        if self.backend == "oneflow" and self.precision != "fp32":
            raise OfconvertError(f"{self}: the oneflow backend runs fp32 only")

    def __str__(self):
        return f"{self.backend}:{self.precision}"

    @property
    def label(self):
        return f"{self.backend} ({self.precision})"


def expand_variants(backends: Sequence[str], precisions: Sequence[str] = ("fp32",)) -> List[Variant]:
    """backends x precisions, oneflow at fp32 only (skipped silently for others)."""
    out = []
    for b in backends:
        for p in precisions:
            if b == "oneflow" and p != "fp32":
                continue
            v = Variant.parse(f"{b}:{p}")
            if v not in out:
                out.append(v)
    if not out:
        raise OfconvertError("no backend/precision combination to evaluate")
    return out


def oneflow_available():
    return importlib.util.find_spec("oneflow") is not None


@dataclasses.dataclass(frozen=True)
class EvalOptions:
    """``calib_data`` is the old name of ``calib`` (still accepted)."""

    models_dir: str = "."               # where <stem>.onnx, <stem>.fp16.onnx, ... live (and are produced)
    labels: Optional[str] = None        # label file overriding detection (ofconvert.datasets)
    meta: Optional[str] = None          # devkit meta.mat / '<id> <wnid>' file for the official ground truth
    limit: Optional[int] = None         # first N images
    batch_size: int = 32
    threads: Optional[int] = None       # inference threads (ONNX Runtime CPU)
    cache: CacheOptions = CacheOptions()
    isolate: bool = True                # one subprocess per backend (False: all in this process)
    produce_missing: bool = True        # build missing model files through the convert pipeline
    calib: Optional[str] = None         # calibration images for a missing int8 model
    progress: bool = True               # tqdm bars on stderr
    keep_mismatches: bool = True        # list every mismatching image in the rows
    ort_cuda: str = "auto"              # ort-cuda settings (auto: measured per model and batch, no CUDA graph)
    calib_data: dataclasses.InitVar[Optional[str]] = None

    def __post_init__(self, calib_data):
        if calib_data is not None and self.calib is None:
            object.__setattr__(self, "calib", calib_data)


@dataclasses.dataclass
class EvalRow:
    """One model x variant. ``status``: "ok", "n/a" (backend/model file unavailable;
    see ``reason``) or "error" (it ran and failed)."""

    model: str
    backend: str
    precision: str
    status: str = "ok"
    reason: str = ""
    pretrained: bool = False            # False: random weights; top-1 means nothing, mismatches do
    is_reference: bool = False
    reference: str = ""
    images: int = 0                     # images evaluated (decodable)
    skipped: int = 0                    # unreadable images left out
    top1: Optional[float] = None
    top5: Optional[float] = None
    mismatches: Optional[int] = None    # top-1 predictions differing from the reference's
    seconds: Optional[float] = None     # wall time of the inference loop (cache reads + normalise + infer)
    setup_seconds: Optional[float] = None   # session creation (+ auto's choice) and the first batch (cuDNN plans)
    inference_seconds: Optional[float] = None   # the loop after the first batch
    settings: str = ""                  # ort-cuda settings that ran (auto: the chosen ones)
    input_format: str = ""              # "uint8-nhwc": the model took the cached uint8 images as they are
    images_per_s: Optional[float] = None
    model_path: str = ""                # the file it ran (oneflow: the zoo name)
    model_sha256: str = ""              # sha256 of model_path ("" for oneflow)
    detected_precision: str = ""        # model_path's precision read from its content (ofconvert.artifacts)
    mismatched: List[dict] = dataclasses.field(default_factory=list)  # path, label, reference, prediction

    @property
    def variant(self) -> str:
        return f"{self.backend}:{self.precision}"

    def to_dict(self):
        return dataclasses.asdict(self)


def model_file(models_dir, stem, variant: Variant) -> str:
    """Where ``variant`` of ``stem`` is expected (oneflow: the zoo name itself)."""
    return artifacts.model_path(models_dir, stem, variant.precision, variant.backend)


def model_info(name, models_dir):
    """(PreprocessConfig, pretrained) from the zoo, else from ``<models_dir>/<name>.onnx`` metadata."""
    try:
        cfg = get_config(name)
        return cfg.preprocess, cfg.pretrained
    except OfconvertError:
        path = os.path.join(models_dir, name + ".onnx")
        if not os.path.isfile(path):
            raise
    meta, m = artifacts.read_onnx_metadata(path)
    inits = {t.name for t in m.graph.initializer}
    n_inputs = len([i for i in m.graph.input if i.name not in inits])
    if n_inputs != 1:
        raise OfconvertError(f"eval runs single-image classifiers; this model has {n_inputs} inputs ({path})")
    if METADATA_KEY not in meta:
        raise OfconvertError(f"{path} has no {METADATA_KEY} metadata and {name!r} is not a zoo model: "
                             f"its preprocessing is unknown (eval needs an RGB image input the preprocessing fits)")
    return PreprocessConfig.from_json(meta[METADATA_KEY]), meta.get("ofconvert.pretrained") == "true"
