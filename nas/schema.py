"""Typed configs: plain YAML mappings validated into (nested) dataclasses with one-line errors.

Each field of a section dataclass is described by its type hint plus `option(...)` metadata
(allowed choices, a numeric range). `build(cls, mapping)` checks every key and value and raises
`ConfigError` naming the file, the key, the value and what is allowed; `apply_sets` merges
``--set a.b=value`` overrides (values parsed as YAML). Any tool can reuse this with its own
top-level dataclass (the scaling grid search reuses the `data` and `train` sections).
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Mapping
from typing import Any

import yaml

from .errors import UserError


class ConfigError(UserError):
    """A mistake in a config: one line that names the key, the value and what is allowed."""


def option(default: Any = None, *, choices: tuple[Any, ...] | None = None, lo: float | None = None,
           hi: float | None = None, lo_open: bool = False, hi_open: bool = False, factory: Any = None,
           doc: str = "") -> Any:
    """A dataclass field with validation metadata: allowed choices and a range [lo, hi] (open ends optional)."""
    meta = {"choices": choices, "lo": lo, "hi": hi, "lo_open": lo_open, "hi_open": hi_open, "doc": doc}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def closest(word: str, allowed: list[str]) -> str:
    """' (did you mean X?)' for the closest allowed word, or ''."""
    near = difflib.get_close_matches(str(word), [str(a) for a in allowed], n=1, cutoff=0.6)
    return f" (did you mean {near[0]!r}?)" if near else ""


def _origin(origins: Mapping[str, str], key: str, default: str) -> str:
    # A value set on the command line is blamed on --set, not on the file.
    for k, src in origins.items():
        if key == k or key.startswith(k + ".") or k.startswith(key + "."):
            return src
    return default


def build(cls: type, data: Mapping[str, Any] | None, where: str, prefix: str = "",
          origins: Mapping[str, str] | None = None) -> Any:
    """Validate a mapping into dataclass `cls`; raises ConfigError on the first mistake."""
    origins = origins or {}
    data = {} if data is None else data
    if not isinstance(data, Mapping):
        src = _origin(origins, prefix[:-1], where)
        raise ConfigError(f"{src}: key '{prefix[:-1] or '<top>'}' must be a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            src = _origin(origins, prefix + str(key), where)
            raise ConfigError(f"{src}: unknown key '{prefix}{key}'{closest(key, list(fields))}; "
                              f"allowed: {', '.join(fields)}")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, f in fields.items():
        key = prefix + name
        if name not in data:
            continue  # the dataclass default
        src = _origin(origins, key, where)
        values[name] = _check(hints[name], data[name], key, f.metadata, src, origins)
    try:
        return cls(**values)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: section '{prefix[:-1] or '<top>'}': {e}") from None


def _check(tp: Any, value: Any, key: str, meta: Mapping[str, Any], src: str,
           origins: Mapping[str, str]) -> Any:
    """Check (and gently convert) one value against a type hint and the field's metadata."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return build(tp, value, src, key + ".", origins)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            if type(None) in args:
                return None
            raise ConfigError(f"{src}: key '{key}' must be set (got null)")
        inner = [a for a in args if a is not type(None)]
        errors = []
        for a in inner:
            try:
                return _check(a, value, key, meta, src, origins)
            except ConfigError as e:
                errors.append(e)
        if len(inner) == 1:
            raise errors[0]
        raise ConfigError(f"{src}: key '{key}': {value!r} must be one of the types "
                          f"{' or '.join(_type_name(a) for a in inner)}")
    if value is None and tp is not Any:
        raise ConfigError(f"{src}: key '{key}' must be {_type_name(tp)} (got null)")
    if tp is Any:
        out = value
    elif tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{src}: key '{key}': {value!r} is not a boolean (true/false)")
        out = value
    elif tp is int:
        out = _as_int(value)
        if out is None:
            raise ConfigError(f"{src}: key '{key}': {value!r} is not an integer")
    elif tp is float:
        out = _as_float(value)
        if out is None:
            raise ConfigError(f"{src}: key '{key}': {value!r} is not a number")
    elif tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{src}: key '{key}': {value!r} is not a string")
        out = value
    elif origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{src}: key '{key}': {value!r} is not a list")
        (item,) = args or (Any,)
        out = [_check(item, v, f"{key}[{i}]", {}, src, origins) for i, v in enumerate(value)]
    elif origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{src}: key '{key}': {value!r} is not a mapping")
        out = dict(value)
    else:  # pragma: no cover - a schema mistake, not a user's
        raise TypeError(f"unsupported config type {tp!r} for {key}")
    _check_meta(out, key, meta, src, value)
    return out


