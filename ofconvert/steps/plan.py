"""``preflight(opts) -> Plan``: every check of a conversion, before any work.

The only step that looks at the file system before the work starts: the output
names and folders, files of another precision it would replace, the weights,
the calibration images (listed once, kept on the plan), a ``--calib-cache``
(read once), the check images of a flip budget, the model (a zoo name, or the
user's code imported), TensorRT's presence. A refused run has written nothing.
"""
import dataclasses
import os
import sys
from typing import List, Optional

from ..artifacts.content import check_overwrite
from ..artifacts.names import artifact_paths, check_output_name
from ..config import ModelConfig, get_config
from ..errors import OfconvertError


@dataclasses.dataclass
class Plan:
    """What one conversion will do, checked: the steps read it, never the options' files again."""
    opts: object                          # the ConvertOptions
    paths: dict                           # role -> final path (ofconvert.artifacts)
    config: ModelConfig                   # the model's preprocessing and provenance
    written: list                         # (role, flavour) of every artefact the run may write
    calib_images: Optional[List[str]] = None   # --int8 --calib: the images, listed once
    check_images: Optional[List[str]] = None   # --max-flips: the images judging the budget
    calib_data: object = None             # what calibrates: --calib, or the calibration part of a split
    split: bool = False                   # --calib split into calibration and check parts
    cache_scales: Optional[dict] = None   # --calib-cache, read once
    engine: object = None                 # --to trt: the checked ofconvert.EngineOptions

    @property
    def folder(self):
        """The folder every artefact of the run lands in."""
        return os.path.dirname(self.paths["fp32"])


def written_roles(opts):
    """(role, flavour) of every artefact a run of ``opts`` may write."""
    roles = [("fp32", "fp32")]
    if opts.precision == "fp16":
        roles.append(("fp16", "fp16"))
    elif opts.precision == "int8":
        roles += [("int8", "int8"), ("int8-cpu", "int8-cpu")]
    if opts.to == "trt":
        roles.append(("engine", opts.precision))
    return roles


def model_config(opts):
    """The run's ModelConfig (preprocessing); a 4-number --input-shape is read as
    batch + (C, H, W) here (the export decides with the module: exporter.resolve_shapes)."""
    from ..export_io import check_shape, split_shapes

    shapes = split_shapes(opts.input_shape)
    shape = None if shapes is None else check_shape(shapes[0])[0]
    if shape is not None and len(shape) == 4:
        shape = shape[1:]
    return get_config(opts.model, shape)


def preflight(opts) -> Plan:
    """Check everything ``opts`` asks for (OfconvertError, one line) and return the Plan."""
    opts.check_values()
    _check_output(opts)
    _check_shapes(opts)
    _check_weights(opts)
    config = _check_model(opts)
    plan = Plan(opts=opts, paths=artifact_paths(opts.model, opts.output, opts.precision, opts.to), config=config,
                written=written_roles(opts))
    _check_calibration(opts, plan)
    _check_image_input(opts, plan)
    if opts.max_flips is not None or opts.check_data is not None:
        _check_budget(opts, plan)
    from ..fileio import check_creatable_dir

    check_creatable_dir(plan.folder)   # checked, not created: a refused run leaves no new folder
    if opts.to == "trt":
        plan.engine = _check_tensorrt(opts)
    for role, flavour in plan.written:   # never replace a file of another precision
        check_overwrite(plan.paths[role], flavour)
    return plan


def _check_output(opts):
    if opts.output and (os.path.isdir(opts.output) or str(opts.output).endswith(os.sep)):
        raise OfconvertError(f"-o/--output names a folder ({opts.output}); give a file name, e.g. {opts.model}.onnx")
    if opts.output:   # the name must say what the file will hold (ofconvert.artifacts)
        check_output_name(opts.output, opts.precision, opts.to)


def _check_shapes(opts):
    from ..export_io import check_shape, input_names, split_shapes
    from ..exporter import check_opset

    check_opset(opts.opset)
    if opts.simplify:
        from ..exporter import require_simplifier

        require_simplifier()   # no simplifier importable: one line, not a silent no-op
    shapes = split_shapes(opts.input_shape)
    if shapes is not None:
        for raw in shapes:
            check_shape(raw)
        opts.input_shape = shapes if len(shapes) > 1 else shapes[0]
        input_names(len(shapes), opts.input_names)
        if opts.to == "trt" and len(shapes) > 1:   # trt/plan.inspect_onnx would say so after the export
            raise OfconvertError(f"--to trt builds engines of one image input; this model has {len(shapes)} "
                                 f"inputs: export it --to onnx and run it with ONNX Runtime")


def _check_weights(opts):
    if opts.weights:
        from ..weights import check_weights_path

        check_weights_path(opts.weights)   # a checkpoint's pickle is read (restricted) now


