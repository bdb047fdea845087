from dataclasses import dataclass, field

import pytest

from msmae.config import ConfigError, config_from_dict, config_to_dict, load_config, save_yaml


@dataclass
class Inner:
    size: str = "paper"
    ratio: float = 0.5
    extra: dict = field(default_factory=dict)


@dataclass
class Outer:
    model: Inner = field(default_factory=Inner)
    steps: int = 10
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    init: str | None = None
    lr: float | None = None
    flag: bool = False


def test_defaults_yaml_and_overrides(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("model:\n  size: tiny\nsteps: 50\n")
    cfg = load_config(Outer, y, ["steps=2e3", "model.ratio=0.7", "lr=3e-4", "flag=true", "betas=[0.8, 0.9]",
                                 "model.extra.dim=64"])
    assert cfg.model.size == "tiny" and cfg.steps == 2000 and cfg.model.ratio == 0.7
    assert cfg.lr == pytest.approx(3e-4) and cfg.flag is True and cfg.betas == [0.8, 0.9]
    assert cfg.model.extra == {"dim": 64}
    assert load_config(Outer, None, ["init=null"]).init is None


@pytest.mark.parametrize("bad", ["model.siz=1", "steps=abc", "steps=1.5", "nokey", "model=3", "flag=maybe"])
def test_bad_overrides_are_errors(bad):
    with pytest.raises(ConfigError):
        load_config(Outer, None, [bad])


def test_missing_and_invalid_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(Outer, tmp_path / "nope.yaml")
    y = tmp_path / "bad.yaml"
    y.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(Outer, y)


def test_round_trip(tmp_path):
    cfg = load_config(Outer, None, ["model.size=tiny", "steps=7"])
    save_yaml(cfg, tmp_path / "c.yaml")
    assert load_config(Outer, tmp_path / "c.yaml") == cfg
    assert config_from_dict(Outer, config_to_dict(cfg)) == cfg


@pytest.mark.parametrize("raw", ["0755", "no", "1.10", "true", "1e3", "[a, b]", "{x: 1}", "a: b", "'q'", ""])
def test_set_keeps_the_literal_text_of_a_text_field(raw):
    assert load_config(Outer, None, [f"model.size={raw}"]).model.size == raw
    assert load_config(Outer, None, [f"init={raw}"]).init == raw
    assert load_config(Outer, None, ["init=~"]).init is None
    assert load_config(Outer, None, ["steps=12", "flag=no"]) == Outer(steps=12, flag=False)  # other types: YAML


def test_set_on_a_task_config_keeps_paths_as_written():
    from msmae.tasks.islr import IslrConfig

    cfg = load_config(IslrConfig, None, ["data.annotations=0755", "data.poses=no", "data.dataset=1.10"])
    assert (cfg.data.annotations, cfg.data.poses, cfg.data.dataset) == ("0755", "no", "1.10")
