"""Configs shipped inside the package and named on the command line (`--config wlasl`, `msmae configs`), the
version's single source, and the citation and changelog files."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import msmae
from msmae.cli import main
from msmae.config import CONFIG_DIR, ConfigError, config_to_dict, find_config, load_config, shipped_configs
from msmae.tasks.islr import IslrConfig
from msmae.tasks.pretrain import PretrainConfig
from msmae.tasks.slt import SltConfig

REPO = Path(__file__).resolve().parents[1]
NAMES = ["pretrain/paper", "pretrain/tiny", "islr/asl_citizen", "islr/gislr", "islr/jsl", "islr/slovo", "islr/wlasl",
         "slt/csl_daily", "slt/how2sign", "slt/p14t"]


def test_configs_live_in_the_package_only():
    assert list(shipped_configs()) == NAMES
    assert CONFIG_DIR.parent == Path(msmae.__file__).resolve().parent
    assert not (REPO / "configs").exists()  # one copy: the package's


@pytest.mark.parametrize("given, expected", [
    ("wlasl", "islr/wlasl"), ("islr/wlasl", "islr/wlasl"), ("wlasl.yaml", "islr/wlasl"),
    ("configs/islr/wlasl.yaml", "islr/wlasl"), ("./configs/slt/p14t.yaml", "slt/p14t"), ("p14t", "slt/p14t"),
    ("slt/p14t", "slt/p14t"), ("pretrain/paper", "pretrain/paper"), ("tiny", "pretrain/tiny")])
def test_names_find_shipped_configs_from_any_folder(given, expected, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert find_config(given) == shipped_configs()[expected]


def test_a_users_file_wins_over_a_shipped_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "wlasl.yaml").write_text("train:\n  epochs: 7\n")
    (tmp_path / "wlasl").write_text("train:\n  epochs: 9\n")
    assert load_config(IslrConfig, "wlasl.yaml").train.epochs == 7
    assert load_config(IslrConfig, "wlasl").train.epochs == 9
    assert load_config(IslrConfig, "islr/wlasl").train.epochs == 100  # no such file here: the shipped one
    own = tmp_path / "sub" / "mine.yaml"
    own.parent.mkdir()
    own.write_text("data:\n  dataset: slovo\n")
    assert load_config(IslrConfig, own).data.dataset == "slovo"


def test_bad_names_are_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="not a file, nor a shipped config.*islr/wlasl"):
        load_config(IslrConfig, "wlsal")
    with pytest.raises(ConfigError, match="islr/wlasl is a config for islr; this command takes one for pretrain"):
        load_config(PretrainConfig, "wlasl")
    with pytest.raises(ConfigError, match="slt/p14t is a config for slt"):
        load_config(IslrConfig, "slt/p14t")


def test_an_ambiguous_short_name_names_both(tmp_path, monkeypatch):
    import msmae.config as config

    for kind in ("islr", "slt"):
        (tmp_path / kind).mkdir()
        (tmp_path / kind / "both.yaml").write_text("# x\n")
    monkeypatch.setattr(config, "CONFIG_DIR", tmp_path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="ambiguous: islr/both, slt/both"):
        find_config("both")
    assert find_config("both", "slt") == tmp_path / "slt" / "both.yaml"  # the task's own folder first


def test_msmae_configs_lists_each_with_a_description(capsys):
    assert main(["configs"]) == 0
    lines = {ln.split()[0]: ln for ln in capsys.readouterr().out.splitlines() if ln[:1].isalpha()}
    for name in NAMES:
        assert len(lines[name].split(None, 1)[1]) > 30, lines[name]
    assert "PHOENIX-2014T" in lines["slt/p14t"] and "augmentation" in lines["islr/jsl"]


@pytest.mark.parametrize("name", NAMES)
def test_msmae_configs_name_prints_the_resolved_config_which_loads_back(name, tmp_path, capsys):
    cls = {"pretrain": PretrainConfig, "islr": IslrConfig, "slt": SltConfig}[name.split("/")[0]]
    assert main(["configs", name]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"# msmae configs {name}:")
    printed = yaml.safe_load(text)
    expected = config_to_dict(load_config(cls, name))
    assert printed.keys() == expected.keys()  # the whole config, not only the file's few keys
    (tmp_path / "copy.yaml").write_text(text)  # a user saves it, edits nothing, and trains with it
    assert config_to_dict(load_config(cls, tmp_path / "copy.yaml")) == expected


def test_msmae_configs_with_overrides_and_own_files(tmp_path, capsys):
    assert main(["configs", "wlasl", "--set", "train.epochs=3"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["train"]["epochs"] == 3
    own = tmp_path / "mine.yaml"
    own.write_text("train:\n  lr: 0.5\n")
    assert main(["configs", str(own)]) == 1
    assert "--task" in capsys.readouterr().err
    assert main(["configs", str(own), "--task", "slt"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["train"]["lr"] == 0.5
    assert main(["configs", "nope"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pretrain/paper" in err


def test_version_has_one_source(capsys):
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "msmae.__version__"}
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"msmae {msmae.__version__}"


def test_citation_and_changelog():
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text(encoding="utf-8"))
    assert cff["cff-version"].startswith("1.2") and cff["title"].startswith("msmae")
    assert cff["version"] == msmae.__version__
    ref = cff["preferred-citation"]
    assert ref["title"] == ("Improving Sign Language Understanding with a Multi-Stream Masked Autoencoder Trained "
                            "on ASL Videos")
    assert [a["family-names"] for a in ref["authors"]] == ["Mo", "Vo", "Nakayama"]
    changelog = (REPO / "CHANGELOG.md").read_text(encoding="utf-8")
    assert f"## [{msmae.__version__}]" in changelog
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    last = readme.rsplit("\n## ", 1)[1]
    assert last.startswith("Citing") and "CITATION.cff" in last
