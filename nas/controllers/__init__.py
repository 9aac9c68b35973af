"""Search controllers with one ask/tell interface over categorical decisions.

    >>> from nas.controllers import build
    >>> ctl = build("evolution", [("op", ["conv", "mbconv6"]), ("kernel", [3, 5])], seed=1)
    >>> sample = ctl.ask()           # {"op": ..., "kernel": ...}
    >>> ctl.tell(sample, 0.7)

See docs/controllers.md for each algorithm's options.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .base import Controller
from .evolution import RegularizedEvolution
from .ppo import PPOController
from .random_search import RandomSearch

CONTROLLERS: dict[str, type[Controller]] = {
    cls.name: cls for cls in (RandomSearch, RegularizedEvolution, PPOController)
}


def build(name: str, decisions: Iterable[Any], seed: int = 0, **options: Any) -> Controller:
    """A controller by name (`random`, `evolution`, `ppo`) over `(name, choices)` pairs or Decisions."""
    if name not in CONTROLLERS:
        raise ValueError(f"unknown controller {name!r}; allowed: {sorted(CONTROLLERS)}")
    return CONTROLLERS[name](decisions, seed=seed, **options)


def default_options(name: str) -> dict[str, Any]:
    """The options a controller accepts, with their defaults."""
    if name not in CONTROLLERS:
        raise ValueError(f"unknown controller {name!r}; allowed: {sorted(CONTROLLERS)}")
    return dict(CONTROLLERS[name].OPTIONS)


__all__ = ["build", "default_options", "Controller", "CONTROLLERS", "RandomSearch",
           "RegularizedEvolution", "PPOController"]
