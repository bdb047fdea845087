"""``msmae configs [NAME]``: the configs shipped with msmae (the paper's settings per task and dataset)."""

from __future__ import annotations

import importlib

# The config dataclass of each folder of shipped configs.
CONFIG_CLASSES = {
    "pretrain": ("msmae.tasks.pretrain", "PretrainConfig"),
    "islr": ("msmae.tasks.islr", "IslrConfig"),
    "slt": ("msmae.tasks.slt", "SltConfig"),
}


def register(sub) -> None:
    p = sub.add_parser(
        "configs", help="list the shipped configs, or print one resolved (defaults + file)",
        description="Without NAME: every config shipped with msmae, with a one-line description; pass its name to "
        "--config of `msmae pretrain`, `msmae finetune islr|slt` or `msmae probe` (e.g. --config wlasl, "
        "--config slt/p14t, --config pretrain/paper). With NAME: that config resolved (msmae's defaults + the "
        "file), as YAML that can be saved, edited and passed back as --config my.yaml. A path to your own YAML "
        "file works too (with --task).")
    p.add_argument("name", nargs="?", metavar="NAME", help="a shipped config (e.g. wlasl, islr/wlasl, slt/p14t) "
                   "or a YAML file")
    p.add_argument("--task", choices=tuple(CONFIG_CLASSES), help="the task of a YAML file of your own")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="apply overrides before printing (as the training commands do)")
    p.set_defaults(func=run)


def config_class(kind: str) -> type:
    module, name = CONFIG_CLASSES[kind]
    return getattr(importlib.import_module(module), name)


def run(args) -> int:
    from pathlib import Path

    from msmae.cli import CommandError
    from msmae.config import CONFIG_DIR, ConfigError, config_description, find_config, shipped_configs

    shipped = shipped_configs()
    if not args.name:
        width = max(len(n) for n in shipped)
        for name, path in shipped.items():
            print(f"{name:<{width}}  {config_description(path)}")
        print("\n`msmae configs NAME` prints one, resolved; use it as --config NAME (the folder may be left out "
              "where the name is unique: --config wlasl).")
        return 0
    try:
        path = find_config(args.name, args.task)
        shipped_kind = path.parent.name if path.parent == CONFIG_DIR / path.parent.name else None
        kind = args.task or shipped_kind
        if kind is None:
            raise CommandError(f"{args.name}: a file of your own; say which task it configures with "
                               f"--task {{{','.join(CONFIG_CLASSES)}}}")
        text = resolved_yaml(path, kind, args.overrides)
    except ConfigError as e:
        raise CommandError(str(e)) from None
    label = f"{shipped_kind}/{path.stem}" if shipped_kind else str(Path(args.name))
    print(f"# msmae configs {label}: msmae's {kind} defaults + {path.name}"
          + (f" + {len(args.overrides)} --set" if args.overrides else "")
          + "; every key can be changed here or with --set")
    notes = [ln for ln in _leading_comments(path)]
    print("\n".join(notes + [""]) if notes else "", end="")
    print(text, end="")
    return 0


def resolved_yaml(path, kind: str, overrides=()) -> str:
    """The full config of task ``kind`` after ``path`` and ``overrides``, as YAML that loads back to the same."""
    import yaml

    from msmae.config import config_to_dict, load_config

    cfg = load_config(config_class(kind), path, overrides)
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False, allow_unicode=True)


def _leading_comments(path) -> list[str]:
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.startswith("#"):
                break
            out.append(line.rstrip("\n"))
    return out
