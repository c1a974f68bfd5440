"""Every command documented in README.md's and docs/*.md's fenced code blocks is
executed here (a short variant where the documented one is heavy), or skipped
with the reason when it needs a GPU / TensorRT (or is the setup / test run
itself). A documented command without an entry in COMMANDS fails, and so does an
entry whose command is no longer documented: the docs cannot rot.

All runs share one working folder (exports made by one command are reused by the
next, as a user's would be); models are small (efficientnet_lite0,
flowvision:mobilenet_v3_small), images few."""
import glob
import os
import re
import shlex
import subprocess
import sys

import pytest
from conftest import ROOT, needs_oneflow

DOCS = ["README.md"] + sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "*.md")))
_STARTS = ("ofconvert ", "python ", ".venv/bin/python ", "bash ", "pip ", "cp ", "export ", "OFCONVERT_DATASETS=")
GPU = "needs an NVIDIA GPU"
TRT = "needs TensorRT and an NVIDIA GPU (tests/test_engine.py -m tensorrt on the GPU machine)"
LITE = "--no-validate"   # validation is tests/test_export.py's job; here: the command line works

# documented command (comments and line continuations removed) -> the command run here, or ("skip", reason).
# {datasets}: $OFCONVERT_DATASETS; the working folder is a shared temporary one.
COMMANDS = {
    "bash scripts/setup.sh": ("skip", "creates the .venv this suite runs in (downloads ~2 GB)"),
    ".venv/bin/python -m pytest": ("skip", "the test suite itself"),
    "ofconvert list": "ofconvert list",
    "ofconvert efficientnet_lite0 --to onnx": f"ofconvert efficientnet_lite0 --to onnx {LITE}",
    "ofconvert resnet50 --to onnx -o resnet50.onnx":
        f"ofconvert efficientnet_lite0 --to onnx -o efficientnet_lite0.onnx {LITE}",
    "ofconvert flowvision:mobilenet_v3_small --to onnx": f"ofconvert flowvision:mobilenet_v3_small --to onnx {LITE}",
    "ofconvert resnet50 --to onnx --fp16": f"ofconvert efficientnet_lite0 --to onnx --fp16 {LITE}",
    "ofconvert calib-set --from ../shared/datasets/imagenet-sample-1000 --per-class 1 -o calib/imagenet1k":
        "ofconvert calib-set --from {datasets}/imagenet-sample-1000 --per-class 1 -o calib/imagenet1k",
    "ofconvert efficientnet_lite0 --to onnx --int8 --calib calib/imagenet1k":
        f"ofconvert efficientnet_lite0 --to onnx --int8 --calib calib/imagenet1k --calib-images 16 {LITE}",
    "ofconvert efficientnet_lite0 --to onnx --int8 --calib calib/imagenet1k "
    "[--calib-method entropy|percentile|minmax|mixed] [--calib-images N] [--recalibrate]":
        f"ofconvert efficientnet_lite0 --to onnx --int8 --calib calib/imagenet1k --calib-method minmax "
        f"--calib-images 16 --recalibrate -o mm/efficientnet_lite0.int8.onnx {LITE}",
    "ofconvert efficientnet_lite0 --to onnx --int8 --calib-cache efficientnet_lite0.entropy.calib.cache":
        f"ofconvert efficientnet_lite0 --to onnx --int8 --calib-cache efficientnet_lite0.entropy.calib.cache {LITE}",
    "ofconvert inspect efficientnet_lite0.int8-cpu.onnx": "ofconvert inspect efficientnet_lite0.int8-cpu.onnx",
    "ofconvert resnet50 --to onnx --weights my.npz":
        ("skip", "needs the user's weights file (--weights is covered by tests/test_weights_errors.py)"),
    "ofconvert flowvision:vit_tiny_patch16_224 --to onnx --input-shape 3,224,224 --opset 17":
        f"ofconvert flowvision:mobilenet_v3_small --to onnx --input-shape 3,160,160 --opset 17 -o m160.onnx {LITE}",
    "ofconvert resnet50 --to trt --fp16 --batch 8 --max-batch 64": ("skip", TRT),
    "ofconvert resnet50 --to trt": ("skip", TRT),
    "ofconvert resnet50 --to trt --int8 --calib calib/imagenet1k -o resnet50.int8.engine": ("skip", TRT),
    "python tools/bench.py --models resnet50 --backends oneflow,ort-cpu --precisions fp32,int8 --batch 8":
        "python tools/bench.py --models efficientnet_lite0 --models-dir . --backends ort-cpu --precisions fp32,int8 "
        "--batch 2 --warmup 0 --iters 2 --threads 1 --streams 2 --no-progress --no-png --out-dir out/bench",
    "python tools/bench.py --models alexnet,vgg16,resnet50,inception_v3 --backends oneflow,ort-cpu,ort-cuda,trt "
    "--precisions fp32,fp16,int8 --batch 8,50": ("skip", "the GPU table (ort-cuda, trt); its CPU part runs as "
                                                         "README's bench command"),
    "python tools/eval.py --data ../shared/datasets/imagenet-val-1300 --models efficientnet_lite0 "
    "--backends oneflow,ort-cpu --precisions fp32,fp16,int8":
        "python tools/eval.py --data {datasets}/imagenet-val-1300 --models efficientnet_lite0 --models-dir . "
        "--backends ort-cpu --precisions fp32,fp16,int8 --reference ort-cpu:fp32 --limit 16 --batch 8 --threads 1 "
        "--workers 1 --cache-dir cache --no-progress",
    "python tools/eval.py --data /data/imagenet/val --models resnet50,efficientnet_lite0 "
    "--backends oneflow,ort-cpu,trt --precisions fp32,fp16,int8 [--reference oneflow:fp32] [--limit N] "
    "[--models-dir DIR] [--out-dir DIR]":
        "python tools/eval.py --data {datasets}/imagenet-stubs-16 --models efficientnet_lite0 --backends ort-cpu,trt "
        "--precisions fp32 --reference ort-cpu:fp32 --limit 8 --models-dir . --out-dir out/eval --no-png "
        "--workers 1 --cache-dir cache --no-progress --no-produce",
    # the OpenVINO CPU backend (docs/cpu.md): int8 is the int8-cpu file the commands above made
    "ofconvert bench --models resnet50 --backends ort-cpu,openvino --precisions fp32,int8 --batch 8 "
    "--calib calib/imagenet1k":
        "ofconvert bench --models efficientnet_lite0 --models-dir . --backends ort-cpu,openvino --precisions fp32,int8 "
        "--batch 2 --warmup 0 --iters 2 --threads 1 --calib calib/imagenet1k --no-progress --no-png "
        "--out-dir out/bench-ov",
    "ofconvert bench --models resnet50,efficientnet_lite0 --backends ort-cpu,openvino --precisions fp32,int8 --batch 8 "
    "--calib calib/imagenet1k --models-dir out/ov/onnx --threads 2 --iters 100":
        "ofconvert bench --models efficientnet_lite0 --backends ort-cpu,openvino --precisions fp32,int8 --batch 2 "
        "--calib calib/imagenet1k --models-dir . --threads 1 --warmup 0 --iters 2 --no-progress --no-png "
        "--out-dir out/bench-ov2",
    "ofconvert eval --data ../shared/datasets/imagenet-val-1300 --models efficientnet_lite0 --models-dir out/ov/onnx "
    "--variants ort-cpu:fp32,ort-cpu:fp16,ort-cpu:int8,openvino:fp32,openvino:fp16,openvino:int8 "
    "--reference ort-cpu:fp32 --calib calib/imagenet1k --threads 2 --out-dir out/ov/eval":
        "ofconvert eval --data {datasets}/imagenet-val-1300 --models efficientnet_lite0 --models-dir . "
        "--variants ort-cpu:fp32,openvino:fp32,openvino:int8 --reference ort-cpu:fp32 --calib calib/imagenet1k "
        "--threads 1 --limit 8 --batch 4 --workers 1 --cache-dir cache --no-progress --no-png --out-dir out/eval-ov",
    "bash ../shared/gpu/prepare-ort-gpu.sh": ("skip", GPU + " (docs/gpu.md: prepares onnxruntime-gpu)"),
    "cp .gpu5/* /tmp/ortparts/ && bash /tmp/ortparts/install-ort-gpu.sh && export PYTHONPATH=/tmp/site "
    "&& bash scripts/gpu/gpu_bench.sh sweep": ("skip", GPU),
    "export PYTHONPATH=/tmp/site && bash scripts/gpu/gpu_bench.sh final": ("skip", GPU),
    # the flip budget (docs/precision.md): 16 calibration images (8 calibrate, 8 check), a loose budget
    "ofconvert efficientnet_lite0 --to onnx --int8 --calib calib/imagenet1k --max-flips 1%":
        "ofconvert efficientnet_lite0 --to onnx --int8 --calib calib/imagenet1k --calib-images 16 "
        f"--max-flips 50% {LITE}",
    "ofconvert resnet50 --to onnx --fp16 --max-flips 0 --check-data DIR":
        "ofconvert efficientnet_lite0 --to onnx --fp16 --max-flips 0 --check-data {datasets}/imagenet-stubs-16 "
        f"{LITE}",
    "ofconvert resnet50 --to onnx --fp16 --input-format uint8-nhwc -o raw/resnet50.fp16.onnx":
        f"ofconvert efficientnet_lite0 --to onnx --fp16 --input-format uint8-nhwc -o raw/efficientnet_lite0.fp16.onnx "
        f"{LITE}",
    # your own model (README): examples/my_net.py and the checkpoint its __main__ writes
    "python examples/my_net.py ckpt": "python examples/my_net.py ckpt",
    "ofconvert examples/my_net.py:MyNet --weights ckpt --input-shape 3,64,64 --to onnx":
        "ofconvert examples/my_net.py:MyNet --weights ckpt --input-shape 3,64,64 --to onnx",
    "ofconvert examples/my_net.py:MyNet --weights ckpt --input-shape 3,64,64 --to onnx --int8 --calib calib/imagenet1k":
        "ofconvert examples/my_net.py:MyNet --weights ckpt --input-shape 3,64,64 --to onnx --int8 "
        "--calib calib/imagenet1k --calib-images 16",
    "ofconvert examples/my_net.py:build --model-args num_classes=5 --input-shape 1,3,64,64 -o five.onnx":
        "ofconvert examples/my_net.py:build --model-args num_classes=5 --input-shape 1,3,64,64 -o five.onnx",
    "ofconvert bench --models examples/my_net.py:MyNet --input-size 64 --backends oneflow,ort-cpu --batch 8":
        "ofconvert bench --models examples/my_net.py:MyNet --input-size 64 --backends oneflow,ort-cpu --batch 2 "
        "--warmup 0 --iters 2 --threads 1 --no-progress --no-png --out-dir out/mine",
}


