"""The conversion behind ``ofconvert MODEL --to onnx|trt``, as steps
(``ofconvert.steps``), read top to bottom in :func:`convert`:

``preflight`` (every check, before any work) -> ``export_step`` (fp32 ONNX,
validated, or an identical export reused) -> ``fp16_step`` / ``int8_step``
(calibration or a cache, plain or under a flip budget) -> ``engine_step``
(TensorRT) -> one commit of everything the run wrote (``fileio.Stage``).

File names follow ``ofconvert.artifacts`` (``<stem>.onnx`` is always fp32,
``.fp16.onnx``, ``.int8.onnx``, ``.int8-cpu.onnx``, ``.<precision>.engine``).
``onnx_name`` is re-exported from there.
"""
import dataclasses
import os
from typing import Optional

from .artifacts.names import onnx_name  # noqa: F401 (re-export)
from .calibration import METHODS as CALIB_METHODS
from .config import PRECISIONS
from .errors import OfconvertError, check_type
from .export_options import DEFAULT_OPSET
from .steps import engine_step, export_step, fp16_step, int8_step, preflight
from .steps.quantize import default_cache_path_for  # noqa: F401 (re-export)


@dataclasses.dataclass
class ConvertOptions:
    model: str                             # zoo name, flowvision:NAME, path/to/file.py:Name or pkg.mod:Name
    to: str = "onnx"                       # "onnx" or "trt"
    output: Optional[str] = None           # final artefact path
    precision: str = "fp32"
    opset: int = DEFAULT_OPSET
    input_shape: Optional[tuple] = None    # per-image (C, H, W) (H/W may be (lo, hi) ranges), or a list: one per input
    input_names: Optional[object] = None   # "a,b" or a list: one name per input
    dynamic_size: bool = False             # H and W symbolic (ofconvert.export_io)
    input_format: Optional[str] = None     # "uint8-nhwc": raw images in (ofconvert.models.raw_input)
    weights: Optional[str] = None          # OneFlow checkpoint folder (flow.save), .npz or .safetensors
    model_args: Optional[object] = None    # file.py:Name's constructor arguments: dict, JSON or "k=v,k=v"
    validate: bool = True
    force_export: bool = False
    simplify: bool = False
    calib: Optional[str] = None            # image folder or manifest (int8)
    calib_method: str = "entropy"
    calib_images: Optional[int] = None
    recalibrate: bool = False
    batch: int = 8                         # TensorRT profile opt
    max_batch: Optional[int] = None        # TensorRT profile max
    workspace_mb: Optional[int] = None
    timing_cache: Optional[str] = None
    calib_cache: Optional[str] = None      # an existing TensorRT calibration cache: int8 without images
    strongly_typed: Optional[bool] = None  # TensorRT: None = decided by version and ONNX (engine.plan_build)
    max_flips: Optional[str] = None        # int8/fp16 flip budget vs fp32: "1%" or a count (ofconvert.budget)
    check_data: Optional[str] = None       # images judging the flip budget (default: a split of --calib)
    speed_backend: str = "ort-cpu"         # what times --max-flips candidates: "ort-cpu" or "openvino"

    def check_values(self):
        """Types and values of the options alone (no file is looked at: that is ``preflight``)."""
        check_type(self.model, str, "model", "a zoo name, flowvision:NAME or path/to/file.py:Class")
        check_type(self.opset, int, "opset", "an int")
        for name in ("batch", "max_batch", "calib_images", "workspace_mb"):
            if getattr(self, name) is not None:
                check_type(getattr(self, name), int, name, "an int")
        for name in ("output", "weights", "calib", "calib_cache", "check_data"):
            if getattr(self, name) is not None:
                check_type(getattr(self, name), (str, os.PathLike), name, "a path")
        if self.to not in ("onnx", "trt"):
            raise OfconvertError(f"--to must be 'onnx' or 'trt', got {self.to!r}")
        if self.precision not in PRECISIONS:
            raise OfconvertError(f"precision must be one of {', '.join(PRECISIONS)}")
        if self.calib_method not in CALIB_METHODS:
            raise OfconvertError(f"--calib-method must be one of {', '.join(CALIB_METHODS)}")
        if self.max_flips is not None:
            check_type(self.max_flips, (str, int), "max_flips", "a string like '1%' or a number of images")
        if self.calib_images is not None and self.calib_images < 1:
            raise OfconvertError("--calib-images must be >= 1")
        self._check_int8_source()

    def _check_int8_source(self):
        if self.calib_cache is not None:
            if self.precision != "int8":
                raise OfconvertError("--calib-cache is for --int8")
            if self.calib:
                raise OfconvertError("give --calib DIR (calibrate on images) or --calib-cache FILE (reuse a cache), "
                                     "not both")
        if self.precision == "int8" and not self.calib and self.calib_cache is None:
            raise OfconvertError("--int8 needs --calib DIR (an image folder or calibration manifest, "
                                 "e.g. calib/imagenet1k) or --calib-cache FILE")

    def check(self):
        """Every check of a run (``preflight``); returns the Plan."""
        return preflight(self)


@dataclasses.dataclass
class ConvertResult:
    artefacts: dict                       # role -> path
    export: Optional[dict] = None
    calibration: Optional[dict] = None
    engine: Optional[dict] = None
    budget: Optional[dict] = None

    def to_dict(self):
        return dataclasses.asdict(self)


def convert(opts: ConvertOptions, log=print) -> ConvertResult:
    """Run the conversion ``opts`` describes; nothing is written unless it all succeeds."""
    from .fileio import Stage

    check_type(opts, ConvertOptions, "opts", "an ofconvert.ConvertOptions")
    plan = preflight(opts)
    res = ConvertResult(artefacts={})
    stage = Stage(plan.folder)
    try:
        export_step(plan, stage, res, log)
        onnx_for_engine, cache = plan.fp32, None
        if opts.precision == "fp16":
            onnx_for_engine = fp16_step(plan, stage, res, log)
        elif opts.precision == "int8":
            onnx_for_engine, cache = int8_step(plan, stage, res, log)
        if opts.to == "trt":
            engine_step(plan, stage, res, log, onnx_for_engine, cache)
        stage.commit()
    finally:
        stage.cleanup()
    return res
