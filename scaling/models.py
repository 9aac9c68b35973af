"""One call from a (scaled) genotype YAML to a torch module, optionally with trained weights."""
from __future__ import annotations

from pathlib import Path

from search_space.genotype import Genotype
from search_space.references import load_genotype


def build(source: str | Path | Genotype, num_classes: int = 1000, in_channels: int = 3,
          weights: str | Path | None = None, **options: float):
    """Build the torch module of a genotype YAML / reference name / Genotype; load `weights` if given.

    Weights are read with ``torch.load(..., weights_only=True)``: a state dict, or a checkpoint
    mapping whose ``"model"`` or ``"state_dict"`` entry is one.
    """
    import torch

    from search_space.model import build_model

    g = source if isinstance(source, Genotype) else load_genotype(str(source))
    model = build_model(g, num_classes=num_classes, in_channels=in_channels, **options)
    if weights is not None:
        p = Path(weights)
        if not p.is_file():
            raise FileNotFoundError(f"weights file {str(p)!r} does not exist")
        state = torch.load(p, map_location="cpu", weights_only=True)
        if isinstance(state, dict):
            for key in ("model", "state_dict"):
                if key in state and isinstance(state[key], dict):
                    state = state[key]
                    break
        try:
            model.load_state_dict(state)
        except RuntimeError as e:
            first = str(e).strip().splitlines()[0]
            raise ValueError(f"{p}: weights do not fit {g.to_string()}: {first}") from None
    return model
