"""How the ``ort-cuda`` backend runs a model (``--ort-cuda``): IO binding, NHWC,
CUDA graph, cuDNN algorithm search; ``default`` and ``fastest`` presets
(docs/gpu.md). ``OrtCudaSettings.runner_kwargs()`` are keyword arguments of
``make_runner("ort-cuda", path, ...)``."""
import dataclasses
from typing import Optional

from ..errors import OfconvertError

CUDNN_ALGO_SEARCH = ("EXHAUSTIVE", "HEURISTIC", "DEFAULT")


@dataclasses.dataclass(frozen=True)
class OrtCudaSettings:
    """How the ``ort-cuda`` backend runs a model.

    io_binding: feed/fetch through an IO binding (needed for device-resident input).
    prefer_nhwc: let the CUDA provider run convolutions in NHWC (tensor-core friendly).
    cuda_graph: capture the whole model once and replay it (needs every node on
    the GPU and fixed-address buffers; implies io_binding).
    cudnn_conv_algo_search: None leaves ONNX Runtime's default (EXHAUSTIVE).
    fuse_conv_bias: the provider's ``fuse_conv_bias`` (cuDNN frontend adds the bias
    inside the convolution; without it cuDNN adds it in a separate kernel per Conv,
    which took 45-48 % of resnet50 fp16's GPU time on the H200, docs/gpu.md).
    """

    io_binding: bool = False
    prefer_nhwc: bool = False
    cuda_graph: bool = False
    cudnn_conv_algo_search: Optional[str] = None
    fuse_conv_bias: bool = False
    auto: bool = False   # ``auto``: chosen by measurement per model, batch and GPU (ofconvert.runners.ort_auto)

    _FLAGS = {"iobind": "io_binding", "nhwc": "prefer_nhwc", "graph": "cuda_graph", "fusebias": "fuse_conv_bias"}

    @classmethod
    def parse(cls, spec):
        """``default`` (ONNX Runtime as shipped), ``fastest`` (the benchmark's default,
        see docs/gpu.md) or flags joined by ``+``: ``iobind``, ``nhwc``, ``graph``,
        ``fusebias``, ``algo=EXHAUSTIVE|HEURISTIC|DEFAULT``; e.g. ``nhwc+graph+algo=heuristic``;
        ``auto``: the fastest of a few candidates, measured (``ort_auto``)."""
        spec = str(spec).strip()
        if spec == "auto":
            return AUTO
        if spec in PRESETS:
            return PRESETS[spec]
        if spec == "plain":
            return cls()
        kw = {}
        for part in filter(None, spec.split("+")):
            if part in cls._FLAGS:
                kw[cls._FLAGS[part]] = True
            elif part.lower().startswith("algo="):
                algo = part.split("=", 1)[1].upper()
                if algo not in CUDNN_ALGO_SEARCH:
                    raise OfconvertError(f"bad cuDNN algo search {algo!r} in {spec!r}; "
                                         f"one of {', '.join(CUDNN_ALGO_SEARCH)}")
                kw["cudnn_conv_algo_search"] = algo
            else:
                raise OfconvertError(f"bad ort-cuda settings {spec!r}: unknown part {part!r}; use auto, default, "
                                     f"fastest or {'+'.join(cls._FLAGS)}+algo=EXHAUSTIVE|HEURISTIC|DEFAULT")
        if not kw:
            raise OfconvertError(f"empty ort-cuda settings {spec!r}")
        return cls(**kw)

    @property
    def label(self):
        if self.auto:
            return "auto"
        for name, preset in PRESETS.items():
            if preset == self:
                return name
        return self.spec

    @property
    def spec(self):
        if self.auto:
            return "auto"
        parts = [flag for flag, attr in self._FLAGS.items() if getattr(self, attr)]
        if self.cudnn_conv_algo_search:
            parts.append("algo=" + self.cudnn_conv_algo_search.lower())
        return "+".join(parts) or "plain"

    def runner_kwargs(self):
        if self.auto:
            raise OfconvertError("ort-cuda settings 'auto' are decided per model file and batch: "
                                 "ofconvert.runners.ort_auto.decide() gives the settings to run")
        opts = {}
        if self.prefer_nhwc:
            opts["prefer_nhwc"] = "1"
        if self.cudnn_conv_algo_search:
            opts["cudnn_conv_algo_search"] = self.cudnn_conv_algo_search
        if self.fuse_conv_bias:
            opts["fuse_conv_bias"] = "1"
        return {"provider_options": opts, "io_binding": self.io_binding or self.cuda_graph,
                "cuda_graph": self.cuda_graph}


PRESETS = {
    # ONNX Runtime's CUDA provider as a user gets it: session.run() on numpy arrays.
    "default": OrtCudaSettings(),
    # The fastest valid combination measured on an H200 (docs/gpu.md, docs/results/):
    # fuse_conv_bias added 1.36-1.50x on resnet50 / efficientnet_lite0 / inception_v3 fp16, but alone it
    # costs 35 % on fp32 depthwise models (efficientnet_lite0 fp32: fastest 0.50x default on an H100), so
    # the default is ``auto`` (ort_auto: measured per model, batch and GPU; docs/gpu.md).
    "fastest": OrtCudaSettings(io_binding=True, prefer_nhwc=True, cuda_graph=True, cudnn_conv_algo_search="HEURISTIC",
                               fuse_conv_bias=True),
}

AUTO = OrtCudaSettings(auto=True)

# The evaluator's ort-cuda settings: ``fastest`` less the CUDA graph, which fixes one
# batch shape (an evaluation's last batch is smaller) and needs device-resident input.
EVAL_SETTINGS = OrtCudaSettings(io_binding=True, prefer_nhwc=True, cudnn_conv_algo_search="HEURISTIC",
                                fuse_conv_bias=True)
