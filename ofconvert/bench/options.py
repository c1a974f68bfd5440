"""Benchmark options and result rows."""
import dataclasses
import importlib.util
import os
from typing import Optional, Tuple

from ..errors import OfconvertError
from ..runners.ort_settings import OrtCudaSettings

INPUTS = ("host", "device")
DEFAULT_MODELS = ("alexnet", "vgg16", "resnet50", "inception_v3")


def default_backends():
    """The default ``--backends``: the original tables' (a missing one gives n/a
    rows), plus the OpenVINO CPU backend where openvino is installed."""
    cpu = ("ort-cpu", "openvino") if importlib.util.find_spec("openvino") is not None else ("ort-cpu",)
    return ("oneflow",) + cpu + ("ort-cuda", "trt")


DEFAULT_BACKENDS = default_backends()
CALIB_IMAGES = 64  # images calibrating an int8 model the benchmark has to produce (without --calib)


@dataclasses.dataclass(frozen=True)
class BenchOptions:
    """Protocol and environment of one benchmark run. ``onnx_dir`` and ``calib_data``
    are the old names of ``models_dir`` and ``calib`` (still accepted)."""

    warmup: int = 5
    iters: int = 500
    inputs: Tuple[str, ...] = ("device",)   # GPU backends; CPU backends always take host input
    ort_cuda: Tuple[str, ...] = ("auto",)    # one column per settings spec (auto: chosen by measurement)
    models_dir: Optional[str] = None         # <model>[.fp16|.int8|.int8-cpu].onnx, engines; missing ones are produced
    calib: Optional[str] = None              # image folder or manifest for producing int8 models
    threads: Optional[int] = None            # CPU threads (ort-cpu intra-op, openvino, oneflow)
    input_size: Optional[int] = None         # override the model's input size
    timeout_s: float = 3600.0                # per worker process
    seed: int = 0
    streams: int = 1                         # concurrent inference streams (threads, one session each)
    produce_missing: bool = True             # produce missing model files (else: n/a)
    onnx_dir: dataclasses.InitVar[Optional[str]] = None
    calib_data: dataclasses.InitVar[Optional[str]] = None

    def __post_init__(self, onnx_dir, calib_data):
        if onnx_dir is not None and self.models_dir is None:
            object.__setattr__(self, "models_dir", onnx_dir)
        if calib_data is not None and self.calib is None:
            object.__setattr__(self, "calib", calib_data)

    def check(self):
        if self.warmup < 0 or self.iters < 1:
            raise OfconvertError(f"--warmup must be >= 0 and --iters >= 1 (got {self.warmup}, {self.iters})")
        for i in self.inputs:
            if i not in INPUTS:
                raise OfconvertError(f"bad input location {i!r}; one of {', '.join(INPUTS)}")
        for s in self.ort_cuda:
            OrtCudaSettings.parse(s)
        if self.threads is not None and self.threads < 1:
            raise OfconvertError(f"--threads must be >= 1 (got {self.threads})")
        if self.streams < 1:
            raise OfconvertError(f"--streams must be >= 1 (got {self.streams})")
        if self.input_size is not None and self.input_size < 32:
            raise OfconvertError(f"--input-size must be >= 32 (got {self.input_size})")
        if self.models_dir is not None and not os.path.isdir(self.models_dir):
            raise OfconvertError(f"--models-dir is not a folder: {self.models_dir}")
        return self

    def folder(self):
        """``models_dir``, else ``./out/onnx`` relative to the working directory."""
        return self.models_dir or os.path.abspath(os.path.join("out", "onnx"))


@dataclasses.dataclass
class BenchResult:
    model: str
    backend: str
    precision: str
    batch: int
    input: str                 # "host" or "device"
    settings: str = ""         # ort-cuda settings label, "" for other backends
    settings_ran: str = ""     # the ort-cuda settings it ran (auto: the measured-fastest candidate)
    status: str = "ok"         # "ok" or "n/a"
    reason: str = ""
    img_per_s: Optional[float] = None   # aggregate over the streams
    latency_ms_mean: Optional[float] = None   # per request (one batch on one stream)
    latency_ms_p50: Optional[float] = None
    latency_ms_p90: Optional[float] = None
    latency_ms_p99: Optional[float] = None
    input_size: Optional[int] = None
    warmup: Optional[int] = None
    iters: Optional[int] = None         # timed batches per stream
    model_file: str = ""       # absolute path of the file it ran ("" for oneflow: the zoo model)
    model_sha256: str = ""     # sha256 of model_file
    detected_precision: str = ""  # model_file's precision read from its content (ofconvert.artifacts)
    providers: str = ""
    pid: Optional[int] = None  # the worker process that measured it
    streams: int = 1           # concurrent inference streams

    @property
    def column(self):
        """Table column: backend[settings](precision[, device input][, K streams])."""
        name = self.backend + (f"[{self.settings}]" if self.settings else "")
        extra = ((", dev-in" if self.input == "device" else "")
                 + (f", {self.streams} streams" if self.streams > 1 else ""))
        return f"{name}({self.precision}{extra})"

    def to_dict(self):
        return dataclasses.asdict(self)


def parse_list(value, name):
    """A comma string or a sequence -> non-empty list of stripped strings."""
    items = [str(v).strip() for v in (value.split(",") if isinstance(value, str) else value) if str(v).strip()]
    if not items:
        raise OfconvertError(f"{name} is empty")
    return items
