"""TensorRT engines by layer (``ofconvert.engine`` is the public entry):

* ``plan``: profile, ONNX inspection, build strategy by TensorRT version, options;
* ``caches``: calibration cache re-targeted to the installed TensorRT, timing-cache keying;
* ``sidecar``: the engine's JSON sidecar and the compatibility check;
* ``backend``: the only module calling TensorRT, through Polygraphy (imported lazily).

See docs/tensorrt.md.
"""
