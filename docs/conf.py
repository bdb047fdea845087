"""Sphinx configuration of the msmae documentation (``make docs``).

Sphinx with MyST Markdown: the pages stay Markdown that reads well on GitHub and in an editor, while the
command-line reference is generated from msmae's own argparse parsers (sphinx-argparse) and the Python API
reference from the docstrings (autodoc), so neither can drift from the code. Theme: furo.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import msmae  # noqa: E402

project = "msmae"
author = "msmae contributors"
release = version = msmae.__version__
copyright = "msmae contributors, Apache-2.0"

extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinxarg.ext"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]
html_theme = "furo"
html_title = f"msmae {release}"
autodoc_member_order = "bysource"
autodoc_typehints = "description"

# The detailed pages behind "What msmae guarantees", in the order they are listed there. The toctree of
# guarantees.md lists those that exist (the line %GUARANTEE_PAGES% is replaced by their names).
GUARANTEE_PAGES = ["inputs", "outputs-predictions", "time", "data-order", "model-folders", "cluster"]


def _guarantee_pages(app, docname, source):
    if docname == "guarantees":
        found = [p for p in GUARANTEE_PAGES if (Path(app.srcdir) / f"{p}.md").is_file()]
        source[0] = source[0].replace("%GUARANTEE_PAGES%", "\n".join(found))


def setup(app):
    app.connect("source-read", _guarantee_pages)
