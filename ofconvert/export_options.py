"""The options of ``ofconvert.export`` (``ExportOptions``) and ``ofconvert.validate``
(``ValidateOptions``). Both functions also take every field as a keyword, which
overrides the options object: ``export(m, "m.onnx", opset=17, validate=False)`` is
``export(m, "m.onnx", ExportOptions(opset=17, validate=False))``.
Pure Python: importable without OneFlow."""
import dataclasses
from typing import Any, Optional, Tuple

from .config import ModelConfig
from .errors import OfconvertError
from .options import options_with

DEFAULT_OPSET = 13
DEFAULT_BATCHES = (1, 4, 5)
DEFAULT_RTOL = 5e-4        # max |onnx - oneflow| / max |oneflow| (measured fp32 worst case: 4.7e-5, inception_v3)


@dataclasses.dataclass(frozen=True)
class ValidateOptions:
    """How ``validate`` compares OneFlow with ONNX Runtime: for each input set and batch
    size, every output's shape, error relative to its scale, cosine, top-k agreement."""

    batches: Tuple[int, ...] = DEFAULT_BATCHES
    """Batch sizes checked (never a traced one, so a batch baked into the graph is caught)."""
    rtol: float = DEFAULT_RTOL
    """Tolerance: max |onnx - oneflow| / max |oneflow|, per output."""
    use_real: bool = True
    """Real images from the shared datasets where an input is the RGB image of the preprocessing."""
    use_random: bool = True
    """Seeded random input too (always, when no real images apply)."""
    seed: int = 0
    """Seed of the random input."""
    verbose: bool = True
    """Print the checklist."""
    raise_on_error: bool = True
    """Raise ShapeError / AtolError / TopKError for a failed check (after the checklist)."""
    input_shape: Any = None
    """One per-sample shape, or a list of them (one per input); default: the config's."""
    report_path: Any = None
    """Where the report is written (default ``<onnx>.validation.json``; ``False``: not written)."""
    label: Optional[str] = None
    """The name the checklist gives the ONNX (default: its path)."""
    sizes: Any = None
    """(H, W) image sizes of a dynamic-size model to check as well (random input, the
    first and last batch); in ``export``, None: the sizes the export chooses."""
    input_format: Optional[str] = None
    """``"uint8-nhwc"``: the module and the ONNX take uint8 NHWC images (real ones and random pixels)."""


#: ValidateOptions fields that ``export`` sets from its own options (the validated file is its own)
EXPORT_OWNED = {"input_shape": "give export's input_shape", "input_format": "give export's input_format",
                "report_path": "the export writes <onnx>.validation.json"}


@dataclasses.dataclass(frozen=True)
class ExportOptions:
    """How ``export`` exports, validates and names. The ONNX and its ``<onnx>.json`` /
    ``<onnx>.validation.json`` reports replace existing files only when everything succeeded."""

    weights: Any = None
    """A OneFlow checkpoint (``flow.save`` folder), ``.npz`` or ``.safetensors``: loaded
    strictly into the model (a module too), recorded in the report with its sha256 and
    tensor count; ``"random"``: a zoo model's seeded random weights."""
    opset: int = DEFAULT_OPSET
    """ONNX opset (``ofconvert.exporter.check_opset``: MIN_OPSET to ``max_opset()``)."""
    validate: bool = True
    """Compare OneFlow with ONNX Runtime (``ofconvert.validate``) on batch sizes other than
    the traced ones; a mismatch raises a ValidationError subclass and nothing is written.
    ``False``: a one-line warning is printed (``verbose``)."""
    config: Optional[ModelConfig] = None
    """The preprocessing and name of a module (default: from its ``input_shape``)."""
    simplify: bool = False
    """Run the graph simplifier (onnxslim, else onnxsim); kept only when outputs stay equal."""
    validation_options: Optional[ValidateOptions] = None
    """How the export is validated; a dict of ValidateOptions fields is accepted too.
    ``input_shape``, ``report_path`` and ``input_format`` are the export's own."""
    verbose: bool = True
    """Print notes, the validation checklist and warnings."""
    input_shape: Any = None
    """Per-sample input shape without the batch, e.g. ``(3, 256, 256)`` (default: the
    config's, else ``(3, 224, 224)``); ``(1, 3, H, W)`` is read as batch + (C, H, W); the
    batch is always dynamic. Several inputs: a list, ``[(3, H, W), (3, H, W)]`` (named
    ``input0``, ``input1``... or ``input_names``). H and W may be ranges,
    ``(3, (224, 640), (224, 640))``: a dynamic image size traced at the low end."""
    output_names: Any = None
    """Names of the outputs (default: a dict's keys; ``logits`` for one output,
    ``output0``, ``output1``... for several)."""
    model_args: Any = None
    """Constructor arguments of a model given as ``path/to/file.py:Name`` / ``pkg.mod:Name``."""
    input_names: Any = None
    """Names of the inputs (default ``input``, or ``input0``, ``input1``...)."""
    dynamic_size: Any = None
    """True: H and W symbolic (half to twice the given size unless ranges are given),
    proved by traces at other sizes and validated at sizes not traced; refused in one
    line where the model bakes the size."""
    input_format: Optional[str] = None
    """``"uint8-nhwc"``: the ONNX takes resized/cropped uint8 NHWC images and normalises
    them inside (``ofconvert.models.raw_input``), validated on the same uint8 images;
    default ``"float-nchw"``."""

    def __post_init__(self):
        vo = self.validation_options
        if isinstance(vo, dict):
            vo = options_with(ValidateOptions, None, vo, "validation_options")
            object.__setattr__(self, "validation_options", vo)
        elif vo is not None and not isinstance(vo, ValidateOptions):
            raise OfconvertError(f"validation_options must be an ofconvert.ValidateOptions or a dict, "
                                 f"got {type(vo).__name__} {vo!r:.60}")
        for k, why in EXPORT_OWNED.items():
            if vo is not None and getattr(vo, k) is not None:
                raise OfconvertError(f"validation_options.{k} is set by the export itself ({why})")
