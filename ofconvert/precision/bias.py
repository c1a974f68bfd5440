"""Bias correction of the weight-quantization error, and int32 biases that fit.

Rounding a layer's weights to int8 moves the *mean* of every output channel by
``(Wq - W) . E[x]`` (Nagel et al., "Data-Free Quantization", 2019, sec. 4.2): the
per-channel mean of the layer's input ``E[x]`` is a calibration statistic
(:mod:`ofconvert.calibration` stores it beside the ranges), so the shift is
subtracted from the bias once, when the weights are quantized. Only the layer's
own weight error is corrected (no upstream error: correcting that too, for every
layer at once, counts each error twice). On efficientnet_lite0 it removes a third
of the top-1 flips of the all-int8 model (docs/budget.md)."""
import numpy as np

INT32_MAX = 2 ** 31 - 1


def weight_error_shift(op_type, w, w_deq, axis, mean, group=1):
    """Per-output-channel change of the layer's output mean when ``w`` (float) runs
    as ``w_deq`` (its dequantized int8 weights), for inputs of per-channel mean
    ``mean``; None when the shapes do not match (no correction). ``axis``: the
    output-channel axis of ``w`` (Conv 0; Gemm 0 with transB, else 1)."""
    err = np.asarray(w_deq, np.float64) - np.asarray(w, np.float64)
    mean = np.asarray(mean, np.float64).ravel()
    if op_type == "Conv":
        if err.ndim < 3:
            return None
        out_ch, in_per_group = err.shape[0], err.shape[1]
        if group < 1 or out_ch % group or len(mean) != in_per_group * group:
            return None
        per_tap = err.reshape(out_ch, in_per_group, -1).sum(axis=2)            # [O, I/g]
        return np.einsum("goi,gi->go", per_tap.reshape(group, out_ch // group, in_per_group),
                         mean.reshape(group, in_per_group)).reshape(out_ch)
    if err.ndim != 2:
        return None
    err = err if axis == 0 else err.T                                          # [O, K]
    return err @ mean if err.shape[1] == len(mean) else None


def int32_safe_scales(bias, input_scale, weight_scales):
    """Per-channel weight scales, raised where ``bias / (input_scale * scale)``
    would not fit int32 (a channel whose weights are ~0, e.g. a dead channel after
    BatchNorm folding, keeps a large bias: with its tiny weight scale the int32
    bias saturates and the channel outputs a wrong constant)."""
    ws = np.asarray(weight_scales, np.float64).copy()
    if bias is None or input_scale <= 0:
        return ws
    need = np.abs(np.asarray(bias, np.float64)) / (float(input_scale) * (INT32_MAX * 0.5))
    return np.maximum(ws, need)
