"""Throughput benchmark: models x backends x precisions x batch sizes (docs/bench.md).

Protocol (the original OneFlow/TensorRT tables): input 224x224 (299x299 for
inception_v3), ``warmup`` untimed batches, then ``iters`` timed batches; each
batch is timed on its own and synchronised, so throughput = batch / mean batch
latency and p50/p90/p99 are percentiles of the per-batch latencies; with
``streams`` K > 1, K sessions run concurrently and img/s is their aggregate.

Each (model, backend, precision, settings) runs in its own process (the one
worker protocol of ``ofconvert.isolation``): OneFlow loaded in the same process
slows ONNX Runtime 2-3x, and one model at a time bounds memory. A backend that
cannot run gives ``n/a`` rows with the reason.

Modules: ``options`` (BenchOptions, BenchResult), ``driver`` (plan, run:
``benchmark``), ``worker`` (timing, streams), ``report`` (markdown, CSV, PNG),
``cli`` (``ofconvert bench``). Heavy packages load lazily.
"""
from ..lazy import lazy_getattr

# public name -> module (loaded on first use: `ofconvert bench --help` loads no numpy)
_LAZY = {"environment": "..report", "OrtCudaSettings": "..runners.ort_settings", "PRESETS": "..runners.ort_settings",
         "benchmark": ".driver", "BenchOptions": ".options", "BenchResult": ".options", "fmt": ".report",
         "markdown": ".report", "to_csv": ".report", "write_reports": ".report", "main": ".cli"}
__all__ = sorted(_LAZY)


__getattr__ = lazy_getattr(__name__, _LAZY, globals())
