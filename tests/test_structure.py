"""The package's shape: no module-level import cycle inside ``ofconvert`` (read
with ``ast``, so nothing is imported), the modules of the bench/eval/CLI/shared
layers stay small enough to hold one layer each, no ``sys.path`` insert anywhere,
and ``tools/`` holds only the two user tools."""
import ast
import glob
import os

import pytest
from conftest import ROOT

PKG = os.path.join(ROOT, "ofconvert")
MAX_LINES = 450
# the layers this structure owns (bench, eval, CLI, shared report/artifacts/isolation, runners registry, data)
OWNED = ["__init__.py", "cli.py", "cli_args.py", "report.py", "progress.py", "isolation.py", "onnx_fix.py",
         "data.py", "datasets.py", "preprocache.py", "artifacts/*.py", "bench/*.py", "evaluation/*.py",
         "runners/__init__.py", "runners/base.py", "runners/oneflow.py", "runners/ort_settings.py"]


def _modules():
    """{dotted module name: path} of every module of the package."""
    out = {}
    for path in glob.glob(os.path.join(PKG, "**", "*.py"), recursive=True):
        rel = os.path.relpath(path, ROOT)[:-3].split(os.sep)
        if rel[-1] == "__init__":
            rel = rel[:-1]
        out[".".join(rel)] = path
    return out


def _top_level_imports(tree):
    """Import statements executed at import time: module level, including inside
    module-level if/try/with blocks, never inside functions or classes."""
    todo = list(tree.body)
    while todo:
        node = todo.pop(0)
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            for field in ("body", "orelse", "finalbody"):
                todo.extend(getattr(node, field, []) or [])
            for h in getattr(node, "handlers", []):
                todo.extend(h.body)


def import_graph(function_level=False):
    """{module: modules it imports}: at import time, or (``function_level``) anywhere,
    the lazy imports inside functions included."""
    mods = _modules()
    graph = {m: set() for m in mods}
    for mod, path in mods.items():
        is_pkg = path.endswith("__init__.py")
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        found = (n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))) if function_level \
            else _top_level_imports(tree)
        for node in found:
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                if node.level:
                    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    base = base[:len(base) - (node.level - 1)]
                    prefix = ".".join(base + ([node.module] if node.module else []))
                else:
                    prefix = node.module
                subs = [f"{prefix}.{a.name}" for a in node.names]
                # `from pkg import submodule` inside pkg loads the submodule (pkg itself is already
                # loading); `from pkg import name` needs pkg's own body: an edge to pkg
                names_only = any(t not in mods for t in subs)
                targets = subs + ([prefix] if names_only or not mod.startswith(prefix + ".") else [])
            for t in targets:
                if t in mods and t != mod:
                    graph[mod].add(t)
    return graph


def cycles(graph):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_checker_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_relative_imports():
    g = import_graph()
    assert "ofconvert.errors" in g["ofconvert.artifacts.names"]
    assert "ofconvert.bench.options" in g["ofconvert.bench.driver"]
    assert "ofconvert.runners.ort_settings" in g["ofconvert.bench.worker"]


def test_no_module_level_import_cycle():
    assert cycles(import_graph()) == []


def test_no_import_cycle_even_through_lazy_imports():
    """A function-level import is for speed (numpy/onnx only when needed), never to
    hide two modules leaning on each other."""
    g = import_graph(function_level=True)
    assert "ofconvert.graph.precision" in g["ofconvert.trt.plan"]     # the graph sees lazy imports
    assert "ofconvert.graph.precision" not in import_graph()["ofconvert.trt.plan"]
    assert cycles(g) == []


@pytest.mark.parametrize("pattern", OWNED)
def test_owned_modules_stay_small(pattern):
    paths = glob.glob(os.path.join(PKG, pattern))
    assert paths, pattern
    for p in paths:
        with open(p, encoding="utf-8") as f:
            n = sum(1 for _ in f)
        assert n <= MAX_LINES, f"{os.path.relpath(p, ROOT)} has {n} lines (> {MAX_LINES}): split it by layer"


def test_no_sys_path_inserts():
    offenders = []
    for folder in ("ofconvert", "tools", "scripts", "tests"):
        for p in glob.glob(os.path.join(ROOT, folder, "**", "*.py"), recursive=True):
            with open(p, encoding="utf-8") as f:
                text = f.read()
            if p != os.path.abspath(__file__) and ("sys.path.insert" in text or "sys.path.append" in text):
                offenders.append(os.path.relpath(p, ROOT))
    assert offenders == []


def test_tools_holds_only_the_user_tools():
    assert sorted(os.listdir(os.path.join(ROOT, "tools"))) in (["bench.py", "eval.py"],
                                                               ["__pycache__", "bench.py", "eval.py"])


