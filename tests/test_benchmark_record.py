"""Benchmark results are kept with where, when and how they were measured, and the documentation quotes only
such files (``benchmarks/record.py``, ``docs/conf.py``)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _module(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem + "_under_test", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_record_keeps_the_json_lines_after_their_provenance(tmp_path, monkeypatch, capsys):
    record = _module(REPO / "benchmarks" / "record.py")
    monkeypatch.setattr(record, "RESULTS", tmp_path / "results")
    bench = tmp_path / "tiny_bench.py"
    bench.write_text('import json\nprint("warming up")\nprint(json.dumps({"name": "tiny", "value": 1.5}))\n')
    assert record.main([str(bench), "--flag"]) == 0
    lines = [json.loads(x) for x in (tmp_path / "results" / "tiny_bench.jsonl").read_text().splitlines()]
    head, rows = lines[0], lines[1:]
    assert head["name"] == "provenance" and head["command"] == f"python {bench} --flag"
    assert {"date", "cpu", "cores", "gpu", "load_average", "python", "torch", "msmae"} <= set(head)
    assert rows == [{"name": "tiny", "value": 1.5}]


def test_a_failed_benchmark_writes_no_result(tmp_path, monkeypatch):
    record = _module(REPO / "benchmarks" / "record.py")
    monkeypatch.setattr(record, "RESULTS", tmp_path / "results")
    bench = tmp_path / "broken.py"
    bench.write_text('print(\'{"name": "half"}\')\nraise SystemExit(3)\n')
    assert record.main([str(bench)]) == 3
    assert not (tmp_path / "results").exists()


def test_the_benchmarks_page_quotes_every_result_file_with_its_provenance(tmp_path):
    sys.path.insert(0, str(REPO / "src"))
    conf = _module(REPO / "docs" / "conf.py")
    page = conf.benchmark_results(REPO / "benchmarks" / "results")
    for path in sorted((REPO / "benchmarks" / "results").glob("*.jsonl")):
        head = json.loads(path.read_text().splitlines()[0])
        assert f"benchmarks/results/{path.name}" in page and head["date"] in page and head["command"] in page
    (tmp_path / "bare.jsonl").write_text('{"name": "x", "value": 1}\n')
    with pytest.raises(ValueError, match="provenance"):
        conf.benchmark_results(tmp_path)
