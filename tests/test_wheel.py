"""Packaging: ``python -m build`` makes an sdist and a wheel with every compiled
module, and that wheel installs and runs in a fresh venv that has no Cython
and may not compile anything.

The build runs on a copy of the sources (no ``.so``, no generated ``.c``) in a
temporary directory, so it never touches the work tree, and with
``--no-isolation``: the build requirements come from the test venv, not from
a download. Installing the wheel may fetch its one dependency (httptools)
from the package index, as a user's ``pip install`` would.
"""
from __future__ import annotations

import email.parser
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
import venv
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

# what the sources hold: every Cython module becomes an extension module
PYX = sorted(p.relative_to(ROOT) for p in (ROOT / "fastsock").rglob("*.pyx"))
COMPILED = [".".join(p.with_suffix("").parts) for p in PYX]


def _copy_sources(dest: pathlib.Path) -> None:
    ignore = shutil.ignore_patterns("*.so", "*.c", "__pycache__", "*.pyc")
    shutil.copytree(ROOT / "fastsock", dest / "fastsock", ignore=ignore)
    for name in ("setup.py", "pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, dest / name)


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pathlib.Path]:
    pytest.importorskip("build", reason="the 'build' package is not installed (the test extra has it)")
    work = tmp_path_factory.mktemp("wheel")
    src, out = work / "src", work / "dist"
    _copy_sources(src)
    done = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(src)],
        cwd=src, capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    wheels, sdists = sorted(out.glob("*.whl")), sorted(out.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, sorted(out.iterdir())
    return {"wheel": wheels[0], "sdist": sdists[0], "work": work}


def _module_of(member: str) -> str | None:
    """'fastsock/reactor/_epollc.cpython-311-x86_64-linux-gnu.so' -> 'fastsock.reactor._epollc'."""
    m = re.fullmatch(r"(fastsock/(?:[\w/]+/)?\w+)\.[\w.-]*\.so", member)
    return m.group(1).replace("/", ".") if m else None


def test_the_wheel_holds_every_compiled_module_stub_and_marker(dist: dict[str, pathlib.Path]) -> None:
    names = zipfile.ZipFile(dist["wheel"]).namelist()
    compiled = sorted(filter(None, map(_module_of, names)))
    assert compiled == COMPILED
    for pyx in PYX:
        assert str(pyx.with_suffix(".pyi")) in names, f"{pyx.with_suffix('.pyi')} is not in the wheel"
    assert "fastsock/py.typed" in names
    assert not [n for n in names if n.endswith(".c")], "generated C belongs in the sdist only"
    # a platform wheel: it has compiled code, so it is not tagged py3-none-any
    assert not dist["wheel"].name.endswith("-none-any.whl")


def test_the_sdist_holds_the_sources_to_build_from(dist: dict[str, pathlib.Path]) -> None:
    with tarfile.open(dist["sdist"]) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for name in ("setup.py", "pyproject.toml", "README.md", "LICENSE"):
        assert name in names
    for pyx in PYX:
        assert str(pyx) in names
        assert str(pyx.with_suffix(".pyi")) in names
        if (ROOT / pyx.with_suffix(".pxd")).exists():
            assert str(pyx.with_suffix(".pxd")) in names


def test_the_metadata_is_complete(dist: dict[str, pathlib.Path]) -> None:
    with zipfile.ZipFile(dist["wheel"]) as whl:
        meta_name = next(n for n in whl.namelist() if n.endswith(".dist-info/METADATA"))
        meta = email.parser.Parser().parsestr(whl.read(meta_name).decode())
    assert meta["Name"] == "fastsock"
    assert meta["Version"] == PYPROJECT["project"]["version"]
    assert meta["Requires-Python"] == PYPROJECT["project"]["requires-python"]
    assert meta["License-Expression"] == "MIT"
    assert meta["Summary"]
    assert meta.get_payload().startswith("# fastsock")  # the README is the long description
    classifiers = meta.get_all("Classifier")
    for expected in ("Typing :: Typed", "Operating System :: POSIX :: Linux",
                     "Programming Language :: Cython", "Programming Language :: Python :: 3 :: Only"):
        assert expected in classifiers
    extras = set(meta.get_all("Provides-Extra"))
    assert extras == set(PYPROJECT["project"]["optional-dependencies"])
    assert "fastsock = fastsock.__main__:main" in zipfile.ZipFile(dist["wheel"]).read(
        meta_name.replace("METADATA", "entry_points.txt")).decode()


CHECK = r"""
import importlib, importlib.util, json, pathlib, sys
import fastsock, fastsock.frame, fastsock.websocket.protocol as protocol
out = {
    "fastsock": fastsock.__file__,
    "frame": fastsock.frame.IMPLEMENTATION,
    "core": protocol.CORE_IMPLEMENTATION,
    "compiled": {m: importlib.import_module(m).__file__ for m in sys.argv[1:]},
    "cython": importlib.util.find_spec("Cython") is not None,
    "typed": (pathlib.Path(fastsock.__file__).parent / "py.typed").is_file(),
}
# the codec works: a masked client frame round-trips through the compiled parser
frame = fastsock.frame.build_frame(fastsock.frame.OP_TEXT, "héllo".encode(), mask=True)
parsed = fastsock.frame.FrameParser(require_mask=True).feed(frame)
out["roundtrip"] = parsed[0].payload.decode()
print(json.dumps(out))
"""


def test_the_wheel_installs_and_runs_without_cython_or_a_compiler(
        dist: dict[str, pathlib.Path]) -> None:
    env_dir = dist["work"] / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    python = env_dir / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "FASTSOCK_"))}
    # any attempt to compile fails: pip may only install wheels
    env.update(CC="false", CXX="false", PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--only-binary", ":all:", str(dist["wheel"])],
        cwd=dist["work"], env=env, capture_output=True, text=True, timeout=180,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]

    # -I: the work tree (or this directory) is not on sys.path, only the venv
    done = subprocess.run([str(python), "-I", "-c", CHECK, *COMPILED],
                          cwd=dist["work"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-4000:]
    out = json.loads(done.stdout)
    site = str(env_dir)
    assert out["fastsock"].startswith(site)
    assert out["frame"] == "cython"
    assert out["core"] == "cython"
    assert out["cython"] is False, "the fresh venv must not have Cython"
    assert out["typed"] is True
    assert out["roundtrip"] == "héllo"
    for module, path in out["compiled"].items():
        assert path.startswith(site) and path.endswith(".so"), (module, path)

    # the console script is installed and runs
    done = subprocess.run([str(env_dir / "bin" / "fastsock"), "--version"],
                          cwd=dist["work"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert PYPROJECT["project"]["version"] in done.stdout + done.stderr


# extras that are tools for working on fastsock, not features of it
TOOL_EXTRAS = {"test", "bench", "docs"}
# requirement name -> the module its code imports, where they differ
IMPORT_NAMES = {"prometheus-client": "prometheus_client"}


def test_every_feature_extra_is_used_by_code() -> None:
    """An extra such as ``uvloop`` is only declared while some module of
    fastsock imports what it brings (at least one of its packages: an extra
    may add a speed-up its main package loads by itself, as hiredis for redis)."""
    sources = "\n".join(p.read_text() for p in (ROOT / "fastsock").rglob("*.py"))
    for extra, reqs in PYPROJECT["project"]["optional-dependencies"].items():
        if extra in TOOL_EXTRAS:
            continue
        modules = []
        for req in reqs:
            name = re.split(r"[\[<>=!~; ]", req, maxsplit=1)[0].lower()
            modules.append(IMPORT_NAMES.get(name, name.replace("-", "_")))
        assert any(re.search(rf"^\s*(import|from)\s+{re.escape(m)}\b", sources, re.M) for m in modules), (
            f"extra {extra!r} brings {reqs}, but no module in fastsock/ imports any of {modules}")