def documented_commands():
    """(file, command) of every shell command in the docs' fenced code blocks
    (blocks without a language or marked bash/sh/console)."""
    out = []
    for doc in DOCS:
        with open(os.path.join(ROOT, doc), encoding="utf-8") as f:
            text = f.read()
        for m in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.S | re.M):
            if m.group(1) not in ("", "bash", "sh", "console", "shell"):
                continue
            for line in m.group(2).replace("\\\n", " ").splitlines():
                line = re.sub(r"\s+#\s.*$", "", line).strip()
                line = re.sub(r"\s+", " ", line)
                if line.startswith(_STARTS):
                    out.append((doc, line))
    return out


def test_every_documented_command_has_an_entry():
    missing = sorted({c for _, c in documented_commands()} - set(COMMANDS))
    assert missing == [], "documented commands without an entry in tests/test_examples.py COMMANDS: " + repr(missing)


def test_every_entry_is_still_documented():
    stale = sorted(set(COMMANDS) - {c for _, c in documented_commands()})
    assert stale == [], "entries of COMMANDS no docs mention any more: " + repr(stale)


def test_the_extractor_reads_continuations_and_comments():
    cmds = [c for d, c in documented_commands() if d == "README.md"]
    assert "ofconvert list" in cmds and "bash scripts/setup.sh" in cmds
    assert any(c.startswith("python tools/eval.py --data") and c.endswith("--precisions fp32,fp16,int8") for c in cmds)


@pytest.fixture(scope="session")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("examples")


def _argv(cmd, datasets):
    argv = shlex.split(cmd.format(datasets=datasets))
    if argv[0] == "ofconvert":   # the console script setup.sh installs, else the module
        script = os.path.join(os.path.dirname(sys.executable), "ofconvert")
        argv = ([script] if os.path.exists(script) else [sys.executable, "-m", "ofconvert"]) + argv[1:]
    elif argv[0] == "python":
        argv = [sys.executable] + argv[1:]
    # the repository's tools/ and examples/ (the docs run from the repository root; the tests from a temp folder)
    return [os.path.join(ROOT, a) if a.startswith(("tools/", "examples/")) else a for a in argv]


@needs_oneflow
@pytest.mark.parametrize("documented", list(COMMANDS))
def test_documented_command_runs(documented, workdir, datasets):
    run = COMMANDS[documented]
    if isinstance(run, tuple):
        pytest.skip(run[1])
    p = subprocess.run(_argv(run, datasets), cwd=workdir, capture_output=True, text=True, timeout=600,
                       env=dict(os.environ, OFCONVERT_DATASETS=datasets))
    assert p.returncode == 0, (run, p.stderr[-2000:])
    assert "Traceback" not in p.stderr
