"""MkDocs hooks for fastsock's site (mkdocs.yml: ``hooks:``).

The Markdown in docs/ is also read on GitHub, where it links to files outside
docs/ (``../benchmarks/results/c10k.png``, ``../examples/ws_echo_server.py``).
These hooks make the same links work on the site, and keep the API reference
in step with the package:

- ``on_files`` adds benchmarks/results/ (charts and result tables) and
  examples/ to the site under the same names, and one generated reference
  page per public module of ``fastsock`` (``reference/<module>.md``,
  rendered by mkdocstrings from docstrings and the ``.pyi`` stubs).
- ``on_config`` puts those generated pages in the nav under "Reference".
- ``on_page_markdown`` rewrites ``](../benchmarks/results/...`` and
  ``](../examples/...`` to the copies, and fills the public-names table of
  reference/index.md from ``fastsock._EXPORTS``.
- ``on_page_content`` drops Sphinx roles (``:func:``) that docstrings use.
"""
from __future__ import annotations

import importlib
import pathlib
import re
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "fastsock"

# folders outside docs/ that pages link to, published under the same path
MOUNTED = ("benchmarks/results", "examples")
MOUNTED_SUFFIXES = {".png", ".md", ".py", ".svg"}

# Where reference/index.md wants the table of public names.
PUBLIC_NAMES_MARKER = "<!-- fastsock: public names -->"

# Private modules that are documented anyway: the compiled ones, through their
# .pyi stubs. Their pure-Python twins (_frame_py, _core_py) have the same API
# and are left out.
_MOUNTED_RE = "(" + "|".join(re.escape(m) for m in MOUNTED) + ")/"
_ROLE_RE = re.compile(r":(?:func|class|mod|meth|attr|data|exc|obj|const):(<code>|<a [^>]*>)(?:<code>)?~?")


def public_modules() -> list[str]:
    """Dotted names of the modules the reference documents, sorted.

    Every module and package under fastsock/ whose name parts do not start
    with ``_``, plus every compiled module that has a ``.pyi`` stub.
    ``fastsock.apps`` is the command line's (docs/cli.md) and is left out
    apart from its package page.
    """
    names: set[str] = set()
    for path in PACKAGE.rglob("*"):
        if "__pycache__" in path.parts:
            continue
        rel = path.relative_to(ROOT)
        if path.name == "__init__.py":
            parts = rel.parent.parts
        elif path.suffix == ".py":
            parts = rel.with_suffix("").parts
            if parts[-1].startswith("_"):
                continue
        elif path.suffix == ".pyi" and not path.with_suffix(".py").exists():
            parts = rel.with_suffix("").parts  # compiled: _frame.pyi etc.
        else:
            continue
        if any(p.startswith("_") for p in parts[1:-1]):
            continue
        if len(parts) > 1 and parts[1] == "apps" and len(parts) > 2:
            continue
        if parts[-1] == "__main__":
            continue
        names.add(".".join(parts))
    names.discard("fastsock")  # the package page is reference/index.md
    return sorted(names)


def _page_uri(module: str) -> str:
    return f"reference/{module}.md"


def _is_package(module: str) -> bool:
    return (ROOT.joinpath(*module.split(".")) / "__init__.py").exists()


def _page_source(module: str) -> str:
    title = module
    if module.rsplit(".", 1)[-1].startswith("_"):
        title += " (compiled)"
    options = ""
    if _is_package(module):
        # A package page shows its docstring and a summary; its members are
        # documented in the page of the module that defines them.
        options = "\n    options:\n      members: false\n      show_submodules: false\n"
    return f"# `{title}`\n\n::: {module}{options}\n"


def on_config(config: Any) -> Any:
    modules = public_modules()
    nav = config["nav"] or []
    for entry in nav:
        if isinstance(entry, dict) and "Reference" in entry:
            section = entry["Reference"]
            section.extend({m: _page_uri(m)} for m in modules)
            break
    return config


def on_files(files: Files, config: Any) -> Files:
    site_dir = config["site_dir"]
    use_urls = config["use_directory_urls"]
    for folder in MOUNTED:
        for path in sorted((ROOT / folder).glob("*")):
            if path.suffix in MOUNTED_SUFFIXES and path.is_file():
                files.append(File(f"{folder}/{path.name}", str(ROOT), site_dir, use_urls))
    for module in public_modules():
        files.append(File.generated(config, _page_uri(module), content=_page_source(module)))
    return files


def _documented_module(module: str) -> str:
    """The reference page that documents objects defined in ``module``: a
    compiled base class reports its extension module, which has a page only
    when it has a .pyi stub; otherwise the package that re-exports it."""
    while "." in module and module.rsplit(".", 1)[-1].startswith("_") and not (
        ROOT.joinpath(*module.split(".")).with_suffix(".pyi").exists()
    ):
        module = module.rsplit(".", 1)[0]
    return module


def _public_names_table() -> str:
    fastsock = importlib.import_module("fastsock")
    rows = ["| name | kind | documented in |", "|---|---|---|"]
    for name in sorted(fastsock._EXPORTS, key=str.lower):
        exporter = fastsock._EXPORTS[name]
        value = getattr(fastsock, name)
        if isinstance(value, type(fastsock)):  # fastsock.limits: a callable module
            value = getattr(value, name)
        kind = "class" if isinstance(value, type) else "function" if callable(value) else "value"
        defined = getattr(value, "__module__", None) or exporter
        if defined == "fastsock" or defined.startswith("fastsock."):
            module = _documented_module(defined)
            if module not in public_modules():
                # defined in a private leaf module (fastsock._close_code): the
                # page of the public module that re-exports it documents it
                module = exporter
            rows.append(f"| [`{name}`][{module}.{name}] | {kind} | [`{module}`]({module}.md) |")
        else:
            # a standard-library object that fastsock re-exports as it is
            qualname = f"{defined.lstrip('_')}.{getattr(value, '__qualname__', name)}"
            page = exporter if exporter in public_modules() else _documented_module(exporter)
            rows.append(f"| `{name}` | {kind} | `{qualname}` itself, re-exported by [`{exporter}`]({page}.md) |")
    return "\n".join(rows)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    if page.file.src_uri == "reference/index.md" and PUBLIC_NAMES_MARKER in markdown:
        markdown = markdown.replace(PUBLIC_NAMES_MARKER, _public_names_table())
    # From docs/<d folders>/page.md, GitHub needs d+1 "../" to leave docs/;
    # on the site the copies sit d levels up.
    depth = page.file.src_uri.count("/")
    if not page.file.src_uri.startswith(MOUNTED):
        up = re.escape("../" * (depth + 1))
        markdown = re.sub(r"\]\(" + up + _MOUNTED_RE, lambda m: "](" + "../" * depth + m.group(1) + "/", markdown)
    return markdown


def on_page_content(html: str, page: Any, config: Any, files: Files) -> str:
    # ":func:`~a.b`" in a docstring renders as ":func:<code>~a.b</code>"
    return _ROLE_RE.sub(lambda m: m.group(0)[m.group(0).index(":", 1) + 1:].replace("~", ""), html)
