"""The package as a user meets it: public names, typing markers, mypy --strict."""
from __future__ import annotations

import importlib.util
import pathlib
import subprocess
import sys

import pytest

import fastsock

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", sorted(fastsock._EXPORTS))
def test_every_public_name_resolves_from_its_module(name: str) -> None:
    value = getattr(fastsock, name)
    module = importlib.import_module(fastsock._EXPORTS[name])
    if module.__name__ == f"fastsock.{name}":
        # fastsock.limits is both a submodule and a function: the module is callable
        assert callable(value)
    else:
        assert getattr(module, name) is value


def test_unknown_names_raise_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        getattr(fastsock, "no_such_name")


def test_limits_is_callable_after_the_submodule_was_imported() -> None:
    import fastsock.limits  # noqa: F401  (binds the submodule on the package)

    report = fastsock.limits()
    assert isinstance(report, fastsock.LimitsReport)


def test_typing_markers_ship_with_the_package() -> None:
    pkg = ROOT / "fastsock"
    assert (pkg / "py.typed").is_file()
    for pyx in pkg.rglob("*.pyx"):
        assert pyx.with_suffix(".pyi").is_file(), f"{pyx} has no .pyi stub"


@pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="mypy is not installed")
def test_the_package_passes_mypy_strict(tmp_path: pathlib.Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / "cache"), "fastsock"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_package_data_ships_every_stub_and_cython_header() -> None:
    """Each .pyi/.pxd/.pyx under fastsock/ is matched by a package-data
    pattern of its own package in pyproject.toml (setuptools does not look
    into subpackages for a parent's patterns), so the wheel carries it."""
    import fnmatch
    import tomllib

    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    missing = []
    for path in sorted((ROOT / "fastsock").rglob("*")):
        if path.suffix not in (".pyi", ".pxd", ".pyx"):
            continue
        rel = path.relative_to(ROOT)
        package = ".".join(rel.parent.parts)
        if not any(fnmatch.fnmatch(path.name, pat) for pat in data.get(package, ())):
            missing.append(str(rel))
    assert not missing, f"not in [tool.setuptools.package-data]: {missing}"