def _check_model(opts):
    """Unknown model, user code that does not import, bad --model-args: one line now."""
    from ..usermodel import is_user_spec, parse_model_args

    if opts.model_args is not None:
        if not is_user_spec(opts.model):
            raise OfconvertError("--model-args is for your own model (path/to/file.py:Class or pkg.mod:Class)")
        parse_model_args(opts.model_args)
    return model_config(opts)   # unknown model -> ModelNotFoundError


def _check_calibration(opts, plan):
    """--calib listed once (empty folder, bad manifest: now); --calib-cache read once."""
    if opts.calib_cache is not None:
        from ..calibration import read_cache

        plan.cache_scales = read_cache(opts.calib_cache)   # missing, garbled, foreign: one line now
    if opts.precision != "int8" or not opts.calib:
        return
    if not os.path.exists(opts.calib):
        raise OfconvertError(f"--calib: no such folder or manifest: {opts.calib}")
    from ..calibration import list_calibration_images

    plan.calib_images = plan.calib_data = list_calibration_images(opts.calib, opts.calib_images)
    if opts.calib_images is not None and len(plan.calib_images) < opts.calib_images:
        print(f"note: --calib-images {opts.calib_images} but {opts.calib} holds {len(plan.calib_images)} images: "
              f"calibrating on {len(plan.calib_images)}", file=sys.stderr)


def _check_image_input(opts, plan):
    """int8 calibration and --max-flips feed RGB images of the preprocessing: one line otherwise."""
    from ..export_io import check_shape, split_shapes

    if not ((opts.precision == "int8" and opts.calib) or opts.max_flips is not None):
        return
    shapes = split_shapes(opts.input_shape) or [plan.config.input_shape]
    lows = [check_shape(r)[0] for r in shapes]
    lows = [lo[1:] if len(lo) == 4 else lo for lo in lows]
    if len(lows) > 1 or len(lows[0]) != 3 or lows[0][0] != 3:
        raise OfconvertError(f"calibration and --max-flips feed RGB images (3, H, W); this model's input "
                             f"{'; '.join(','.join(map(str, lo)) for lo in lows)} is not one: use --calib-cache "
                             f"for int8, or no flip budget")


def _check_budget(opts, plan):
    """The budget's check images, listed once: --check-data (disjoint from --calib by
    content), else a split of --calib (int8) or all of --calib (fp16)."""
    from ..budget import parse_budget
    from ..calibration import list_calibration_images

    if opts.max_flips is None:
        raise OfconvertError("--check-data is for --max-flips")
    if opts.precision not in ("int8", "fp16"):
        raise OfconvertError("--max-flips needs --int8 or --fp16 (it keeps layers in float until int8/fp16 "
                             "predictions agree with fp32)")
    parse_budget(opts.max_flips)
    _check_speed_backend(opts)
    if opts.check_data is not None:
        plan.check_images = list_calibration_images(opts.check_data)   # missing / empty: one line now
        if plan.calib_images:
            from ..budget.data import require_disjoint  # no calibration image may judge the budget

            require_disjoint(plan.calib_images, plan.check_images)
    elif opts.calib_cache is not None or (opts.precision == "fp16" and not opts.calib):
        raise OfconvertError("--max-flips needs check images: --check-data DIR"
                             + (" (or --calib DIR)" if opts.precision == "fp16" else
                                " (with --calib-cache there is no calibration set to split)"))
    elif opts.precision == "fp16":
        plan.check_images = list_calibration_images(opts.calib, opts.calib_images)
    else:
        from ..budget.data import split_calibration_set

        plan.calib_data, plan.check_images = split_calibration_set(plan.calib_images)
        plan.split = True


def _check_speed_backend(opts):
    from ..budget.search import SPEED_BACKENDS
    from ..runners import unavailable_reason

    if opts.speed_backend not in SPEED_BACKENDS:
        raise OfconvertError(f"--speed-backend must be one of {', '.join(SPEED_BACKENDS)}, got {opts.speed_backend!r}")
    why = unavailable_reason(opts.speed_backend)
    if why:
        raise OfconvertError(f"--speed-backend {opts.speed_backend}: {why}")


def _check_tensorrt(opts):
    """The engine build's options, checked, and TensorRT there: before the slow steps
    (export, calibration). The calibration cache is the int8 step's, added then."""
    from ..engine import EngineOptions, require_tensorrt

    engine = EngineOptions(precision=opts.precision, batch=opts.batch, max_batch=opts.max_batch,
                           workspace_mb=opts.workspace_mb, timing_cache=opts.timing_cache,
                           strongly_typed=opts.strongly_typed).validate()
    require_tensorrt()
    return engine
