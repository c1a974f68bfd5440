"""int8 Q/DQ: our own graph rewrite of an fp32 model from calibration scales, for
TensorRT (``target="trt"``) or ONNX Runtime CPU (``target="cpu"``); see the
package docstring and docs/precision.md."""
import numpy as np

from ..errors import OfconvertError
from ..graph import GraphIndex, fold_batchnorm, fold_zero_pads, topological_sort
from ..onnx_fix import set_metadata
from .bias import INT32_MAX, int32_safe_scales, weight_error_shift
from .common import (
    _MIN_SCALE,
    _NONNEG_PASSTHROUGH,
    _WEIGHT_OPS,
    BIAS_CORRECTED_KEY,
    FLOAT_NODES_KEY,
    INT8_MAX,
    MIN_OPSET,
    PRECISION_KEY,
    TARGETS,
    _load,
    _onnx_opset,
    _save,
    node_key,
    qdq_activations,
    scale_sources,
)


def quantize_qdq(src, dst, scales, target="trt", exclude=(), means=None):
    """Write a Q/DQ int8 model of the fp32 ``src`` to ``dst`` using the activation
    ``scales`` ({tensor: scale}, dynamic range = scale*127, e.g.
    ``calibrate(...).scales``). Raises OfconvertError when a tensor that needs a
    scale has none (a cache made for another model). ``exclude``: node names
    (:func:`node_key`) kept in float: no Q/DQ on their inputs, float weights.
    ``means``: {tensor: per-channel mean} (``calibrate(...).means``): each
    quantized layer's bias is corrected for its weight-rounding error
    (:mod:`.bias`); None: no correction."""
    return _save(quantize_model(_load(src), scales, target, exclude, means=means), dst)


def quantize_model(model, scales, target="trt", exclude=(), weight_bits=8, fold_pads=True, means=None):
    """:func:`quantize_qdq` on a ModelProto (copied, never modified) -> ModelProto.
    ``weight_bits`` < 8 limits the int8 weights to +-(2^(bits-1) - 1) (7: ORT's
    ``reduce_range``, against the u8s8 ``vpmaddubsw`` saturation of AVX2 without
    VNNI; on efficientnet_lite0 it costs accuracy instead, docs/budget.md).
    ``fold_pads``: zero Pads feeding only Convs become the Convs' ``pads``
    (:func:`ofconvert.graph.fold_zero_pads`; the Pad's input takes the Pad output's range)."""
    if not 2 <= int(weight_bits) <= 8:
        raise OfconvertError(f"weight_bits must be in 2..8, got {weight_bits}")
    import onnx

    if target not in TARGETS:
        raise OfconvertError(f"unknown quantization target {target!r}; known: {', '.join(TARGETS)}")
    m = onnx.ModelProto()
    m.CopyFrom(model)
    return _QDQRewriter(m, dict(scales), target, exclude, weight_bits, fold_pads, means).run()


