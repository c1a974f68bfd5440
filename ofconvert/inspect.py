"""``ofconvert inspect FILE``: what an ofconvert artefact is, read from its content.

* ONNX: inputs/outputs (shape, dtype), precision (``ofconvert.artifacts``, from the
  graph, never the name), preprocessing (``ofconvert.preprocess`` metadata),
  provenance (model, opset, producer, ofconvert version of the export report, sha256).
* TensorRT calibration cache: header (TensorRT version, calibrator), tensor count,
  scale range, and its ``.json`` sidecar (method, images...) when present.
* TensorRT engine: its ofconvert sidecar (TensorRT version, GPU, precision, strategy,
  profile, ONNX sha256, preprocessing). The engine itself is not deserialised:
  no TensorRT needed.

``inspect_file(path) -> dict`` and ``format_inspection(info) -> str``; a missing,
unreadable or unknown file raises an OfconvertError subclass with one line.
"""
import json
import os

from .errors import EngineCompatibilityError, OfconvertError

_ONNX_TYPES = {1: "float32", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 9: "bool", 10: "float16", 11: "float64",
               16: "bfloat16"}


def inspect_file(path) -> dict:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise OfconvertError(f"file not found: {path}" if not os.path.isdir(path)
                             else f"{path} is a folder, not a file")
    from . import fileio
    from .trt.sidecar import SIDECAR_FORMAT

    sc_path = path + ".json"
    if os.path.isfile(sc_path) and _json_format(sc_path) == SIDECAR_FORMAT:
        return _engine(path)
    if path.endswith((".engine", ".plan", ".trt")):
        raise EngineCompatibilityError(f"{path} has no ofconvert sidecar {sc_path}: cannot tell what built it "
                                       "(TensorRT engines are opaque); rebuild it with ofconvert --to trt")
    with open(path, "rb") as f:
        head = f.read(4)
    if head == b"TRT-":
        return _calibration_cache(path)
    info = _onnx(path)
    info["sha256"] = fileio.sha256_file(path)
    return info


def _json_format(path):
    try:
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
    except (OSError, ValueError):
        return None
    return d.get("format") if isinstance(d, dict) else None


def _engine(path):
    from .trt.sidecar import read_sidecar

    sc = read_sidecar(path)   # refuses a sidecar describing another file (sha256)
    return {"kind": "engine", "path": path, "precision": sc.get("precision"),
            "tensorrt_version": sc.get("tensorrt_version"), "gpu": sc.get("gpu"), "build": sc.get("build"),
            "profile": sc.get("profile"), "io": sc.get("io"), "onnx": sc.get("onnx"),
            "calibration_cache": sc.get("calibration_cache"), "model": sc.get("model"),
            "preprocess": sc.get("preprocess"), "ofconvert_version": sc.get("ofconvert_version"),
            "created": sc.get("created"), "sha256": (sc.get("engine") or {}).get("sha256"),
            "bytes": (sc.get("engine") or {}).get("bytes")}


def _calibration_cache(path):
    from .calibration.cache import read_cache_with_header, sidecar_path_for

    header, scales = read_cache_with_header(path)
    values = list(scales.values())
    sidecar = None
    sp = sidecar_path_for(path)
    if os.path.isfile(sp):
        try:
            with open(sp, encoding="utf-8") as f:
                sidecar = json.load(f)
        except (OSError, ValueError) as e:
            raise OfconvertError(f"unreadable calibration sidecar {sp}: {e}") from None
    from . import fileio

    return {"kind": "calibration_cache", "path": path, "header_version": header["version"],
            "calibrator": header["calibrator"], "tensors": len(scales),
            "scale_min": min(values) if values else None, "scale_max": max(values) if values else None,
            "sidecar": sidecar, "sha256": fileio.sha256_file(path)}


def _tensor(v):
    tt = v.type.tensor_type
    shape = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tt.shape.dim]
    return {"name": v.name, "dtype": _ONNX_TYPES.get(tt.elem_type, f"onnx type {tt.elem_type}"), "shape": shape}


def _onnx(path):
    from .artifacts import detect_precision
    from .config import METADATA_KEY
    from .onnx_io import load_onnx

    try:
        model = load_onnx(path, external_data=False)
    except OfconvertError as e:  # DecodeError and friends
        raise OfconvertError(f"{path} is not an ONNX model, a TensorRT calibration cache or an ofconvert engine "
                             f"({str(e).rsplit(': ', 1)[-1]})") from None
    g = model.graph
    if not g.node and not g.input:
        raise OfconvertError(f"{path} is not an ONNX model, a TensorRT calibration cache or an ofconvert engine")
    meta = {p.key: p.value for p in model.metadata_props}
    inits = {t.name for t in g.initializer}
    preprocess = None
    if meta.get(METADATA_KEY):
        try:
            preprocess = json.loads(meta[METADATA_KEY])
        except ValueError:
            preprocess = None
    report = {}
    if os.path.isfile(path + ".json"):
        try:
            with open(path + ".json", encoding="utf-8") as f:
                report = json.load(f)
        except (OSError, ValueError):
            report = {}
    report = report if isinstance(report, dict) else {}
    return {"kind": "onnx", "path": path, "precision": detect_precision(path),
            "inputs": [_tensor(v) for v in g.input if v.name not in inits],
            "outputs": [_tensor(v) for v in g.output],
            "preprocess": preprocess, "model": meta.get("ofconvert.model"),
            "opset": {(o.domain or "ai.onnx"): o.version for o in model.opset_import},
            "producer": " ".join(x for x in (model.producer_name, model.producer_version) if x) or None,
            "ofconvert_version": report.get("ofconvert_version"),
            "metadata": meta, "bytes": os.path.getsize(path), "budget": _budget(meta)}


