"""fastsock/_frame.pyi matches the runtime modules (names and signatures).

The Cython module cannot always report a signature (cdef class
constructors), so every stub signature is checked against the pure-Python
twin, which must have the same API, and against the Cython module wherever
``inspect`` can read it; constructors are also called the way the stub says.
"""
from __future__ import annotations

import ast
import inspect
import os
import pathlib
import subprocess
import sys

import pytest

import fastsock
from fastsock import _frame_py, frame

try:
    from fastsock import _frame as _frame_c
except ImportError:
    _frame_c = None

STUB = pathlib.Path(fastsock.__file__).with_name("_frame.pyi")


def stub_tree():
    return ast.parse(STUB.read_text())


def stub_params(fn: ast.FunctionDef) -> list[tuple[str, str, bool]]:
    """(name, kind, has default) for each parameter of a stub function."""
    a = fn.args
    out = []
    positional = a.posonlyargs + a.args
    n_defaults = len(a.defaults)
    for i, arg in enumerate(positional):
        kind = "POSITIONAL_ONLY" if arg in a.posonlyargs else "POSITIONAL_OR_KEYWORD"
        out.append((arg.arg, kind, i >= len(positional) - n_defaults))
    for arg, default in zip(a.kwonlyargs, a.kw_defaults):
        out.append((arg.arg, "KEYWORD_ONLY", default is not None))
    return out


def runtime_params(obj) -> list[tuple[str, str, bool]]:
    sig = inspect.signature(obj)
    return [(p.name, p.kind.name, p.default is not inspect.Parameter.empty)
            for p in sig.parameters.values()]


def stub_names():
    names = {}
    for node in stub_tree().body:
        if isinstance(node, ast.FunctionDef):
            names[node.name] = node
        elif isinstance(node, ast.ClassDef):
            names[node.name] = node
        elif isinstance(node, ast.AnnAssign):
            names[node.target.id] = node
    return names


def modules():
    return [m for m in (_frame_py, _frame_c) if m is not None]


def test_stub_names_match_runtime_all():
    names = set(stub_names())
    for mod in modules():
        assert names == set(mod.__all__), mod.__name__
        for name in names:
            assert hasattr(mod, name), (mod.__name__, name)
    assert set(frame.__all__) == names | {"IMPLEMENTATION", "CloseCode"}


def test_stub_function_signatures():
    for name, node in stub_names().items():
        if not isinstance(node, ast.FunctionDef):
            continue
        expected = stub_params(node)
        for mod in modules():
            assert runtime_params(getattr(mod, name)) == expected, (mod.__name__, name)


def test_stub_class_members_and_methods():
    for name, node in stub_names().items():
        if not isinstance(node, ast.ClassDef):
            continue
        members = {}
        for item in node.body:
            if isinstance(item, ast.FunctionDef):
                members[item.name] = item
            elif isinstance(item, ast.AnnAssign):
                members[item.target.id] = item
        for mod in modules():
            cls = getattr(mod, name)
            public = {n for n in dir(cls) if not n.startswith("_")}
            if name == "FrameParser":
                public.add("error")          # an instance attribute in the twin
            assert public == {m for m in members if not m.startswith("_")}, (mod.__name__, name)
        for meth, item in members.items():
            if not isinstance(item, ast.FunctionDef) or meth == "__init__":
                continue
            if any(isinstance(d, ast.Name) and d.id == "property" for d in item.decorator_list):
                continue
            for mod in modules():
                assert runtime_params(getattr(getattr(mod, name), meth)) == stub_params(item), \
                    (mod.__name__, name, meth)
        if "__init__" in members:
            # the twin is plain Python: its constructor signature is exact
            assert runtime_params(getattr(_frame_py, name).__init__) == \
                stub_params(members["__init__"]), name


@pytest.mark.parametrize("mod", modules(), ids=lambda m: m.__name__)
def test_constructors_accept_what_the_stub_says(mod):
    mod.Frame(1)
    mod.Frame(1, b"x", False, 0x40)
    mod.Frame(opcode=1, payload=b"x", fin=True, rsv=0)
    mod.Utf8Validator()
    mod.FrameParser(require_mask=True, max_frame_size=1, max_message_size=1,
                    allowed_rsv=0x40, validate_utf8=False)
    with pytest.raises(TypeError):
        mod.FrameParser(True)                 # keyword-only
    with pytest.raises(TypeError):
        mod.FrameParser()                     # require_mask is required


def test_frame_module_selects_an_implementation():
    assert frame.IMPLEMENTATION in ("cython", "python")
    impl = _frame_c if frame.IMPLEMENTATION == "cython" else _frame_py
    assert frame.FrameParser is impl.FrameParser and frame.build_frame is impl.build_frame


def test_fastsock_pure_forces_the_twin():
    code = "from fastsock import frame; print(frame.IMPLEMENTATION, frame.Frame.__module__)"
    env = {**os.environ, "FASTSOCK_PURE": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=60, check=True).stdout.split()
    assert out == ["python", "fastsock._frame_py"]
