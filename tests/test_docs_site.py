"""The documentation site (mkdocs.yml) builds with ``--strict`` and documents
what exists: every public name, every CLI app, every layer as built or planned.

``--strict`` turns MkDocs' warnings into errors, and mkdocs.yml makes these
warnings: a link to a missing page, file or anchor; a page in docs/ left out
of the nav; a nav entry without a page. mkdocstrings and autorefs warn about
a module, name or cross-reference that does not resolve.
"""
from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys
import zlib

import pytest

import fastsock
from fastsock.apps import APPS

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

pytestmark = pytest.mark.timeout(300)   # the build takes seconds; the bound is for a hung plugin


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
         "--site-dir", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    problems = [line for line in done.stderr.splitlines() if line.startswith(("WARNING", "ERROR"))]
    assert done.returncode == 0, "\n".join(problems) or done.stderr[-4000:]
    return out


def _inventory(site: pathlib.Path) -> set[str]:
    """The names in objects.inv: everything the generated reference documents."""
    data = (site / "objects.inv").read_bytes()
    header_end = 0
    for _ in range(4):  # four plain-text header lines, then zlib
        header_end = data.index(b"\n", header_end) + 1
    body = zlib.decompress(data[header_end:]).decode()
    return {line.split(" ", 1)[0] for line in body.splitlines() if line}


def test_the_site_builds_strictly(site: pathlib.Path) -> None:
    assert (site / "index.html").is_file()
    assert (site / "reference" / "index.html").is_file()


@pytest.mark.parametrize("name", sorted(fastsock._EXPORTS))
def test_every_public_name_is_in_the_reference(site: pathlib.Path, name: str) -> None:
    names = _inventory(site)
    documented = {n for n in names if n.rsplit(".", 1)[-1] == name}
    assert documented, f"fastsock.{name} is documented nowhere in the generated reference"
    table = (site / "reference" / "index.html").read_text()
    assert f"<code>{name}</code>" in table, f"fastsock.{name} is not in the public-names table"


def test_every_name_in_all_is_mentioned(site: pathlib.Path) -> None:
    reference = (DOCS / "reference" / "index.md").read_text()
    for name in fastsock.__all__:
        if name not in fastsock._EXPORTS:  # __version__
            assert name in reference, f"{name} is not mentioned in docs/reference/index.md"


def test_every_compiled_module_has_a_reference_page(site: pathlib.Path) -> None:
    names = _inventory(site)
    for pyx in (ROOT / "fastsock").rglob("*.pyx"):
        module = ".".join(pyx.relative_to(ROOT).with_suffix("").parts)
        assert module in names, f"{module} (from its .pyi stub) is not in the reference"
        assert (site / "reference" / module / "index.html").is_file()


@pytest.mark.parametrize("app", sorted(APPS))
def test_every_cli_app_is_documented(app: str) -> None:
    cli = (DOCS / "cli.md").read_text()
    assert re.search(rf"^\| `{re.escape(app)}` \|", cli, re.M), f"no row for {app} in cli.md's app table"
    assert f"serve {app}" in "\n".join(p.read_text() for p in DOCS.rglob("*.md")), (
        f"no page shows how to run `python -m fastsock serve {app}`")


def test_the_cli_error_example_lists_every_app() -> None:
    cli = (DOCS / "cli.md").read_text()
    m = re.search(r"unknown app 'nope' \(available: ([^)]*)\)", cli)
    assert m, "cli.md lost its unknown-app example"
    assert m.group(1).split(", ") == list(APPS)


def test_design_marks_every_layer_that_does_not_exist_as_planned() -> None:
    """Each row of the layer table in docs/design.md: a path that does not
    exist in the tree is only allowed on a row that says 'planned'."""
    design = (DOCS / "design.md").read_text()
    table = design[design.index("| layer |"):].split("\n\n", 1)[0]
    rows = [r for r in table.splitlines()[2:] if r.startswith("|")]
    assert rows
    for row in rows:
        where = row.split("|")[2]
        for path in re.findall(r"`((?:fastsock|benchmarks)/[^`]*)`", where):
            if not (ROOT / path).exists():
                assert "planned" in row, f"design.md lists {path} as if it existed: {row}"


def test_the_charts_are_on_the_site(site: pathlib.Path) -> None:
    pages = (DOCS / "benchmarks.md").read_text()
    charts = re.findall(r"\]\(\.\./(benchmarks/results/[\w.-]+\.png)\)", pages)
    assert charts, "benchmarks.md shows no chart"
    for chart in charts:
        assert (site / chart).is_file(), f"{chart} is not published"
    page = site / "benchmarks" / "index.html"
    shown = re.findall(r'<img[^>]* src="([^"]+\.png)"', page.read_text())
    assert len(shown) == len(charts)
    for src in shown:
        assert (page.parent / src).resolve().is_file(), f"benchmarks page shows a missing image {src}"
