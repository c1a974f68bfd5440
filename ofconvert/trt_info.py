"""TensorRT facts shared by the decision layers (``ofconvert.trt.plan``, ``caches``,
``sidecar``) and the execution layer (``ofconvert.trt.backend``): the install hint
and version parsing. Imports nothing heavy."""
from typing import Tuple

TRT_INSTALL_HINT = ("TensorRT is not installed (import tensorrt failed); on a machine with an NVIDIA GPU: "
                    "pip install 'tensorrt>=10' polygraphy (see docs/tensorrt.md)")


def parse_version(version) -> Tuple[int, int, int]:
    """'10.3.0.26' -> (10, 3, 0) (``packaging``'s reading of the version)."""
    from packaging.version import InvalidVersion, Version

    try:
        nums = list(Version(str(version)).release[:3])
    except InvalidVersion:
        raise ValueError(f"not a version: {version!r}") from None
    return tuple(nums + [0] * (3 - len(nums)))
