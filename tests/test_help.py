"""Every command's --help says what it reads, shows one example that parses as written (its --set keys accepted
by that command's config), and names a documentation page that exists."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from msmae.cli import build_parser
from msmae.commands._help import HELP
from msmae.config import load_config

ROOT = Path(__file__).resolve().parents[1]


def _commands(parser: argparse.ArgumentParser, prefix: str = ""):
    """(command path, parser) of every command and sub-command that runs something."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                path = f"{prefix} {name}".strip()
                if any(isinstance(a, argparse._SubParsersAction) for a in sub._actions):
                    yield from _commands(sub, path)
                else:
                    yield path, sub


PARSER = build_parser()
COMMANDS = dict(_commands(PARSER))


def _config_class(args):
    from msmae.tasks.islr import IslrConfig
    from msmae.tasks.pretrain import PretrainConfig
    from msmae.tasks.slt import SltConfig

    if args.command == "pretrain":
        return PretrainConfig
    if args.command == "probe" or getattr(args, "task", None) == "islr":
        return IslrConfig
    if getattr(args, "task", None) == "slt":
        return SltConfig
    if args.command == "configs":
        from msmae.commands.configs import CONFIG_CLASSES  # noqa: F401  (the name decides the class)
        from msmae.config import find_config

        return {"islr": IslrConfig, "slt": SltConfig, "pretrain": PretrainConfig}[find_config(args.name).parent.name]
    return None


def test_every_command_has_help_entry():
    assert sorted(COMMANDS) == sorted(HELP)


@pytest.mark.parametrize("command", sorted(HELP))
def test_help_example_parses_and_its_set_keys_are_accepted(command, capsys):
    parser = COMMANDS[command]
    text = parser.format_help()
    inputs, example, page = HELP[command]
    assert f"inputs: {inputs}" in " ".join(text.split())
    assert f"\n  {example}\n" in text  # on one line, copied as is
    assert f"docs/{page}.md" in text and (ROOT / "docs" / f"{page}.md").is_file()
    words = shlex.split(example)
    assert words[0] == "msmae"
    args = PARSER.parse_args(words[1:])  # argparse exits (SystemExit) on an example that does not parse
    assert getattr(args, "func", None)
    cls = _config_class(args)
    if cls is not None:
        load_config(cls, getattr(args, "config", None) or (args.name if args.command == "configs" else None),
                    args.overrides)
    # every `--set KEY=...` the help mentions is a key of this command's config
    for item in re.findall(r"--set\s+([a-z_]\w*(?:\.\w+)+=\S+?)[\s)]", " ".join(text.split()) + " "):
        assert cls is not None, f"{command}: --set in a command without a config"
        load_config(cls, None, [item])


def test_msmae_help_points_to_the_documentation():
    text = " ".join(PARSER.format_help().split())
    assert "msmae COMMAND --help" in text and "docs/index.md" in text and (ROOT / "docs" / "index.md").is_file()


@pytest.mark.parametrize("command", sorted(HELP))
def test_help_speaks_to_users_not_of_how_msmae_was_made(command):
    from test_docs import internal_wording

    found = internal_wording(COMMANDS[command].format_help())
    assert not found, f"msmae {command} --help: wording from how msmae was made: {found}"


@pytest.mark.parametrize("command", ["finetune islr", "probe", "finetune slt"])
def test_dataset_help_says_what_each_format_expects(command):
    action = next(a for a in COMMANDS[command]._actions if "--dataset" in a.option_strings)
    for name in action.choices:
        assert f"{name}: --annotations" in action.help, f"msmae {command} --help: --dataset {name} is not explained"