def _check_meta(value: Any, key: str, meta: Mapping[str, Any], src: str, shown: Any = None) -> None:
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(f"{src}: key '{key}': {value!r} is not one of {list(choices)}"
                          f"{closest(str(value), [str(c) for c in choices])}")
    lo, hi = meta.get("lo"), meta.get("hi")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and (lo is not None or hi is not None):
        bad = (lo is not None and (value <= lo if meta.get("lo_open") else value < lo)) or \
              (hi is not None and (value >= hi if meta.get("hi_open") else value > hi))
        if bad or (isinstance(value, float) and not math.isfinite(value)):
            raise ConfigError(f"{src}: key '{key}': {shown if shown is not None else value!r} is out of range; "
                              f"allowed: {_range(meta)}")


def _range(meta: Mapping[str, Any]) -> str:
    lo, hi = meta.get("lo"), meta.get("hi")
    left = "" if lo is None else f"{lo} {'<' if meta.get('lo_open') else '<='} "
    right = "" if hi is None else f" {'<' if meta.get('hi_open') else '<='} {hi}"
    return f"{left}value{right}"


def _as_int(v: Any) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    f = _as_float(v)
    return int(f) if f is not None and math.isfinite(f) and f == int(f) else None


def _as_float(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):  # PyYAML reads 1e-3 (no dot) as a string: accept it as the number it is
        try:
            return float(v)
        except ValueError:
            return None
    return None


def _type_name(tp: Any) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "a boolean"}
    if tp in names:
        return names[tp]
    if typing.get_origin(tp) is list:
        return "a list"
    if typing.get_origin(tp) is dict or tp is dict or dataclasses.is_dataclass(tp):
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


def key_exists(cls: type, dotted: str) -> None:
    """Raise ConfigError unless `dotted` names a key of `cls` (anything below a free-form dict is allowed)."""
    parts = dotted.split(".")
    tp: Any = cls
    for i, part in enumerate(parts):
        if not dataclasses.is_dataclass(tp):
            if typing.get_origin(tp) is dict or tp is dict or _is_optional_dict(tp):
                return
            raise ConfigError(f"--set {dotted}: key '{'.'.join(parts[:i])}' has no sub-keys")
        fields = {f.name: f for f in dataclasses.fields(tp)}
        if part not in fields:
            prefix = ".".join(parts[:i])
            raise ConfigError(f"--set {dotted}: unknown key '{dotted}'{closest(part, list(fields))}; "
                              f"allowed{' under ' + repr(prefix) if prefix else ''}: {', '.join(fields)}")
        tp = typing.get_type_hints(tp)[part]
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        if typing.get_origin(tp) in (typing.Union, types.UnionType) and len(inner) == 1:
            tp = inner[0]


def _is_optional_dict(tp: Any) -> bool:
    return any(typing.get_origin(a) is dict or a is dict for a in typing.get_args(tp))


def apply_sets(cls: type, data: Mapping[str, Any], sets: list[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """Merge ``a.b=value`` overrides (YAML-parsed values) into a copy of `data`; returns it and key origins."""
    out: dict[str, Any] = copy.deepcopy(dict(data))
    origins: dict[str, str] = {}
    for item in sets:
        if "=" not in item:
            raise ConfigError(f"--set {item}: expected key=value, e.g. --set objective.target=200M")
        dotted, text = item.split("=", 1)
        dotted = dotted.strip()
        if not dotted or any(not p for p in dotted.split(".")):
            raise ConfigError(f"--set {item}: expected key=value with a dotted key, e.g. train.lr=0.1")
        key_exists(cls, dotted)
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as e:
            raise ConfigError(f"--set {item}: value {text!r} is not valid YAML ({str(e).splitlines()[0]})") from None
        node = out
        parts = dotted.split(".")
        for p in parts[:-1]:
            if not isinstance(node.get(p), dict):
                node[p] = {}
            node = node[p]
        node[parts[-1]] = value
        origins[dotted] = f"--set {item}"
    return out, origins


def to_dict(obj: Any) -> dict[str, Any]:
    """A dataclass config as a plain mapping (the form written to a run's config.yaml)."""
    return dataclasses.asdict(obj)


__all__ = ["ConfigError", "option", "build", "apply_sets", "key_exists", "to_dict", "closest"]
