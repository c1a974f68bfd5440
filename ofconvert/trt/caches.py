"""The two caches around a TensorRT build, without TensorRT: our calibration
cache (re-targeted to the installed TensorRT's header, never rewritten) and the
timing cache (one file per TensorRT version and GPU)."""
import dataclasses
import os
import re

from ..calibration.cache import format_cache, read_cache_with_header, trt_version_number
from ..errors import CalibrationCacheError
from ..trt_info import parse_version

#: Folder of the default timing caches (one file per TensorRT version and GPU).
TIMING_CACHE_ENV = "OFCONVERT_TRT_CACHE"
from ..calibration.cache import TRT_CALIBRATOR_NAME as CALIBRATOR_ALGORITHM  # the one name of it


# ---------------------------------------------------------------------------
# Calibration cache (TensorRT text format, parsed by ofconvert.calibration.cache)
# ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class CalibrationCache:
    path: str
    header_version: int
    algorithm: str
    scales: dict           # tensor name -> float32 scale (dynamic range = scale * 127)

    def for_tensorrt(self, tensorrt_version) -> bytes:
        """The cache with its header re-targeted to the installed TensorRT: TensorRT
        ignores a cache whose header names another version and then asks the
        calibrator for data it does not have."""
        return format_cache(self.scales, version=tensorrt_version_int(tensorrt_version),
                            calibrator=CALIBRATOR_ALGORITHM).encode("ascii")


def tensorrt_version_int(version) -> int:
    """NV_TENSORRT_VERSION as written in cache headers: 8.6.1 -> 8601, 10.3.0 -> 100300."""
    return trt_version_number(version)


def calibration_cache_header(version) -> str:
    return f"TRT-{tensorrt_version_int(version)}-{CALIBRATOR_ALGORITHM}"


def read_calibration_cache(path) -> CalibrationCache:
    """A TensorRT calibration cache made for our IInt8EntropyCalibrator2 (header
    ``TRT-<ver>-EntropyCalibration2``, then ``<tensor>: <hex float32 scale>`` lines);
    CalibrationCacheError otherwise."""
    path = os.fspath(path)
    header, scales = read_cache_with_header(path)
    if header["calibrator"] != CALIBRATOR_ALGORITHM:
        raise CalibrationCacheError(f"{path} was made for {header['calibrator']}; ofconvert's TensorRT calibrator "
                                    f"is {CALIBRATOR_ALGORITHM} (regenerate the cache)")
    if not scales:
        raise CalibrationCacheError(f"{path} has a header but no tensor scales")
    return CalibrationCache(path=path, header_version=header["version"], algorithm=header["calibrator"],
                            scales=scales)




# ---------------------------------------------------------------------------
# Timing cache
# ---------------------------------------------------------------------------
def _slug(text):
    return re.sub(r"[^A-Za-z0-9]+", "-", str(text)).strip("-").lower() or "gpu"


def timing_cache_name(tensorrt_version, gpu):
    """File name keyed by what a timing cache is valid for: TensorRT version and GPU."""
    cc = str(gpu.get("compute_capability", "")).replace(".", "")
    return f"timing-trt{'.'.join(map(str, parse_version(tensorrt_version)))}-{_slug(gpu.get('name', ''))}-sm{cc}.cache"


def default_timing_cache_dir():
    return os.environ.get(TIMING_CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "ofconvert", "tensorrt")


def resolve_timing_cache(timing_cache, tensorrt_version, gpu):
    """Where the builder reads and writes its timing cache (None: no timing cache).

    None -> the default per-user folder (``$OFCONVERT_TRT_CACHE`` or
    ~/.cache/ofconvert/tensorrt), one file per TensorRT version and GPU, so that
    every build on this machine reuses the measured tactics;
    False -> no timing cache; an existing folder (or a path ending in a
    separator) -> the keyed file inside it; anything else -> that file.
    """
    if timing_cache is False:
        return None
    name = timing_cache_name(tensorrt_version, gpu)
    if timing_cache is None:
        return os.path.join(default_timing_cache_dir(), name)
    p = os.fspath(timing_cache)
    if not p:
        return None
    if os.path.isdir(p) or p.endswith(("/", os.sep)):
        return os.path.join(p, name)
    return p


def read_timing_cache(path) -> bytes:
    if not path or not os.path.isfile(path):
        return b""
    with open(path, "rb") as f:
        return f.read()
