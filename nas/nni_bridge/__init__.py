"""Bridge to NNI 3.0 (optional extra ``pip install 'hwnas[nni]'``): its NAS strategies over our space.

- ``controller.name: nni:RegularizedEvolution | nni:PolicyBasedRL | nni:TPE | nni:Random`` runs
  that NNI strategy as a controller of the ordinary search (our evaluator, executors, journal).
- `model_space(space_yaml)` / `nni_evaluator(config)` give NNI users our space as an NNI
  `ModelSpace` and our proxy trainer as an NNI evaluator, for their own experiments.

NNI is imported only when one of these is used; without it the error says what to install.
"""
from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from typing import Any

from ..errors import UserError
from .names import NAMES, STRATEGIES

INSTALL = "pip install 'hwnas[nni]' (nni==3.0, pytorch-lightning, tianshou==0.5.1, gym)"


class NNIUnavailable(UserError):
    """NNI (or, for PolicyBasedRL, tianshou) is not installed."""


def check_available(name: str) -> None:
    """Raise NNIUnavailable naming what to install when a strategy's packages are missing."""
    missing = [m for m in ("nni",) + (("tianshou", "gym") if name.endswith("PolicyBasedRL") else ())
               if importlib.util.find_spec(m) is None]
    if missing:
        raise NNIUnavailable(f"controller {name!r} needs {', '.join(missing)}, which is not installed: {INSTALL}")


def build_controller(name: str, decisions: Iterable[Any], seed: int = 0, **options: Any) -> Any:
    """An NNI strategy as an ask/tell controller, by its config name (``nni:TPE`` ...)."""
    if name not in NAMES:
        raise ValueError(f"unknown NNI strategy {name!r}; allowed: {list(NAMES)}")
    check_available(name)
    _quiet_import()
    from .controller import NNI_CONTROLLERS

    return NNI_CONTROLLERS[name](decisions, seed=seed, **options)


def _quiet_import() -> None:
    """Import NNI's strategies without their import-time noise (errors still raise)."""
    import contextlib
    import io
    import warnings

    # NNI 3.0 warns about every torch module newer than it knows; gym 0.26 prints a banner on
    # stderr (tianshou imports it for PolicyBasedRL). Neither matters for the bridge.
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        import nni.nas.strategy  # noqa: F401
    import logging

    # NNI logs every sample at INFO on stdout; our progress bar and journal say the same.
    nni_log = logging.getLogger("nni")
    if nni_log.level < logging.WARNING:
        nni_log.setLevel(logging.WARNING)


def model_space(space: Any, num_classes: int = 10, in_channels: int = 3) -> Any:
    """Our space (a YAML path or mapping) as an NNI 3.0 `ModelSpace` of `nni.choice` decisions."""
    check_available("nni")
    _quiet_import()
    from .space import model_space as build

    return build(space, num_classes=num_classes, in_channels=in_channels)


def nni_evaluator(config: Any, search_seed: int = 0) -> Any:
    """Our proxy trainer (``config.data``/``config.train``) as an NNI `FunctionalEvaluator`."""
    check_available("nni")
    from .space import nni_evaluator as build

    return build(config, search_seed)


__all__ = ["NAMES", "STRATEGIES", "NNIUnavailable", "build_controller", "check_available", "model_space",
           "nni_evaluator"]