def test_cli_help_loads_no_numpy_or_onnx():
    import subprocess
    import sys

    code = ("import sys, ofconvert.cli, ofconvert.cli_args, ofconvert.bench.cli, ofconvert.evaluation.cli; "
            "print(sorted(m for m in ('numpy', 'onnx', 'onnxruntime') if m in sys.modules))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0 and p.stdout.strip() == "[]", p.stdout + p.stderr


def test_subcommands_are_wired_with_one_error_printer(tmp_path):
    """bench, eval and inspect are words of the ofconvert CLI; a usage mistake in any
    entry is one `ofconvert: error:` line and exit 2 (inspect's content is tested by
    tests/test_inspect.py)."""
    import subprocess
    import sys

    def run(*args):
        return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=tmp_path, timeout=120)

    p = run("-m", "ofconvert", "inspect", "--help")
    assert p.returncode == 0 and "--json" in p.stdout and "file" in p.stdout, p.stderr
    for args in (["-m", "ofconvert", "bench", "--frobnicate"], ["-m", "ofconvert", "eval", "--models", "x"],
                 ["-m", "ofconvert", "inspect"], ["-m", "ofconvert", "list", "extra"],
                 [os.path.join(ROOT, "tools", "bench.py"), "--streams", "0", "--backends", "ort-cpu"],
                 [os.path.join(ROOT, "tools", "eval.py"), "--data", str(tmp_path), "--models", "nosuch"]):
        p = run(*args)
        assert p.returncode == 2, (args, p.stderr)
        assert p.stderr.startswith("ofconvert: error:") and p.stderr.count("\n") == 1, (args, p.stderr)
    assert os.listdir(tmp_path) == []


def _all_imports(tree):
    """Every ``from X import name`` of a module, at any depth (functions too)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            yield node


def _owner(mod):
    """The unit a private name may be shared within: a subpackage (``ofconvert.budget``),
    or a top-level module on its own (``ofconvert.exporter``)."""
    parts = mod.split(".")
    return ".".join(parts[:2])


def private_imports_across_packages():
    """``(importer, module, name)`` of every private name (``_x``) imported from
    another subpackage or top-level module of ``ofconvert``."""
    mods = _modules()
    out = []
    for mod, path in mods.items():
        is_pkg = path.endswith("__init__.py")
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        for node in _all_imports(tree):
            if node.level:
                base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                src = ".".join(base + ([node.module] if node.module else []))
            else:
                src = node.module or ""
            if not src.startswith("ofconvert"):
                continue
            for a in node.names:
                private = a.name.startswith("_") and not a.name.startswith("__")
                if private and f"{src}.{a.name}" not in mods and _owner(src) != _owner(mod):
                    out.append((mod, src, a.name))
    return sorted(out)


def test_no_private_name_crosses_a_package():
    assert private_imports_across_packages() == []


MAX_MODULE_LINES = 500


def test_no_module_over_500_lines():
    big = []
    for p in glob.glob(os.path.join(PKG, "**", "*.py"), recursive=True):
        with open(p, encoding="utf-8") as f:
            n = sum(1 for _ in f)
        if n > MAX_MODULE_LINES:
            big.append(f"{os.path.relpath(p, ROOT)}: {n}")
    assert big == []


def test_onnx_files_and_sessions_open_through_the_loading_layer():
    """``onnx.load(`` and ``InferenceSession(`` appear only in ofconvert/onnx_io.py."""
    offenders = []
    for p in glob.glob(os.path.join(PKG, "**", "*.py"), recursive=True):
        if os.path.basename(p) == "onnx_io.py":
            continue
        with open(p, encoding="utf-8") as f:
            for i, line in enumerate(f, 1):
                if "onnx.load(" in line or "InferenceSession(" in line:
                    offenders.append(f"{os.path.relpath(p, ROOT)}:{i}")
    assert offenders == []


def test_ruff_is_clean():
    """The style CI holds (pyproject.toml [tool.ruff]): zero findings."""
    import shutil
    import subprocess
    import sys

    ruff = shutil.which("ruff", path=os.path.dirname(sys.executable)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (scripts/setup.sh installs it)")
    p = subprocess.run([ruff, "check", "--no-cache", ROOT], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0, p.stdout[-3000:]



MAX_FUNCTION_LINES, MAX_PARAMETERS = 60, 8


def oversized_functions():
    """``path:line name`` of every function of the package over 60 lines or taking
    over 8 parameters (self / cls not counted, keyword-only ones counted: ruff's
    PLR0913 counts the same way and holds the parameters in CI)."""
    out = []
    for p in sorted(glob.glob(os.path.join(PKG, "**", "*.py"), recursive=True)):
        with open(p, encoding="utf-8") as f:
            tree = ast.parse(f.read(), p)
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            a = fn.args
            params = [x for x in a.posonlyargs + a.args + a.kwonlyargs if x.arg not in ("self", "cls")]
            lines = fn.end_lineno - fn.lineno + 1
            if lines > MAX_FUNCTION_LINES or len(params) > MAX_PARAMETERS:
                out.append(f"{os.path.relpath(p, ROOT)}:{fn.lineno} {fn.name} ({lines} lines, {len(params)} "
                           f"parameters)")
    return out


def test_functions_fit_a_screen_and_take_few_parameters():
    assert oversized_functions() == []