def _budget(meta):
    """The ``ofconvert.budget`` metadata of a ``--max-flips`` model (budget/report.py
    ``summary``), or None."""
    from .budget.report import BUDGET_KEY

    if BUDGET_KEY not in meta:
        return None
    try:
        b = json.loads(meta[BUDGET_KEY])
    except ValueError:
        return {"unreadable": meta[BUDGET_KEY][:80]}
    return b if isinstance(b, dict) else {"unreadable": str(b)[:80]}


def _budget_lines(b):
    if "unreadable" in b:
        return [f"  flip budget: unreadable ofconvert.budget metadata ({b['unreadable']!r})"]
    layers = b.get("float_layers") or []
    where = (f", first {b['float_prefix']} + last {b['float_suffix']}" if b.get("float_prefix") is not None else "")
    lines = [f"  flip budget: --max-flips {b.get('max_flips')} = {b.get('budget_flips')} of {b.get('check_images')} "
             f"check images ({b.get('check_source') or 'check set'}); measured {b.get('flips')} flips, "
             f"expected {b.get('expected_flips')} (the budget holds the expected flips)",
             f"  kept in float: {len(layers)} layer(s){where}" + (": " + ", ".join(layers) if layers else "")]
    if b.get("speedup"):
        lines.append(f"  speed when searched: {b.get('img_s')} img/s = {b['speedup']:.2f}x fp32 ({b.get('fp32_img_s')} "
                     "img/s, ONNX Runtime CPU, timed interleaved)")
    cache = b.get("calibration_cache") or {}
    if b.get("calibration") or cache:
        src = (f"cache {cache['file']}" + (" (beside the model)" if os.sep not in cache["file"] else "")
               + f", sha256 {cache.get('sha256')}" if cache.get("file") else
               f"no cache file found holding its scales, sha256 {cache.get('sha256')} "
               "(of the cache text ofconvert writes for them)" if cache else "cache unknown")
        lines.append(f"  calibration: {cache.get('method') or b.get('calibration')}"
                     + (", bias-corrected" if b.get("bias_corrected") else "") + f", {src}")
    return lines


def _shape(s):
    return "x".join(str(d) for d in s)


def format_inspection(info: dict) -> str:
    """Human-readable lines for ``inspect_file``'s dict."""
    kind = info.get("kind")
    lines = [f"{info.get('path')}"]
    add = lines.append
    if kind == "onnx":
        add(f"  ONNX model, precision {info['precision']}, {info['bytes']} bytes, sha256 {info['sha256']}")
        for role in ("inputs", "outputs"):
            for t in info[role]:
                add(f"  {role[:-1]:6s} {t['name']}: {t['dtype']} [{_shape(t['shape'])}]")
        add(f"  model: {info.get('model') or 'unknown (no ofconvert.model metadata)'}")
        add("  opset: " + ", ".join(f"{d} {v}" for d, v in info["opset"].items()))
        if info.get("producer"):
            add(f"  producer: {info['producer']}")
        if info.get("ofconvert_version"):
            add(f"  ofconvert: {info['ofconvert_version']}")
        if info.get("budget"):
            lines.extend(_budget_lines(info["budget"]))
    elif kind == "calibration_cache":
        add(f"  TensorRT calibration cache: header TRT-{info['header_version']}-{info['calibrator']}, "
            f"{info['tensors']} tensors, scales {info['scale_min']:.6g} .. {info['scale_max']:.6g}"
            if info["tensors"] else f"  TensorRT calibration cache: header TRT-{info['header_version']}-"
                                    f"{info['calibrator']}, no tensors")
        sc = info.get("sidecar")
        if sc:
            parts = [f"{k} {sc[k]}" for k in ("method", "num_images", "num_listed") if k in sc]
            add("  sidecar: " + (", ".join(parts) if parts else f"{len(sc)} fields"))
        else:
            add("  sidecar: none (cannot tell which model and images made it)")
    elif kind == "engine":
        gpu = info.get("gpu") or {}
        build = info.get("build") or {}
        add(f"  TensorRT engine, precision {info['precision']}, TensorRT {info['tensorrt_version']}, "
            f"GPU {gpu.get('name')} (compute capability {gpu.get('compute_capability')})")
        typed = "strongly typed" if build.get("strongly_typed") else \
            f"weakly typed, flags {'+'.join(build.get('flags') or []) or 'none'}"
        add(f"  build: {typed}" + (", calibrator" if build.get("calibrator") else "")
            + (f", workspace {build['workspace_mb']} MiB" if build.get("workspace_mb") else ""))
        prof = info.get("profile") or {}
        if prof:
            add(f"  profile {prof.get('input')}: min {_shape(prof['min'])}, opt {_shape(prof['opt'])}, "
                f"max {_shape(prof['max'])}")
        onnx_ = info.get("onnx") or {}
        add(f"  from ONNX {onnx_.get('file')} ({onnx_.get('kind')}), sha256 {onnx_.get('sha256')}")
        add(f"  model: {info.get('model') or 'unknown'}")
    else:
        raise OfconvertError(f"not an inspection result (kind {kind!r})")
    pre = info.get("preprocess")
    if kind != "calibration_cache":
        add("  preprocessing: " + (", ".join(f"{k}={v}" for k, v in pre.items()) if isinstance(pre, dict)
                                   else "unknown (no ofconvert.preprocess metadata)"))
    return "\n".join(lines)
