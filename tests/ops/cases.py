"""The op conformance cases: small OneFlow modules, one op or pattern each, by
family (judged by ``conformance.run_case``; test data, not part of the package)."""
from .conformance import Case, fn_module, seq


def all_cases():
    import oneflow as flow
    import oneflow.nn as nn
    import oneflow.nn.functional as F

    C = []

    def add(family, name, make, shape=(3, 8, 8), rtol=1e-4, **kw):
        C.append(Case(name, family, make, shape, rtol, **kw))

    def fn(family, name, f, shape=(3, 8, 8), rtol=1e-4, **kw):
        add(family, name, lambda: fn_module(f), shape, rtol, **kw)

    # --- reductions ---------------------------------------------------------
    R = "reduce"
    fn(R, "mean_hw", lambda x: x.mean((2, 3)))
    fn(R, "mean_keepdim", lambda x: x.mean((2, 3), keepdim=True))
    fn(R, "mean_c", lambda x: x.mean(1))
    fn(R, "mean_neg_dim", lambda x: x.mean(-1))
    fn(R, "sum_c", lambda x: x.sum(1))
    fn(R, "sum_hw_keepdim", lambda x: x.sum((2, 3), keepdim=True))
    fn(R, "sum_all_but_batch", lambda x: x.sum((1, 2, 3)))
    fn(R, "prod_w", lambda x: (x * 0.5).prod(3))
    fn(R, "amax_c", lambda x: x.amax(1))
    fn(R, "amax_hw", lambda x: x.amax((2, 3)))
    fn(R, "amin_c", lambda x: x.amin(1))
    fn(R, "max_dim_values", lambda x: x.max(1)[0])
    fn(R, "max_dim_keepdim", lambda x: x.max(1, keepdim=True)[0])
    fn(R, "min_dim_values", lambda x: x.min(2)[0])
    fn(R, "argmax_dim", lambda x: x.argmax(1))
    fn(R, "argmax_flat_rows", lambda x: x.flatten(1).argmax(1))
    fn(R, "argmin_dim", lambda x: x.argmin(1))
    fn(R, "var_unbiased", lambda x: x.var(1))
    fn(R, "var_biased", lambda x: x.var(1, unbiased=False))
    fn(R, "var_hw_keepdim", lambda x: x.var((2, 3), keepdim=True))
    fn(R, "std_c", lambda x: x.std(1))
    fn(R, "logsumexp_c", lambda x: flow.logsumexp(x, 1))
    fn(R, "norm_l2_c", lambda x: flow.linalg.norm(x, dim=1))
    fn(R, "amax_keepdim", lambda x: x.amax(1, keepdim=True))
    fn(R, "max_all", lambda x: x.max())
    fn(R, "sum_all", lambda x: x.sum())
    fn(R, "argmin_flat_rows", lambda x: x.flatten(1).argmin(1))
    fn(R, "var_all_but_batch", lambda x: x.var((1, 2, 3)))
    fn(R, "var_batch", lambda x: x.var(0))
    fn(R, "std_hw_biased", lambda x: x.std((2, 3), unbiased=False))
    fn(R, "logsumexp_hw", lambda x: flow.logsumexp(x, (2, 3)))
    fn(R, "l2_normalize_eps", lambda x: F.normalize(x * 1e-2, dim=1, eps=1e-3))   # eps under the sqrt
    # --- elementwise / activations -------------------------------------------
    A = "activation"
    for name, mod in [("relu", nn.ReLU), ("relu6", nn.ReLU6), ("sigmoid", nn.Sigmoid), ("tanh", nn.Tanh),
                      ("silu", nn.SiLU), ("hardswish", nn.Hardswish), ("hardsigmoid", nn.Hardsigmoid),
                      ("gelu", nn.GELU), ("selu", nn.SELU), ("elu", nn.ELU), ("celu", nn.CELU),
                      ("mish", nn.Mish), ("softplus", nn.Softplus), ("leaky_relu", lambda: nn.LeakyReLU(0.1)),
                      ("prelu", nn.PReLU), ("prelu_channels", lambda: nn.PReLU(3)),
                      ("softsign", nn.Softsign), ("hardtanh", lambda: nn.Hardtanh(-0.5, 0.5)),
                      ("softmax_c", lambda: nn.Softmax(1)), ("log_softmax_c", lambda: nn.LogSoftmax(1)),
                      ("softmax_last", lambda: nn.Softmax(-1))]:
        add(A, name, mod)
    fn(A, "gelu_tanh", lambda x: F.gelu(x, approximate="tanh"))
    fn(A, "negative", lambda x: -x)
    fn(A, "abs", lambda x: x.abs())
    fn(A, "exp", lambda x: x.exp())
    fn(A, "log_abs", lambda x: (x.abs() + 1).log())
    fn(A, "sqrt_abs", lambda x: (x.abs() + 1e-3).sqrt())
    fn(A, "rsqrt_abs", lambda x: flow.rsqrt(x.abs() + 1e-3))
    fn(A, "square", lambda x: flow.square(x))
    fn(A, "pow2", lambda x: x ** 2)
    fn(A, "pow_half", lambda x: (x.abs() + 1) ** 0.5)
    fn(A, "reciprocal", lambda x: 1.0 / (x.abs() + 1))
    fn(A, "rsub_scalar", lambda x: 1.0 - x)
    fn(A, "clamp", lambda x: x.clamp(-0.3, 0.7))
    fn(A, "clamp_min0", lambda x: x.clamp(min=0.0))
    fn(A, "clamp_max0", lambda x: x.clamp(max=0.0))
    fn(A, "floor", lambda x: (x * 3).floor())
    fn(A, "ceil", lambda x: (x * 3).ceil())
    fn(A, "round", lambda x: (x * 3).round())
    fn(A, "sign", lambda x: x.sign())
    fn(A, "erf", lambda x: flow.erf(x))
    fn(A, "sin_cos", lambda x: x.sin() + x.cos())
    fn(A, "maximum", lambda x: flow.maximum(x, x * 0.5))
    fn(A, "minimum", lambda x: flow.minimum(x, x * 0.5))
    fn(A, "where_gt", lambda x: flow.where(x > 0, x, x * 0.1))
    fn(A, "mul_sigmoid_gate", lambda x: x * flow.sigmoid(x.mean((2, 3), keepdim=True)))
    fn(A, "div_tensor", lambda x: x / (x.abs().sum(1, keepdim=True) + 1))
    fn(A, "sub_mean", lambda x: x - x.mean(1, keepdim=True))
    fn(A, "add_scalar_tensor", lambda x: x + flow.tensor(2.0))
    add(A, "celu_alpha", lambda: nn.CELU(0.5))
    add(A, "softplus_beta", lambda: nn.Softplus(beta=2.0, threshold=1.0))
    fn(A, "masked_fill", lambda x: x.masked_fill(x > 0.5, -1.0))
    fn(A, "eq_ne_scalar", lambda x: flow.where((x.round() == 0) | (x.round() != 1), x, -x))
    fn(A, "ge_le_scalar", lambda x: flow.where((x >= 0.1) & (x <= 0.9), x, x * 0.5))
    fn(A, "floordiv_scalar", lambda x: (x * 4) // 2)
    fn(A, "floordiv_scalar_frac", lambda x: (x * 4) // 0.7)
    fn(A, "floordiv_tensor", lambda x: (x * 4) // (x.abs() + 0.5))
    fn(A, "floordiv_int", lambda x: x + ((x * 8).to(flow.int64) // 3).to(flow.float32))     # truncates: -7 // 2 == -3
    fn(A, "fmod_scalar", lambda x: (x * 4) % 1.5)
    fn(A, "fmod_tensor", lambda x: (x * 4) % (x.abs() + 0.5))
    fn(A, "reverse_pow", lambda x: 2 ** x)
    fn(A, "reverse_pow_float", lambda x: 0.5 ** (x * 3))
    fn(A, "pow_tensor", lambda x: (x.abs() + 0.5) ** x)
    fn(A, "sine_pos_embed", lambda x: x + 10000 ** (2 * (flow.arange(8, dtype=flow.float32) // 2) / 8))   # FAN
    # --- shapes, slicing, indexing -------------------------------------------
    S = "shape"
    fn(S, "flatten", lambda x: x.flatten(1))
    fn(S, "view_batch", lambda x: x.view(x.size(0), -1))
    fn(S, "reshape_2n", lambda x: x.reshape(2 * x.shape[0], -1))
    fn(S, "reshape_tokens", lambda x: x.reshape(x.shape[0], 3, -1).transpose(1, 2))
    fn(S, "permute", lambda x: x.permute(0, 2, 3, 1))
    fn(S, "transpose_hw", lambda x: x.transpose(2, 3))
    fn(S, "squeeze_dim", lambda x: x[:, :1].squeeze(1))
    fn(S, "squeeze_all_kept", lambda x: x.mean((2, 3), keepdim=True).squeeze(-1).squeeze(-1))
    fn(S, "unsqueeze", lambda x: x.unsqueeze(1))
    fn(S, "unsqueeze_last", lambda x: x.mean(1).unsqueeze(-1))
    fn(S, "slice_c", lambda x: x[:, :2])
    fn(S, "slice_step", lambda x: x[:, :, ::2, 1::2])
    fn(S, "slice_neg", lambda x: x[:, -2:, 1:-1])
    fn(S, "select_c", lambda x: x[:, 0])
    fn(S, "select_last", lambda x: x[:, -1])
    fn(S, "narrow", lambda x: x.narrow(2, 1, 4))
    fn(S, "split_2", lambda x: sum(t.sum(1) for t in x.split(1, 1)))
    fn(S, "split_sizes", lambda x: x.split([1, 2], 1)[1])
    fn(S, "chunk", lambda x: x.chunk(2, 2)[0] * x.chunk(2, 2)[1])
    fn(S, "cat_c", lambda x: flow.cat([x, x * 2], 1))
    fn(S, "cat_neg_dim", lambda x: flow.cat([x, x], -1))
    fn(S, "stack_new_dim", lambda x: flow.stack([x, x * 2], 1))
    fn(S, "stack_last", lambda x: flow.stack([x, -x], -1))
    fn(S, "expand", lambda x: x[:, :1].expand(x.size(0), 3, 8, 8))
    fn(S, "expand_neg1", lambda x: x[:, :1].expand(-1, 4, -1, -1))
    fn(S, "expand_as", lambda x: x.mean(1, keepdim=True).expand_as(x))
    fn(S, "repeat", lambda x: x.repeat(1, 2, 1, 1))
    fn(S, "repeat_batch", lambda x: x.repeat(2, 1, 1, 1))
    fn(S, "tile", lambda x: flow.tile(x, (1, 1, 2, 1)))
    fn(S, "broadcast_add_row", lambda x: x + x[:, :, :1, :])
    fn(S, "roll_w", lambda x: flow.roll(x, 2, 3))
    fn(S, "roll_hw", lambda x: flow.roll(x, (1, -2), (2, 3)))
    fn(S, "ones_like", lambda x: x + flow.ones_like(x))
    fn(S, "zeros_like", lambda x: x * 2 + flow.zeros_like(x))
    fn(S, "index_select", lambda x: flow.index_select(x, 1, flow.tensor([2, 0], dtype=flow.int64)))
    fn(S, "gather_c", lambda x: flow.gather(x, 1, flow.zeros(x.shape[0], 1, 8, 8, dtype=flow.int64)))
    fn(S, "flip_w", lambda x: flow.flip(x, [3]))
    add(S, "pixel_shuffle", lambda: seq(nn.Conv2d(3, 8, 1), nn.PixelShuffle(2)))
    fn(S, "cls_token_cat", lambda x: flow.cat([x.flatten(2).mean(2, keepdim=True), x.flatten(2)], 2))
    fn(S, "matmul_self", lambda x: flow.matmul(x, x.transpose(2, 3)))
    fn(S, "bmm_tokens", lambda x: flow.bmm(x.flatten(2), x.flatten(2).transpose(1, 2)))
    fn(S, "einsum_like_attn", lambda x: (x.flatten(2).transpose(1, 2) @ x.flatten(2)).softmax(-1))
    fn(S, "to_float_arange", lambda x: x + flow.arange(8, dtype=flow.float32))
    fn(S, "arange_step", lambda x: x * flow.arange(0.0, 4.0, 0.5))
    fn(S, "arange_int", lambda x: x[:, :, :, flow.arange(1, 8, 2)])
    fn(S, "ones_batch", lambda x: x - flow.ones(x.shape[0], 1, 8, 8))
    fn(S, "full_like", lambda x: x * flow.full_like(x, 0.5))
    fn(S, "roll_flat", lambda x: flow.roll(x, 5))
    fn(S, "roll_batch", lambda x: flow.roll(x, 1, 0))
    fn(S, "roll_batch_and_h", lambda x: flow.roll(x, (-1, 3), (0, 2)))
    fn(S, "roll_neg_dim", lambda x: flow.roll(x, -3, -1))      # OneFlow: dims=-1 rolls the flattened tensor
    fn(S, "flip_hw", lambda x: flow.flip(x, [2, -1]))
    fn(S, "flip_batch", lambda x: flow.flip(x, [0]))
    fn(S, "stack_3", lambda x: flow.stack([x[:, 0], x[:, 1], x[:, 2]], 2))

    def setitem(idx, value):
        """``y = x.clone(); y[idx] = value(x)`` (an in-place slice_update)."""
        def f(x):
            y = x.clone()
            y[idx] = value(x)
            return y
        return f

    def iadd(idx, value):
        """``y = x.clone(); y[idx] += value(x)`` (rexnet's ``out[:, 0:c] += x``)."""
        def f(x):
            y = x.clone()
            y[idx] += value(x)
            return y
        return f

    fn(S, "setitem_c", setitem((slice(None), slice(None, 1)), lambda x: x[:, 1:2] * 2))
    fn(S, "setitem_scalar", setitem((slice(None), slice(1, 2)), lambda x: 0.5))
    fn(S, "setitem_hw_inner", setitem((Ellipsis, slice(1, None), slice(1, None)), lambda x: x[..., :-1, :-1] * -1))
    fn(S, "setitem_step", setitem((slice(None), slice(None), slice(1, 7, 2)), lambda x: x[:, :, :3] + 1))
    fn(S, "setitem_batch_tail", setitem(slice(1, None), lambda x: x[1:] * 3))
    fn(S, "setitem_neg", setitem((slice(None), slice(-2, None), slice(None), -1), lambda x: x[:, :2, :, 0] - 1))
    fn(S, "iadd_w", iadd((slice(None), slice(None), slice(2, 5)), lambda x: 1.0))
    fn(S, "iadd_channels", iadd((slice(None), slice(0, 2)), lambda x: x[:, 1:] * x[:, 1:]))
    fn(S, "unfold_3x3_p1", lambda x: F.unfold(x, 3, padding=1))
    fn(S, "unfold_2x2_s2", lambda x: F.unfold(x, 2, stride=2))
    fn(S, "unfold_non_tiling", lambda x: F.unfold(x, 3, stride=3))            # 8 = 2 * 3 + 2: the rest is dropped
    fn(S, "unfold_dilated_rect", lambda x: F.unfold(x, (2, 3), dilation=(2, 1), padding=(1, 0), stride=(1, 2)))
    add(S, "unfold_module", lambda: nn.Unfold(kernel_size=4, stride=4))
    fn(S, "fold_2x2_s2", lambda x: F.fold(F.unfold(x, 2, stride=2) * 2, (8, 8), 2, stride=2))
    fn(S, "fold_overlap", lambda x: F.fold(F.unfold(x, 3, padding=1), (8, 8), 3, padding=1))
    fn(S, "fold_gaps", lambda x: F.fold(F.unfold(x, 2, stride=3), (9, 8), 2, stride=3))
    fn(S, "fold_dilated_rect", lambda x: F.fold(F.unfold(x, (2, 3), dilation=(2, 1), stride=(1, 2)), (8, 8),
                                                 (2, 3), dilation=(2, 1), stride=(1, 2)))
    # --- normalization -----------------------------------------------------------
    N = "norm"
    add(N, "batchnorm2d", lambda: nn.BatchNorm2d(3).eval())
    add(N, "batchnorm1d_head", lambda: seq(nn.Flatten(), nn.BatchNorm1d(192)).eval())
    add(N, "layernorm_last", lambda: nn.LayerNorm(8))
    add(N, "layernorm_chw", lambda: nn.LayerNorm([3, 8, 8]))
    add(N, "groupnorm", lambda: seq(nn.Conv2d(3, 4, 1), nn.GroupNorm(2, 4)))
    add(N, "groupnorm_1", lambda: seq(nn.Conv2d(3, 4, 1), nn.GroupNorm(1, 4)))
    add(N, "instancenorm_affine", lambda: nn.InstanceNorm2d(3, affine=True))
    add(N, "instancenorm", lambda: nn.InstanceNorm2d(3))
    fn(N, "normalize_c", lambda x: F.normalize(x, dim=1))
    fn(N, "normalize_flat", lambda x: F.normalize(x.flatten(1), dim=-1))
    fn(N, "layernorm_tokens", lambda x: F.layer_norm(x.flatten(2).transpose(1, 2), (3,)))
    # --- convolution, linear ----------------------------------------------------
    L = "conv"
    add(L, "conv3x3", lambda: nn.Conv2d(3, 4, 3, padding=1))
    add(L, "conv_stride2_nobias", lambda: nn.Conv2d(3, 4, 3, stride=2, bias=False))
    add(L, "conv_dilated", lambda: nn.Conv2d(3, 4, 3, dilation=2, padding=2))
    add(L, "conv_groups", lambda: nn.Conv2d(3, 6, 3, groups=3, padding=1))
    add(L, "conv_depthwise", lambda: nn.Conv2d(3, 3, 3, groups=3, padding=1))
    add(L, "conv_rect_kernel", lambda: nn.Conv2d(3, 4, (1, 3), padding=(0, 1)))
    add(L, "conv_pad_asym_same", lambda: nn.Conv2d(3, 4, 4, padding="same"))
    add(L, "conv1d", lambda: seq(nn.Flatten(2), nn.Conv1d(3, 4, 3, padding=1)))
    add(L, "conv_transpose2d", lambda: nn.ConvTranspose2d(3, 4, 2, stride=2))
    add(L, "conv_transpose2d_pad", lambda: nn.ConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1))
    add(L, "conv_transpose2d_nobias", lambda: nn.ConvTranspose2d(3, 2, 4, stride=2, padding=1, bias=False))
    add(L, "conv_transpose2d_groups_dil", lambda: nn.ConvTranspose2d(3, 6, 3, stride=2, groups=3, dilation=2))
    add(L, "conv_transpose2d_rect", lambda: nn.ConvTranspose2d(3, 4, (2, 3), stride=(2, 1), padding=(0, 1)))
    add(L, "conv_transpose1d", lambda: seq(nn.Flatten(2), nn.ConvTranspose1d(3, 4, 3, stride=2, padding=1,
                                                                                output_padding=1)))
    add(L, "conv_transpose3d", lambda: seq(fn_module(lambda x: x.unsqueeze(2)), nn.ConvTranspose3d(3, 2, 3, stride=2)))
    add(L, "linear_head", lambda: seq(nn.Flatten(), nn.Linear(192, 10)))
    add(L, "linear_nobias", lambda: seq(nn.Flatten(), nn.Linear(192, 10, bias=False)))
    add(L, "linear_tokens", lambda: seq(nn.Flatten(2), nn.Linear(64, 5)))
    add(L, "se_block_1x1", lambda: _se())
    add(L, "conv_bn_relu", lambda: seq(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()).eval())
    add(L, "identity", lambda: nn.Identity())
    add(L, "dropout_eval", lambda: seq(nn.Dropout(0.5), nn.Conv2d(3, 2, 1)).eval())
    # --- pooling -----------------------------------------------------------------
    P = "pool"
    add(P, "maxpool2", lambda: nn.MaxPool2d(2))
    add(P, "maxpool3_s2_p1", lambda: nn.MaxPool2d(3, 2, 1))
    add(P, "maxpool_ceil", lambda: nn.MaxPool2d(3, 2, ceil_mode=True))
    add(P, "avgpool2", lambda: nn.AvgPool2d(2))
    add(P, "avgpool3_p1", lambda: nn.AvgPool2d(3, 1, 1))
    add(P, "avgpool3_p1_nopadcount", lambda: nn.AvgPool2d(3, 1, 1, count_include_pad=False))
    add(P, "avgpool_ceil", lambda: nn.AvgPool2d(3, 2, ceil_mode=True), shape=(3, 8, 8))
    add(P, "avgpool_ceil_p1", lambda: nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False), shape=(3, 9, 9))
    add(P, "avgpool_ceil_p1_padcount", lambda: nn.AvgPool2d(3, 2, 1, ceil_mode=True), shape=(3, 10, 10))
    add(P, "avgpool_ceil_rect", lambda: nn.AvgPool2d((2, 3), 2, ceil_mode=True), shape=(3, 7, 9))
    add(P, "avgpool_divisor_override", lambda: nn.AvgPool2d(3, 2, 1, divisor_override=5))
    add(P, "avgpool_ceil_divisor_override", lambda: nn.AvgPool2d(3, 2, ceil_mode=True, divisor_override=4))
    add(P, "maxpool_ceil_p1", lambda: nn.MaxPool2d(3, 2, 1, ceil_mode=True), shape=(3, 10, 10))
    add(P, "maxpool_dilated_ceil", lambda: nn.MaxPool2d(3, 2, 1, dilation=2, ceil_mode=True), shape=(3, 9, 9))
    add(P, "maxpool_rect_stride", lambda: nn.MaxPool2d((3, 2), (1, 2), (1, 0)), shape=(3, 8, 9))
    add(P, "adaptive_avg_1", lambda: nn.AdaptiveAvgPool2d(1))
    add(P, "adaptive_avg_2", lambda: nn.AdaptiveAvgPool2d(2))
    add(P, "adaptive_avg_uneven", lambda: nn.AdaptiveAvgPool2d(3), shape=(3, 8, 8))
    add(P, "adaptive_avg_7_on_10", lambda: nn.AdaptiveAvgPool2d((7, 7)), shape=(3, 10, 10))
    add(P, "adaptive_max_1", lambda: nn.AdaptiveMaxPool2d(1))
    add(P, "adaptive_max_2", lambda: nn.AdaptiveMaxPool2d(2))
    add(P, "adaptive_max_uneven", lambda: nn.AdaptiveMaxPool2d(3))
    add(P, "adaptive_avg_mixed", lambda: nn.AdaptiveAvgPool2d((4, 3)), shape=(3, 8, 8))
    add(P, "adaptive_avg_rect", lambda: nn.AdaptiveAvgPool2d((3, 5)), shape=(3, 7, 9))
    add(P, "adaptive_avg_upscale", lambda: nn.AdaptiveAvgPool2d((5, 10)), shape=(3, 4, 8))
    add(P, "adaptive_max_7_on_10", lambda: nn.AdaptiveMaxPool2d((7, 7)), shape=(3, 10, 10))
    add(P, "adaptive_max_mixed", lambda: nn.AdaptiveMaxPool2d((2, 3)), shape=(3, 8, 8))
    add(P, "adaptive_avg_1d", lambda: seq(nn.Flatten(2), nn.AdaptiveAvgPool1d(5)))
    add(P, "adaptive_max_1d", lambda: seq(nn.Flatten(2), nn.AdaptiveMaxPool1d(5)))
    fn(P, "interp_area", lambda x: F.interpolate(x, size=(3, 5), mode="area"))
    add(P, "avgpool1d_tokens", lambda: seq(nn.Flatten(2), nn.AvgPool1d(2)))
    add(P, "maxpool1d_tokens", lambda: seq(nn.Flatten(2), nn.MaxPool1d(2)))
    add(P, "avgpool1d_ceil_p1", lambda: seq(nn.Flatten(2), nn.AvgPool1d(3, 2, 1, ceil_mode=True)), shape=(3, 8, 9))
    add(P, "avgpool1d_ceil_nopadcount",
        lambda: seq(nn.Flatten(2), nn.AvgPool1d(3, 2, 1, ceil_mode=True, count_include_pad=False)), shape=(3, 8, 9))
    add(P, "maxpool1d_ceil_p1", lambda: seq(nn.Flatten(2), nn.MaxPool1d(4, 3, 1, ceil_mode=True)))
    fn(P, "global_max_via_amax", lambda x: x.flatten(2).amax(-1))
    # --- padding ------------------------------------------------------------------
    D = "pad"
    fn(D, "pad_constant", lambda x: F.pad(x, (1, 2, 0, 1)))
    fn(D, "pad_constant_value", lambda x: F.pad(x, (1, 1, 1, 1), value=0.5))
    fn(D, "pad_reflect", lambda x: F.pad(x, (1, 2, 2, 1), mode="reflect"))
    fn(D, "pad_replicate", lambda x: F.pad(x, (1, 2, 2, 1), mode="replicate"))
    add(D, "zeropad2d", lambda: nn.ZeroPad2d((1, 0, 1, 0)))
    add(D, "reflectionpad2d", lambda: nn.ReflectionPad2d(2))
    add(D, "replicationpad2d", lambda: nn.ReplicationPad2d(1))
    add(D, "constantpad2d", lambda: nn.ConstantPad2d(1, -1.0))
    add(D, "reflectionpad2d_asym", lambda: nn.ReflectionPad2d((0, 3, 2, 1)))
    add(D, "replicationpad2d_asym", lambda: nn.ReplicationPad2d((3, 0, 1, 4)))
    add(D, "reflectionpad1d", lambda: seq(nn.Flatten(2), nn.ReflectionPad1d((2, 3))))
    add(D, "replicationpad1d", lambda: seq(nn.Flatten(2), nn.ReplicationPad1d((4, 1))))
    # --- resampling --------------------------------------------------------------------
    U = "resample"
    add(U, "upsample_nearest_x2", lambda: nn.Upsample(scale_factor=2, mode="nearest"))
    add(U, "upsample_bilinear_x2", lambda: nn.Upsample(scale_factor=2, mode="bilinear"))
    add(U, "upsample_bilinear_x2_ac", lambda: nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True))
    add(U, "upsamplingnearest2d", lambda: nn.UpsamplingNearest2d(scale_factor=2))
    add(U, "upsamplingbilinear2d", lambda: nn.UpsamplingBilinear2d(scale_factor=2))
    fn(U, "interp_nearest_size", lambda x: F.interpolate(x, size=(12, 16), mode="nearest"))
    fn(U, "interp_bilinear_size", lambda x: F.interpolate(x, size=(12, 12), mode="bilinear", align_corners=False))
    fn(U, "interp_bilinear_size_ac", lambda x: F.interpolate(x, size=(5, 11), mode="bilinear", align_corners=True))
    fn(U, "interp_bilinear_down", lambda x: F.interpolate(x, size=(4, 4), mode="bilinear", align_corners=False))
    fn(U, "interp_bicubic_x2", lambda x: F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False))
    fn(U, "interp_nearest_x3", lambda x: F.interpolate(x, scale_factor=3, mode="nearest"))
    fn(U, "interp_nearest_odd_size", lambda x: F.interpolate(x, size=(13, 7), mode="nearest"))
    fn(U, "interp_nearest_down", lambda x: F.interpolate(x, size=(3, 5), mode="nearest"))
    fn(U, "interp_nearest_frac_scale", lambda x: F.interpolate(x, scale_factor=(1.5, 2.5), mode="nearest"))
    # float32 index rounding where OneFlow's floor(o * (1/s)) and Resize's floor(o / s) differ
    fn(U, "interp_nearest_size_14_to_8", lambda x: F.interpolate(x, size=(8, 4), mode="nearest"), shape=(3, 14, 14))
    fn(U, "interp_nearest_scale_1_2", lambda x: F.interpolate(x, scale_factor=1.2, mode="nearest"), shape=(3, 16, 17))
    fn(U, "interp_bilinear_frac_scale", lambda x: F.interpolate(x, scale_factor=1.7, mode="bilinear"))
    fn(U, "interp_bilinear_down_ac", lambda x: F.interpolate(x, size=(3, 5), mode="bilinear", align_corners=True))
    fn(U, "interp_bilinear_to_1", lambda x: F.interpolate(x, size=(1, 3), mode="bilinear", align_corners=False))
    fn(U, "interp_bilinear_to_1_ac", lambda x: F.interpolate(x, size=(1, 3), mode="bilinear", align_corners=True))
    fn(U, "interp_bicubic_ac", lambda x: F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=True))
    fn(U, "interp_bicubic_size", lambda x: F.interpolate(x, size=(11, 5), mode="bicubic", align_corners=False))
    fn(U, "interp_linear_1d", lambda x: F.interpolate(x.flatten(2), scale_factor=2, mode="linear"))
    fn(U, "interp_linear_1d_ac", lambda x: F.interpolate(x.flatten(2), size=100, mode="linear", align_corners=True))
    fn(U, "interp_nearest_1d", lambda x: F.interpolate(x.flatten(2), size=100, mode="nearest"))
    fn(U, "interp_trilinear", lambda x: F.interpolate(x.unsqueeze(2), scale_factor=(1, 2, 2), mode="trilinear"))
    fn(U, "interp_nearest_3d", lambda x: F.interpolate(x.unsqueeze(2), scale_factor=(2, 2, 1), mode="nearest"))
    # --- multi-output and model patterns --------------------------------------------
    M = "pattern"
    fn(M, "two_outputs", lambda x: (x.mean((2, 3)), x * 2))
    fn(M, "dict_like_tuple", lambda x: (x.flatten(1), x.amax(1)))
    fn(M, "scalar_branches", lambda x: x * 0.5 + x * 0.25 - x / 3.0)
    fn(M, "residual", lambda x: x + F.relu(x))
    fn(M, "batch_shift_slice", lambda x: flow.cat([x[:1], x[:-1] * 2], 0))
    fn(M, "rsoftmax_resnest", lambda x: F.softmax(x.flatten(1)[:, :8].view(x.size(0), 1, 2, -1).transpose(1, 2),
                                                   dim=1).reshape(x.size(0), -1))
    add(M, "small_cnn_mean_head", lambda: _small_cnn())
    add(M, "vit_like_block", lambda: _vit_block(), shape=(3, 8, 8))
    add(M, "seg_head_upsample", lambda: _seg_head())
    add(M, "cls_token_param_expand", lambda: _cls_token())
    _detection_cases(add, fn)
    return C


def _detection_cases(add, fn):
    """topk, cumsum, eye, affine_grid, grid_sample: DETR, PointNet, spatial transformers."""
    import oneflow as flow
    import oneflow.nn.functional as F

    T = "detection"
    fn(T, "topk_flat", lambda x: x.flatten(1).topk(5, dim=1))                   # (values, indices)
    fn(T, "topk_c", lambda x: x.topk(2, dim=1))
    fn(T, "topk_smallest_h", lambda x: x.topk(3, dim=2, largest=False))
    fn(T, "topk_last_k1", lambda x: x.topk(1, dim=-1))
    fn(T, "topk_batch_k1", lambda x: x.topk(1, dim=0))
    fn(T, "topk_detr_postprocess", lambda x: _topk_boxes(x.flatten(2).transpose(1, 2).sigmoid(), 10))
    fn(T, "topk_unsorted", lambda x: x.topk(3, dim=1, sorted=False), refused="sorted=False", op="top_k")
    fn(T, "cumsum_c", lambda x: x.cumsum(1))
    fn(T, "cumsum_neg_dim", lambda x: x.cumsum(-1))
    fn(T, "cumsum_batch", lambda x: x.cumsum(0))
    fn(T, "cumsum_int", lambda x: (x > 0).to(flow.int64).cumsum(2))
    fn(T, "cumsum_detr_sine_embed", lambda x: _detr_sine(x[:, 0] > -0.5))
    add(T, "eye_pointnet_tnet", lambda: _tnet())
    fn(T, "eye_rect", lambda x: x[:, 0, :3, :5] + flow.eye(3, 5))
    fn(T, "eye_int", lambda x: (x[:, 0, :4, :4] > 0).to(flow.int64) + flow.eye(4, dtype=flow.int64))
    fn(T, "eye_repeat_batch", lambda x: x.flatten(1)[:, :16] + flow.eye(4).view(1, 16).repeat(x.shape[0], 1))
    add(T, "affine_grid", lambda: _stn(sample=None))
    add(T, "affine_grid_ac_rect", lambda: _stn(sample=None, align_corners=True), shape=(3, 6, 10))
    add(T, "affine_grid_3d", lambda: _affine_3d())
    G = dict(min_opset=16, op="grid_sample")
    add(T, "stn_bilinear_zeros", lambda: _stn(), **G)
    add(T, "stn_bilinear_border_ac", lambda: _stn(padding_mode="border", align_corners=True), shape=(3, 7, 9), **G)
    add(T, "stn_reflection", lambda: _stn(padding_mode="reflection"), **G)
    add(T, "stn_reflection_ac", lambda: _stn(padding_mode="reflection", align_corners=True), **G)
    add(T, "stn_nearest", lambda: _stn(mode="nearest"), **G)
    add(T, "stn_out_size", lambda: _stn(out_hw=(4, 6), align_corners=True), **G)
    add(T, "stn_nearest_border", lambda: _stn(mode="nearest", padding_mode="border"), **G)
    add(T, "stn_bicubic", lambda: _stn(mode="bicubic"), rtol=1e-3, **G)
    fn(T, "grid_sample_free_grid", lambda x: F.grid_sample(x, x[:, :2].permute(0, 2, 3, 1).tanh() * 1.2,
                                                           align_corners=False), **G)
    fn(T, "grid_sample_3d", lambda x: F.grid_sample(x.unsqueeze(2), x[:, :3].unsqueeze(1).permute(0, 1, 3, 4, 2)),
       min_opset=20, op="grid_sample")


def _topk_boxes(prob, k):
    """DETR's PostProcess: top k of (queries x classes) scores, then query and class of each."""
    values, idx = prob.flatten(1).topk(k, dim=1)
    return values, idx // prob.shape[2], idx % prob.shape[2]


def _detr_sine(mask, d=4, temperature=10000, scale=6.283185307179586):
    """DETR's PositionEmbeddingSine on a [N, H, W] bool mask (normalize=True)."""
    import oneflow as flow

    y = mask.cumsum(1, dtype=flow.float32)
    x = mask.cumsum(2, dtype=flow.float32)
    y = y / (y[:, -1:, :] + 1e-6) * scale
    x = x / (x[:, :, -1:] + 1e-6) * scale
    dim_t = temperature ** (2 * (flow.arange(d, dtype=flow.float32) // 2) / d)
    px, py = x[:, :, :, None] / dim_t, y[:, :, :, None] / dim_t
    px = flow.stack((px[:, :, :, 0::2].sin(), px[:, :, :, 1::2].cos()), dim=4).flatten(3)
    py = flow.stack((py[:, :, :, 0::2].sin(), py[:, :, :, 1::2].cos()), dim=4).flatten(3)
    return flow.cat((py, px), dim=3).permute(0, 3, 1, 2)


def _tnet():
    import oneflow as flow
    import oneflow.nn as nn

    class TNet(nn.Module):
        """PointNet's input transform: a 3x3 matrix (Linear + identity) applied to the points."""

        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 9)

        def forward(self, x):
            pts = x.flatten(2)                                                 # B, 3, 64
            iden = flow.eye(3).view(1, 9).repeat(pts.size(0), 1)
            trans = (self.fc(pts.amax(2)) + iden).view(-1, 3, 3)
            return flow.bmm(trans, pts)

    return TNet()


def _stn(sample="bilinear", mode="bilinear", padding_mode="zeros", align_corners=False, out_hw=None):
    """A spatial transformer: theta from a Linear on pooled features; the grid alone
    (``sample=None``) or the input sampled on it (at ``out_hw``, default the input's size)."""
    import oneflow.nn as nn
    import oneflow.nn.functional as F

    class STN(nn.Module):
        def __init__(self):
            super().__init__()
            self.loc = nn.Linear(3, 6)

        def forward(self, x):
            theta = self.loc(x.mean((2, 3))).view(-1, 2, 3)
            size = x.size() if out_hw is None else (x.size(0), x.size(1)) + tuple(out_hw)
            grid = F.affine_grid(theta, size, align_corners=align_corners)
            if sample is None:
                return grid
            return F.grid_sample(x, grid, mode=mode, padding_mode=padding_mode, align_corners=align_corners)

    return STN()


def _affine_3d():
    import oneflow.nn as nn
    import oneflow.nn.functional as F

    class Affine3d(nn.Module):
        def __init__(self):
            super().__init__()
            self.loc = nn.Linear(3, 12)

        def forward(self, x):
            theta = self.loc(x.mean((2, 3))).view(-1, 3, 4)
            return F.affine_grid(theta, [x.size(0), 3, 2, 4, 5], align_corners=False)

    return Affine3d()


def _se():
    import oneflow.nn as nn

    class SE(nn.Module):
        def __init__(self):
            super().__init__()
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc1, self.fc2 = nn.Conv2d(3, 2, 1), nn.Conv2d(2, 3, 1)

        def forward(self, x):
            return x * self.fc2(self.fc1(self.pool(x)).relu()).sigmoid()

    return SE()


def _small_cnn():
    import oneflow.nn as nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                          nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU())
            self.head = nn.Linear(8, 10)

        def forward(self, x):
            return self.head(self.features(x).mean((2, 3)))

    return Net().eval()


def _vit_block():
    import oneflow.nn as nn

    class Block(nn.Module):
        def __init__(self, d=16, heads=2):
            super().__init__()
            self.patch = nn.Conv2d(3, d, 2, 2)
            self.norm = nn.LayerNorm(d)
            self.qkv = nn.Linear(d, 3 * d)
            self.proj = nn.Linear(d, d)
            self.heads, self.d = heads, d
            self.head = nn.Linear(d, 10)

        def forward(self, x):
            t = self.patch(x).flatten(2).transpose(1, 2)          # B, N, d
            B, N, d = t.shape
            qkv = self.qkv(self.norm(t)).reshape(B, N, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
            q, k, v = qkv[0], qkv[1], qkv[2]
            a = (q @ k.transpose(-2, -1) * (d // self.heads) ** -0.5).softmax(-1)
            t = t + self.proj((a @ v).transpose(1, 2).reshape(B, N, d))
            return self.head(t.mean(1))

    return Block()


def _cls_token():
    import oneflow as flow
    import oneflow.nn as nn

    class Cls(nn.Module):
        """ViT's class token: a parameter expanded to the batch (must stay an Expand)."""

        def __init__(self):
            super().__init__()
            self.cls = nn.Parameter(flow.randn(1, 1, 64))

        def forward(self, x):
            t = x.flatten(2)                                   # B, 3, 64
            return flow.cat([self.cls.expand(x.shape[0], -1, -1), t], 1)

    return Cls()


def _seg_head():
    import oneflow.nn as nn
    import oneflow.nn.functional as F

    class Seg(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = nn.Conv2d(3, 4, 3, stride=2, padding=1)
            self.cls = nn.Conv2d(4, 5, 1)

        def forward(self, x):
            y = self.cls(F.relu(self.enc(x)))
            return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)

    return Seg()
