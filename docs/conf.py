"""Sphinx configuration of the msmae documentation (``make docs``).

Sphinx with MyST Markdown: the pages stay Markdown that reads well on GitHub and in an editor, while the
command-line reference is generated from msmae's own argparse parsers (sphinx-argparse) and the Python API
reference from the docstrings (autodoc), so neither can drift from the code. Theme: furo.
"""

import json
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
smartquotes = False  # "--out" stays two hyphens in commands
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


def benchmark_results(results: Path) -> str:
    """Markdown for every result file of ``benchmarks/record.py``: where and when it was measured, the command,
    and the JSON lines as the benchmark printed them."""
    parts = []
    for path in sorted(results.glob("*.jsonl")):
        lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        head = lines[0] if lines and lines[0].get("name") == "provenance" else {}
        missing = [k for k in ("date", "command", "cpu", "cores", "gpu") if k not in head]
        if missing:  # a figure without its date, machine and command is not quoted
            raise ValueError(f"{path}: the first line must be benchmarks/record.py's provenance; missing {missing}")
        machine = f"GPU {head['gpu']}" if head.get("gpu") else f"CPU only: {head['cpu']}, {head['cores']} cores"
        if "load_average" in head:
            machine += f" (load average {head['load_average']} when it started)"
        parts.append(f"### `{path.stem}`\n\n- date: {head['date']}\n- machine: {machine}\n"
                     f"- command: `{head['command']}`\n"
                     f"- versions: Python {head.get('python', '?')}, torch {head.get('torch', '?')}, "
                     f"msmae {head.get('msmae', '?')}\n- file: `benchmarks/results/{path.name}`\n\n"
                     "```json\n" + "\n".join(json.dumps(x) for x in lines[1:]) + "\n```\n")
    return "\n".join(parts) or "No result file has been recorded yet.\n"


def _benchmark_results(app, docname, source):
    if docname == "benchmarks":
        source[0] = source[0].replace("<!-- BENCHMARK_RESULTS -->", benchmark_results(ROOT / "benchmarks" / "results"))


def setup(app):
    app.connect("source-read", _guarantee_pages)
    app.connect("source-read", _benchmark_results)
