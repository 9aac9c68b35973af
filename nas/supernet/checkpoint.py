"""Supernet files: the trained supernet (what the evaluator reads) and the resumable training state.

Both are written atomically (`search_space.files.atomic_write_bytes`) and hold only tensors and
plain values, so they load with ``torch.load(..., weights_only=True)``:

- ``supernet.pt``: ``{"format": "hwnas-supernet", "version", "space", "num_classes",
  "in_channels", "bn_momentum", "kernel_sharing", "model", "meta"}``, ``space`` being the validated mapping of the
  search space (`SearchSpace.to_dict`), ``model`` the supernet's state dict;
- ``train_state.pt``: the same plus ``"step"``, ``"optimizer"`` and ``"fingerprint"`` (what
  may not change across a resume).
"""
from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from search_space.files import atomic_write_bytes
from search_space.space import SearchSpace

from ..errors import UserError
from .net import SuperNet

FORMAT = "hwnas-supernet"
TRAIN_FORMAT = "hwnas-supernet-train"
VERSION = 1


class CheckpointError(UserError):
    """A supernet file that is missing, of another format, or does not fit the space or data."""


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _cpu_state(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in net.state_dict().items()}


def supernet_payload(net: SuperNet, bn_momentum: float, meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The mapping a supernet file holds."""
    return {"format": FORMAT, "version": VERSION, "space": net.space.to_dict(), "num_classes": net.num_classes,
            "in_channels": net.in_channels, "bn_momentum": float(bn_momentum),
            "kernel_sharing": net.kernel_sharing, "model": _cpu_state(net),
            "meta": dict(meta or {})}


def save_payload(path: str | Path, payload: Mapping[str, Any]) -> Path:
    """torch.save into memory, then replace `path` atomically."""
    buf = io.BytesIO()
    torch.save(dict(payload), buf)
    return atomic_write_bytes(path, buf.getvalue())


def save_supernet(path: str | Path, net: SuperNet, bn_momentum: float, meta: Mapping[str, Any] | None = None) -> Path:
    """Write a trained supernet (weights, its space, classes and channels) atomically."""
    return save_payload(path, supernet_payload(net, bn_momentum, meta))


def read_payload(path: str | Path, data: bytes | None = None, expect: str = FORMAT) -> dict[str, Any]:
    """Load a supernet (or training state) file with weights_only=True and check its format."""
    p = Path(path)
    if data is None:
        if not p.is_file():
            raise CheckpointError(f"supernet checkpoint {str(p)!r} does not exist (train one with "
                                  f"python -m nas.supernet train CONFIG)")
        data = p.read_bytes()
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
        raise CheckpointError(f"{p}: not a readable supernet checkpoint ({type(e).__name__}: "
                              f"{' '.join(str(e).split())[:200]})") from None
    if not isinstance(obj, dict) or obj.get("format") not in (FORMAT, TRAIN_FORMAT):
        raise CheckpointError(f"{p}: not a supernet checkpoint (written by python -m nas.supernet train)")
    if obj.get("format") != expect and expect == TRAIN_FORMAT:
        raise CheckpointError(f"{p}: a finished supernet, not a training state")
    if int(obj.get("version", 0)) > VERSION:
        raise CheckpointError(f"{p}: checkpoint version {obj.get('version')} is newer than this code ({VERSION})")
    return obj


def net_from_payload(obj: Mapping[str, Any], source: str = "<checkpoint>") -> SuperNet:
    """The SuperNet a payload describes, with its weights loaded (on the CPU)."""
    space = SearchSpace(obj["space"], source=source)
    # Files written before kernel_sharing existed are centre-shared.
    net = SuperNet(space, int(obj["num_classes"]), int(obj["in_channels"]), float(obj.get("bn_momentum", 0.1)),
                   str(obj.get("kernel_sharing", "centre")))
    net.load_state_dict(obj["model"])
    return net


def load_supernet(path: str | Path, data: bytes | None = None) -> tuple[SuperNet, dict[str, Any]]:
    """(supernet on the CPU, its meta) from a file written by `save_supernet` (or a training state)."""
    obj = read_payload(path, data)
    return net_from_payload(obj, str(path)), dict(obj.get("meta", {}))


def covers(super_spec: Mapping[str, Any], spec: Mapping[str, Any]) -> str | None:
    """None when every member of space `spec` is a member of the supernet's space, else why not."""
    if super_spec["activation"] != spec["activation"]:
        return f"activation {spec['activation']} vs the supernet's {super_spec['activation']}"
    if super_spec["resolution"] != spec["resolution"]:
        return f"resolution {spec['resolution']} vs the supernet's {super_spec['resolution']}"
    if super_spec.get("se_gate", "sigmoid") != spec.get("se_gate", "sigmoid"):
        return f"se_gate {spec.get('se_gate', 'sigmoid')} vs the supernet's {super_spec.get('se_gate', 'sigmoid')}"
    if not set(spec.get("head_mix", [0])) <= set(super_spec.get("head_mix", [0])):
        return f"head_mix {spec.get('head_mix', [0])} not within {super_spec.get('head_mix', [0])}"
    a, b = super_spec["stem"], spec["stem"]
    if (a["kernel"], a["stride"]) != (b["kernel"], b["stride"]):
        return "the stem kernel or stride differs"
    if not set(b["channels"]) <= set(a["channels"]):
        return f"stem channels {b['channels']} not within {a['channels']}"
    if not set(spec["head"]) <= set(super_spec["head"]):
        return f"head {spec['head']} not within {super_spec['head']}"
    if len(spec["stages"]) != len(super_spec["stages"]):
        return f"{len(spec['stages'])} stages vs the supernet's {len(super_spec['stages'])}"
    for i, (s, t) in enumerate(zip(super_spec["stages"], spec["stages"]), 1):
        if s["stride"] != t["stride"]:
            return f"stage {i}: stride {t['stride']} vs the supernet's {s['stride']}"
        for key in sorted({*s, *t} - {"stride"}):
            vals, have = _choices(t, key, spec), _choices(s, key, super_spec)
            if not set(vals) <= set(have):
                return f"stage {i}: {key} {vals} not within the supernet's {have}"
    return None


def _choices(stage: Mapping[str, Any], key: str, spec: Mapping[str, Any]) -> list[Any]:
    """A stage's choices for `key`; a stage without activation choices runs the global activation."""
    return list(stage.get(key, [spec["activation"]] if key == "activation" else []))


__all__ = ["CheckpointError", "FORMAT", "TRAIN_FORMAT", "sha256_file", "save_supernet", "save_payload",
           "supernet_payload", "read_payload", "load_supernet", "net_from_payload", "covers"]
