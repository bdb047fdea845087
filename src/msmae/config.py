"""Configuration: nested dataclasses with the paper's values as defaults, YAML overrides and
``--set key=value`` dotted overrides.

A task defines its config as a tree of dataclasses. ``load_config(Cls, "wlasl",
["model.size=tiny", "train.steps=200"])`` starts from the defaults, applies the YAML file (a small
override, not a full copy) and then each ``--set``. Unknown keys are errors, so a typo never
silently does nothing. The resolved config is saved with every run (``save_yaml``).

The paper's settings ship inside the package (``msmae/configs/{pretrain,islr,slt}/*.yaml``) and are
named by their path there without ``.yaml``: ``pretrain/paper``, ``islr/wlasl``, ``slt/p14t``; a name
that is unique across the folders may drop its folder (``wlasl``). A path to an existing YAML file
always wins over a shipped name.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, Iterable, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override that does not fit the config's fields."""


def config_to_dict(cfg: Any) -> dict:
    """Dataclass tree -> plain dict (for YAML/JSON)."""
    return dataclasses.asdict(cfg)


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert a YAML value to the field's declared type where that is unambiguous."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Union or origin is types.UnionType:
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: {value!r} does not fit {tp}")
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        try:
            f = float(value)
        except ValueError:
            raise ConfigError(f"{key}: expected an integer, got {value!r}") from None
        if not math.isfinite(f) or f != int(f):  # 1e309 is inf: no integer
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return int(f)
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
        if not math.isfinite(f):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return f
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return str(value)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            value = [value]
        inner = args[0] if args else Any
        out = [_coerce(v, inner, key) for v in value]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    return value


def _apply(cfg: Any, data: dict, prefix: str = "") -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {data!r}")
    types = _field_types(type(cfg))
    changes = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if k not in types:
            raise ConfigError(f"unknown config key {key!r}; known: {', '.join(sorted(types))}")
        tp = types[k]
        if _is_dataclass_type(tp):
            changes[k] = _apply(getattr(cfg, k), v or {}, key + ".")
        elif typing.get_origin(tp) is dict and isinstance(v, dict):
            # Mappings merge (so ``--set model.extra.dim=256`` adds one key).
            changes[k] = {**(getattr(cfg, k) or {}), **v}
        else:
            changes[k] = _coerce(v, tp, key)
    try:
        return dataclasses.replace(cfg, **changes)  # runs the section's own checks (__post_init__)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: {e}") from None


def parse_override(item: str, cls: type | None = None) -> tuple[list[str], Any]:
    """``"train.steps=200"`` -> (["train", "steps"], 200). The value is parsed as YAML, except for a text
    field of ``cls`` (the config's dataclass), which keeps the literal text: ``data.annotations=0755`` is
    ``'0755'``, not 493, and ``no`` stays ``'no'`` (``null`` or ``~`` still clear an optional text field)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like key=value (e.g. train.steps=200)")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override {item!r} has no key")
    path = key.split(".")
    text = _text_field(cls, path)
    if text is not None and not (text == "optional" and raw.strip() in ("null", "~", "Null", "NULL")):
        return path, raw
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return path, value


def _text_field(cls: type | None, path: list[str]) -> str | None:
    """"text" when ``path`` names a ``str`` field of the dataclass ``cls``, "optional" for ``str | None``,
    else None (another type, or no such field: the error comes when the override is applied)."""
    tp: Any = cls
    for part in path:
        if not _is_dataclass_type(tp):
            return None
        tp = _field_types(tp).get(part)
    if tp is str:
        return "text"
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and set(typing.get_args(tp)) == {str, type(None)}:
        return "optional"
    return None


def _nest(path: list[str], value: Any) -> dict:
    out: Any = value
    for part in reversed(path):
        out = {part: out}
    return out


def apply_overrides(cfg: T, overrides: Iterable[str]) -> T:
    for item in overrides or ():
        path, value = parse_override(item, type(cfg))
        cfg = _apply(cfg, _nest(path, value))
    return cfg


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    return data or {}


# ----------------------------------------------------------------------------------- shipped configs
CONFIG_DIR = Path(__file__).resolve().parent / "configs"
CONFIG_KINDS = ("pretrain", "islr", "slt")  # the folders of CONFIG_DIR, one per task


def shipped_configs() -> dict[str, Path]:
    """Every config shipped with msmae: ``{"islr/wlasl": path, ...}``, sorted by name."""
    out = {}
    for kind in CONFIG_KINDS:
        for f in sorted((CONFIG_DIR / kind).glob("*.yaml")):
            out[f"{kind}/{f.stem}"] = f
    return out


def config_description(path: str | Path) -> str:
    """The first line of a config file's leading comment (its one-line description)."""
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line.startswith("#"):
            return line.lstrip("#").strip()
        if line:
            break
    return ""


def _kind_of(cls: type | None) -> str | None:
    """``msmae.tasks.islr.IslrConfig`` -> ``"islr"``: the folder of shipped configs for that task."""
    kind = getattr(cls, "__module__", "").rsplit(".", 1)[-1]
    return kind if kind in CONFIG_KINDS else None


def find_config(name: str | Path, kind: str | None = None) -> Path:
    """A config file from a path or a shipped name.

    An existing file wins; otherwise ``name`` is looked up among :func:`shipped_configs`: ``islr/wlasl``,
    ``wlasl`` (unique, or in ``kind``'s folder), also written ``wlasl.yaml`` or ``configs/islr/wlasl.yaml``
    (the paths of a repository checkout)."""
    p = Path(name).expanduser()
    if p.is_file():
        return p
    key = str(name).replace("\\", "/").strip("/")
    for suffix in (".yaml", ".yml"):
        key = key[: -len(suffix)] if key.endswith(suffix) else key
    key = key[2:] if key.startswith("./") else key
    key = key[len("configs/"):] if key.startswith("configs/") else key  # the repository's old layout
    shipped = shipped_configs()
    if key in shipped:
        return shipped[key]
    if "/" not in key:
        if kind and f"{kind}/{key}" in shipped:
            return shipped[f"{kind}/{key}"]
        hits = [n for n in shipped if n.split("/", 1)[1] == key]
        if len(hits) == 1:
            return shipped[hits[0]]
        if hits:
            raise ConfigError(f"config {name!r} is ambiguous: {', '.join(hits)}")
    raise ConfigError(f"config file not found: {name} (not a file, nor a shipped config; `msmae configs` "
                      f"lists those: {', '.join(shipped)})")


def load_config(cls: type[T], yaml_path: str | Path | None = None, overrides: Iterable[str] = (),
                *, base: T | None = None) -> T:
    """Defaults of ``cls`` (or ``base``) <- YAML file or shipped config name <- ``key=value`` overrides."""
    cfg = base if base is not None else cls()
    if yaml_path:
        path = find_config(yaml_path, _kind_of(cls))
        kind = _kind_of(cls)
        if kind and path.parent == CONFIG_DIR / path.parent.name and path.parent.name != kind:
            raise ConfigError(f"{path.parent.name}/{path.stem} is a config for {path.parent.name}; this command "
                              f"takes one for {kind} (`msmae configs` lists them)")
        cfg = _apply(cfg, load_yaml(path))
    return apply_overrides(cfg, overrides)


def config_from_dict(cls: type[T], data: dict) -> T:
    """Rebuild a config saved by :func:`save_yaml` / :func:`config_to_dict`."""
    return _apply(cls(), data)


def save_yaml(cfg: Any, path: str | Path) -> None:
    from msmae.utils import atomic_write_text

    data = cfg if isinstance(cfg, dict) else config_to_dict(cfg)
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
