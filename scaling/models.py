"""One call from a (scaled) genotype YAML to a torch module, optionally with trained weights."""
from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from search_space.genotype import Genotype
from search_space.references import load_genotype


class WeightsError(ValueError):
    """A weights file that cannot be read or does not fit the network (one line)."""


def build(source: str | Path | Genotype, num_classes: int = 1000, in_channels: int = 3,
          weights: str | Path | None = None, **options: float):
    """Build the torch module of a genotype YAML / reference name / Genotype; load `weights` if given.

    Weights are read with ``torch.load(..., weights_only=True)``: a state dict, or a checkpoint
    mapping whose ``"model"`` or ``"state_dict"`` entry is one. Size limits (`max_params`,
    `max_activation_bytes`) are passed on to `search_space.model.build_model`.
    """
    from search_space.model import build_model

    g = source if isinstance(source, Genotype) else load_genotype(str(source))
    model = build_model(g, num_classes=num_classes, in_channels=in_channels, **options)
    if weights is not None:
        load_weights(model, weights, g)
    return model


def read_state_dict(path: str | Path) -> dict[str, Any]:
    """The state dict in a torch.save file, read with weights_only=True; WeightsError says what is wrong."""
    import torch

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"weights file {str(p)!r} does not exist")
    if p.stat().st_size == 0:
        raise WeightsError(f"weights file {p}: empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about pickle protocols on stderr
            state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load raises anything from KeyError to RuntimeError on a bad file
        raise WeightsError(f"weights file {p}: {_load_failure(e)}") from None
    if isinstance(state, Mapping):
        for key in ("model", "state_dict"):
            if isinstance(state.get(key), Mapping):
                state = state[key]
                break
    if not isinstance(state, Mapping):
        raise WeightsError(f"weights file {p}: holds a {type(state).__name__}, not a state dict "
                           f"(a mapping of parameter names to tensors, e.g. torch.save(model.state_dict(), ...))")
    for k, v in state.items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            raise WeightsError(f"weights file {p}: entry {k!r} is a {type(v).__name__}, not a named tensor")
    return dict(state)


def load_weights(model: Any, path: str | Path, genotype: Genotype) -> None:
    """Load a weights file into `model`; missing, unexpected or misshapen keys are named in one line."""
    state = read_state_dict(path)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
              if k in state and state[k].shape != v.shape]
    problems = []
    if missing:
        problems.append(f"missing keys {_few(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_few(unexpected)}")
    if shapes:
        problems.append(f"shapes differ (file vs network) {_few(shapes)}")
    if problems:
        raise WeightsError(f"{path}: weights do not fit {genotype.to_string()}: {'; '.join(problems)}")
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = " ".join(str(e).split())[:300]
        raise WeightsError(f"{path}: weights do not fit {genotype.to_string()}: {first}") from None


def _load_failure(e: Exception) -> str:
    """What a torch.load failure means for the user, in a few words."""
    import pickle

    text = str(e)
    if isinstance(e, pickle.UnpicklingError) and "weights only" in text.lower():
        m = re.search(r"Unsupported [^\n]*?(?= was not|\n|$)", text)
        why = f" ({m.group(0).strip()})" if m else ""
        return ("refused by torch.load(weights_only=True): it holds Python objects, not only tensors" + why
                + "; save the state dict alone: torch.save(model.state_dict(), path)")
    if isinstance(e, EOFError) or "zip archive" in text or "central directory" in text:
        return "truncated or corrupt torch.save file"
    return f"not a torch.save file ({type(e).__name__}: {' '.join(text.split())[:120]})"


def _few(items: list[str], n: int = 5) -> str:
    shown = ", ".join(items[:n])
    return f"[{shown}]" + (f" and {len(items) - n} more" if len(items) > n else "")