class _QDQRewriter:
    def __init__(self, model, scales, target, exclude=(), weight_bits=8, fold_pads=True, means=None):
        self.model, self.scales, self.target, self.fold_pads = model, scales, target, fold_pads
        self.means = dict(means or {})
        self.corrected = 0
        self.wmax = float(2 ** (int(weight_bits) - 1) - 1)
        self.exclude = frozenset(exclude or ())
        self.g = model.graph
        self._dq_of = {}   # fp32 tensor -> its DequantizeLinear output

    # -- helpers -------------------------------------------------------------
    def _index(self):
        idx = GraphIndex(self.g)
        self.inits, self.producer, self.consumers = idx.initializers, idx.producer, idx.consumers
        self.graph_outputs = idx.outputs

    def _array(self, name):
        from onnx import numpy_helper

        return numpy_helper.to_array(self.inits[name]) if name in self.inits else None

    def _add_init(self, name, array):
        from onnx import numpy_helper

        self.g.initializer.append(numpy_helper.from_array(np.asarray(array), name))
        self.inits[name] = self.g.initializer[-1]
        return name

    def _unique(self, base):
        name, k = base, 1
        while name in self._names:
            name, k = f"{base}_{k}", k + 1
        self._names.add(name)
        return name

    def run(self):
        import onnx

        if _onnx_opset(self.model) < MIN_OPSET:
            try:
                self.model = onnx.version_converter.convert_version(self.model, MIN_OPSET)
            except Exception as e:
                raise OfconvertError(f"int8 Q/DQ needs opset >= {MIN_OPSET} and the model's opset "
                                     f"{_onnx_opset(self.model)} cannot be converted: {e}") from None
            self.g = self.model.graph
        fold_batchnorm(self.model)
        if self.fold_pads:   # a folded Pad's input reads its output's range when the cache has only that
            for t, u in fold_zero_pads(self.model).items():
                if t not in self.scales and u in self.scales:
                    self.scales[t] = self.scales[u]
                if t not in self.means and u in self.means:
                    self.means[t] = self.means[u]
        self._names = {n for node in self.g.node for n in list(node.input) + list(node.output)}
        self._names |= {t.name for t in self.g.initializer} | {n.name for n in self.g.node}
        self._index()
        acts = self._activations_to_quantize()
        scale_of = self._activation_scales(acts)
        new_nodes = []
        for t in acts:
            new_nodes.extend(self._qdq_activation(t, scale_of[t]))
        unfused = self._unfused_convs(set(acts)) if self.target == "cpu" else set()
        for node in list(self.g.node):
            if node.op_type in _WEIGHT_OPS and node_key(node) not in self.exclude and node_key(node) not in unfused:
                new_nodes.extend(self._quantize_weights(node, scale_of))
        if self.target == "cpu":
            new_nodes = self._pads_on_uint8(new_nodes, scale_of)
        self._insert_nodes(new_nodes)
        self._drop_unused_initializers()
        meta = {PRECISION_KEY: f"int8-qdq-{self.target}"}
        if self.corrected:
            meta[BIAS_CORRECTED_KEY] = str(self.corrected)
        if self.exclude:
            meta[FLOAT_NODES_KEY] = ",".join(sorted(self.exclude))
        set_metadata(self.model, meta)
        return self.model

    def _unfused_convs(self, acts):
        """CPU: Convs whose output (through Relu/Clip) gets no Q/DQ pair, because the
        layer after them is kept in float. ONNX Runtime cannot make them QLinearConv,
        and a float Conv fed by DequantizeLinear weights loses its packed-weight kernels
        (several times slower than fp32): they keep float weights instead."""
        out = set()
        for n in self.g.node:
            if n.op_type != "Conv":
                continue
            t = n.output[0]
            while t not in acts:
                cs = self.consumers.get(t, [])
                if len(cs) != 1 or cs[0].op_type not in ("Relu", "Clip"):
                    break
                t = cs[0].output[0]
            if t not in acts:
                out.add(node_key(n))
        return out

    def _activations_to_quantize(self):
        acts = qdq_activations(self.model, self.target, self.exclude)
        missing = [t for t in acts if t not in self.scales]
        if missing:
            raise OfconvertError(f"the calibration scales do not cover this model: {len(missing)} tensor(s) "
                                 f"without a scale, e.g. {missing[0]!r} (cache made for another model?)")
        return acts

    def _activation_scales(self, acts):
        """(scale, zero point, dtype) per tensor for this target."""
        import onnx

        nonneg = self._nonnegative_tensors()
        out = {}
        sources = scale_sources(self.model, acts)
        for t in acts:
            # MaxPool/Pad/Reshape/...: the input's scale, so the Q/DQ pairs around them cancel out
            src = sources[t] if sources[t] in self.scales else t
            s = max(float(self.scales[src]), _MIN_SCALE)
            if self.target == "trt":
                out[t] = (s, 0, onnx.TensorProto.INT8)
            elif t in nonneg:
                out[t] = (s * INT8_MAX / 255.0, 0, onnx.TensorProto.UINT8)
            else:
                out[t] = (s, 128, onnx.TensorProto.UINT8)
        return out

    def _nonnegative_tensors(self):
        nonneg = set()
        for n in self.g.node:  # topological order
            if n.op_type in ("Relu", "Sigmoid"):
                nonneg.add(n.output[0])
            elif n.op_type == "Clip":
                lo = None
                if len(n.input) > 1 and n.input[1]:
                    a = self._array(n.input[1])
                    if a is None and n.input[1] in self.producer and self.producer[n.input[1]].op_type == "Constant":
                        from onnx import numpy_helper

                        a = numpy_helper.to_array(self.producer[n.input[1]].attribute[0].t)
                    lo = None if a is None else float(np.asarray(a).ravel()[0])
                else:
                    lo = next((a.f for a in n.attribute if a.name == "min"), None)
                if lo is not None and lo >= 0:
                    nonneg.add(n.output[0])
            elif n.op_type in _NONNEG_PASSTHROUGH and n.input[0] in nonneg:
                nonneg.add(n.output[0])
        return nonneg

    def _qdq_activation(self, t, qparams):
        import onnx
        from onnx import helper

        scale, zp, dtype = qparams
        base = t.replace(":", "_")
        sname = self._add_init(self._unique(base + "_scale"), np.float32(scale))
        zdtype = np.uint8 if dtype == onnx.TensorProto.UINT8 else np.int8
        zname = self._add_init(self._unique(base + "_zero_point"), zdtype(zp))
        q_out, dq_out = self._unique(base + "_quantized"), self._unique(base + "_dequantized")
        q = helper.make_node("QuantizeLinear", [t, sname, zname], [q_out], name=self._unique(base + "_QuantizeLinear"))
        dq = helper.make_node("DequantizeLinear", [q_out, sname, zname], [dq_out],
                              name=self._unique(base + "_DequantizeLinear"))
        for c in self.consumers.get(t, []):
            if node_key(c) in self.exclude:   # kept in float: reads the float tensor
                continue
            for k, i in enumerate(c.input):
                if i == t:
                    c.input[k] = dq_out
        self._dq_of[t] = dq_out
        return [q, dq]

    def _quantize_weights(self, node, scale_of):
        """DequantizeLinear of the int8 weight (per output channel) in front of
        ``node``; its bias corrected for the weights' rounding (calibration means)
        and, on the CPU target, int32 (DQ nodes returned, inputs rewired)."""
        wname = node.input[1] if len(node.input) > 1 else ""
        w = self._array(wname)
        axis = None if w is None or w.dtype != np.float32 else _weight_axis(node, w)
        if axis is None:
            return []
        xin, b = self._data_input(node), self._bias(node, w.shape[axis])
        ws = np.maximum(np.abs(w).max(axis=tuple(i for i in range(w.ndim) if i != axis)).astype(np.float64)
                        / self.wmax, _MIN_SCALE)
        if self.target == "cpu" and b is not None and xin in scale_of:
            ws = int32_safe_scales(b, scale_of[xin][0], ws)
        shape = [1] * w.ndim
        shape[axis] = -1
        wq = np.clip(np.round(w / ws.reshape(shape)), -self.wmax, self.wmax).astype(np.int8)
        has_bias = len(node.input) > 2 and bool(node.input[2])
        mean = self._mean_of(xin) if (not has_bias or b is not None) and self._correctable(node) else None
        if mean is not None:
            b = self._correct_bias(node, w, wq * ws.reshape(shape), axis, mean, b)
        nodes = [self._dequantize(node, 1, wq, ws.astype(np.float32), axis)]
        # int32 bias (ONNX Runtime CPU fuses DQ(x), DQ(w), DQ(bias) -> QLinearConv); TensorRT keeps float biases
        if self.target == "cpu" and b is not None and xin in scale_of:
            bs = (scale_of[xin][0] * ws).astype(np.float32)
            bq = np.clip(np.round(b.astype(np.float64) / bs), -INT32_MAX, INT32_MAX).astype(np.int32)
            nodes.append(self._dequantize(node, 2, bq, bs, 0))
        return nodes

    def _bias(self, node, n_out):
        """The constant 1-D bias of a Conv / Gemm with ``n_out`` output channels (None
        when absent or not one per channel)."""
        b = self._array(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        return b if b is not None and b.ndim == 1 and len(b) == n_out else None

    def _correct_bias(self, node, w, w_rounded, axis, mean, b):
        """The bias minus the output shift the weights' rounding causes on inputs of
        ``mean``; written as a new initializer that ``node`` reads (None: no shift)."""
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        shift = weight_error_shift(node.op_type, w, w_rounded, axis, mean, group)
        if shift is None:
            return b
        b = (np.zeros(w.shape[axis]) if b is None else b.astype(np.float64)) - shift
        name = self._add_init(self._unique(node.input[1].replace(":", "_") + "_bias_corrected"), b.astype(np.float32))
        while len(node.input) <= 2:
            node.input.append("")
        node.input[2] = name
        self.corrected += 1
        return b

    def _dequantize(self, node, k, values, scale, axis):
        """``node.input[k]`` replaced by DequantizeLinear(``values``, ``scale``, zero) -> that DQ node."""
        from onnx import helper

        base = node.input[k].replace(":", "_")
        qn = self._add_init(self._unique(base + "_quantized"), values)
        sn = self._add_init(self._unique(base + "_scale"), scale)
        zn = self._add_init(self._unique(base + "_zero_point"), np.zeros(len(scale), values.dtype))
        out = self._unique(base + "_dequantized")
        node.input[k] = out
        return helper.make_node("DequantizeLinear", [qn, sn, zn], [out],
                                name=self._unique(base + "_DequantizeLinear"), axis=axis)

    @staticmethod
    def _correctable(node):
        """Conv, or Gemm computing x @ W (+ 1.0 * C): its bias is an output-channel offset."""
        if node.op_type == "Conv":
            return True
        attrs = {a.name: a for a in node.attribute}
        return (node.op_type == "Gemm" and not (attrs["transA"].i if "transA" in attrs else 0)
                and (attrs["beta"].f if "beta" in attrs else 1.0) == 1.0)

    def _mean_of(self, t):
        """The per-channel mean of ``t``, or of the tensor it reshapes (Flatten after pooling)."""
        while t not in self.means and t in self.producer and \
                self.producer[t].op_type in ("Flatten", "Reshape", "Squeeze", "Unsqueeze"):
            t = self.producer[t].input[0]
        return self.means.get(t)

    def _pads_on_uint8(self, new_nodes, scale_of):
        """Q -> DQ -> Pad -> Q -> DQ  becomes  Q -> Pad(uint8, pad value = zero point) -> DQ
        when both sides share one scale: ONNX Runtime keeps no float Pad between two
        QLinearConv (it has a uint8 Pad kernel but no rule dropping Q/DQ around Pad)."""
        by_output = {o: n for n in new_nodes for o in n.output}
        dq_of = self._dq_of
        for pad in self.g.node:
            if pad.op_type != "Pad" or len(pad.input) < 2:
                continue
            t = next((k for k, v in dq_of.items() if v == pad.input[0]), None)
            u = pad.output[0]
            if t is None or u not in dq_of or u in self.graph_outputs or scale_of[t] != scale_of[u]:
                continue
            if next((a.s for a in pad.attribute if a.name == "mode"), b"constant") != b"constant":
                continue
            dq_t, dq_u = by_output[dq_of[t]], by_output[dq_of[u]]
            q_u = by_output[dq_u.input[0]]
            pad.input[0] = dq_t.input[0]                    # the uint8 tensor
            while len(pad.input) < 3:
                pad.input.append("")
            pad.input[2] = dq_t.input[2]                    # pad with the zero point (= 0.0)
            pad.output[0] = q_u.output[0]                   # feeds u's DequantizeLinear directly
            new_nodes = [n for n in new_nodes if n is not q_u]
            still_used = any(dq_of[t] in n.input for n in list(self.g.node) + new_nodes)
            if not still_used:
                new_nodes = [n for n in new_nodes if n is not dq_t]
        return new_nodes

    def _data_input(self, node):
        """The fp32 tensor feeding ``node``'s input 0 (before its Q/DQ pair)."""
        name = node.input[0]
        return next((t for t, dq in self._dq_of.items() if dq == name), name)

    def _insert_nodes(self, new_nodes):
        self.g.node.extend(new_nodes)
        topological_sort(self.g)

    def _drop_unused_initializers(self):
        used = {i for n in self.g.node for i in n.input} | {o.name for o in self.g.output}
        keep = [t for t in self.g.initializer if t.name in used]
        del self.g.initializer[:]
        self.g.initializer.extend(keep)
        ginit = {t.name for t in keep}
        inputs = [i for i in self.g.input if i.name not in self.inits or i.name in ginit]
        if len(inputs) != len(self.g.input):
            del self.g.input[:]
            self.g.input.extend(inputs)


def _weight_axis(node, w):
    """The output-channel axis of a Conv / Gemm / MatMul weight (None: not a 2-D
    Gemm / MatMul weight)."""
    if node.op_type == "Conv":
        return 0
    if w.ndim != 2:
        return None
    if node.op_type == "Gemm":
        return 0 if next((a.i for a in node.attribute if a.name == "transB"), 0) else 1
    return 1   # MatMul: [K, N]
