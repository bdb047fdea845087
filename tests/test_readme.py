"""Every ``msmae`` command line in the README parses as written (sub-commands, flags, choices), and the
configs and ``--set`` overrides it names load into the task's config. The commands themselves run in the
task tests and the demo; this catches a README that drifts from the command line."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from msmae.cli import build_parser

REPO = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh)\n(.*?)```", text, flags=re.S)
    cmds = []
    for block in blocks:
        joined = re.sub(r"\\\n\s*", " ", block)  # line continuations
        for line in joined.splitlines():
            line = line.split(" #")[0].strip()
            if line.startswith("msmae "):
                cmds.append(line)
            elif "-m msmae " in line:
                cmds.append("msmae " + line.split("-m msmae ", 1)[1])
    return cmds


COMMANDS = readme_commands()


def test_the_readme_shows_every_command():
    assert len(COMMANDS) >= 20
    shown = {c.split()[1] for c in COMMANDS}
    assert {"inspect", "extract", "pack", "pretrain", "finetune", "probe", "evaluate", "predict", "attention",
            "score"} <= shown
    assert any(c.startswith("msmae finetune slt") for c in COMMANDS)
    assert sum("torchrun" in line for line in (REPO / "README.md").read_text().splitlines()) >= 2


@pytest.mark.parametrize("cmd", COMMANDS)
def test_readme_command_parses_and_its_config_loads(cmd, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # the README's configs are names shipped in the package, not repository paths
    argv = [a for a in shlex.split(cmd)[1:] if a != "..."]
    argv = argv[:argv.index(">")] if ">" in argv else argv  # a shell redirection is not the command's
    if argv == ["--version"]:
        with pytest.raises(SystemExit) as e:
            build_parser().parse_args(argv)
        assert e.value.code == 0
        return
    args = build_parser().parse_args(argv)  # SystemExit (an argparse error) fails the test
    assert getattr(args, "func", None) is not None, cmd
    if getattr(args, "config", None):
        from msmae.config import CONFIG_DIR, find_config

        assert not Path(args.config).suffix, f"{cmd}: name a shipped config (e.g. wlasl), not a file"
        assert find_config(args.config).is_relative_to(CONFIG_DIR), f"{cmd}: no shipped config {args.config}"
    if args.command == "pretrain":
        from msmae.config import load_config
        from msmae.tasks.pretrain import PretrainConfig

        cfg = load_config(PretrainConfig, args.config, args.overrides)
        for item in args.overrides:
            key, value = item.split("=", 1)
            section, field = key.split(".")
            assert str(getattr(getattr(cfg, section), field)) == value
    elif args.command in ("finetune", "probe"):
        if getattr(args, "task", None) == "slt" or "slt" in cmd.split()[:3]:
            from msmae.tasks.slt import config_from_args
        else:
            from msmae.tasks.islr import config_from_args
        cfg = config_from_args(args)
        assert cfg.init == args.init
