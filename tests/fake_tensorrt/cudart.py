"""The CUDA seam of the stand-in: a fake libcudart behind Polygraphy's CUDA wrapper.

Why here: TrtRunner gets its stream, device buffers and copies from
``polygraphy.cuda`` (``Stream``, ``DeviceArray``, ``wrapper().memcpy``), which calls
libcudart through ctypes (``polygraphy/cuda/cuda.py``: ``Cuda.handle = ctypes.CDLL(
"libcudart.so")``), and ofconvert asks the same handle for the GPU's name and compute
capability. Replacing only ``handle`` (the C library) keeps every line of
Polygraphy's Python (``Cuda.malloc/free/memcpy/create_stream``, ``DeviceArray``,
``Stream``) running: "device" memory is host memory here, so copies are memmoves and
a test can read what TrtRunner copied. The functions and their signatures are
those of the CUDA Runtime API (docs.nvidia.com/cuda/cuda-runtime-api, modules
Device Management, Memory Management, Stream Management).
"""
import contextlib
import ctypes


def _ref(arg):
    """The object behind ctypes.byref(...)."""
    return arg._obj


def _int(arg):
    return arg.value if hasattr(arg, "value") else int(arg)


class FakeCudart:
    cudaSuccess, cudaErrorInvalidDevice = 0, 101

    def __init__(self, gpu_name, compute_capability, devices=1):
        self.gpu_name = gpu_name
        self.cc = compute_capability
        self.devices = devices
        self.allocations = {}   # address -> ctypes buffer (kept alive)
        self.streams = set()
        self.calls = []
        self._next_stream = 0x5000

    def _log(self, name, *args):
        self.calls.append((name,) + args)

    # Device Management
    def cudaSetDevice(self, device):
        self._log("cudaSetDevice", device)
        return self.cudaSuccess if 0 <= device < self.devices else self.cudaErrorInvalidDevice

    def cudaDeviceGetAttribute(self, value, attr, device):
        if not 0 <= device < self.devices:
            return self.cudaErrorInvalidDevice
        _ref(value).value = {75: self.cc[0], 76: self.cc[1]}[attr]
        return self.cudaSuccess

    def cudaGetDeviceProperties(self, props, device):
        if not 0 <= device < self.devices:
            return self.cudaErrorInvalidDevice
        name = self.gpu_name.encode()[:255] + b"\0"
        ctypes.memmove(props, name, len(name))
        return self.cudaSuccess

    # Memory Management
    def cudaMalloc(self, ptr, nbytes):
        buf = ctypes.create_string_buffer(max(_int(nbytes), 1))
        addr = ctypes.addressof(buf)
        self.allocations[addr] = buf
        _ref(ptr).value = addr
        self._log("cudaMalloc", _int(nbytes))
        return self.cudaSuccess

    def cudaFree(self, ptr):
        addr = _int(ptr)
        if addr and self.allocations.pop(addr, None) is None:
            return 1  # cudaErrorInvalidValue: not ours
        return self.cudaSuccess

    def cudaMemcpy(self, dst, src, nbytes, kind):
        ctypes.memmove(_int(dst), _int(src), _int(nbytes))
        self._log("cudaMemcpy", _int(nbytes), _int(kind))
        return self.cudaSuccess

    def cudaMemcpyAsync(self, dst, src, nbytes, kind, stream):
        if _int(stream) not in self.streams:
            return 400  # cudaErrorInvalidResourceHandle
        ctypes.memmove(_int(dst), _int(src), _int(nbytes))
        self._log("cudaMemcpyAsync", _int(nbytes), _int(kind))
        return self.cudaSuccess

    # Stream Management
    def cudaStreamCreate(self, ptr):
        self._next_stream += 0x10
        self.streams.add(self._next_stream)
        _ref(ptr).value = self._next_stream
        return self.cudaSuccess

    def cudaStreamSynchronize(self, stream):
        return self.cudaSuccess if _int(stream) in self.streams else 400

    def cudaStreamDestroy(self, stream):
        self.streams.discard(_int(stream))
        return self.cudaSuccess


@contextlib.contextmanager
def installed(gpu_name="NVIDIA H200", compute_capability=(9, 0)):
    """Polygraphy's global CUDA wrapper with the fake libcudart as its handle."""
    from polygraphy.cuda import cuda

    saved = cuda.G_CUDA
    wrapper = cuda.Cuda.__new__(cuda.Cuda)   # skips the search for libcudart.so
    wrapper.handle = lib = FakeCudart(gpu_name, compute_capability)
    cuda.G_CUDA = wrapper
    try:
        yield lib
    finally:
        cuda.G_CUDA = saved
