"""The ask/tell interface every controller shares, and the JSON state helpers they use.

A controller sees only a list of categorical decisions. Internally a sample is a tuple of
choice indices (one per decision); `ask` turns it into a ``{name: choice}`` dict and `tell`
turns the dict back, so choices can be any values that compare with ``==`` (ints, floats,
strings). Outstanding samples (asked, not yet told) are kept in asking order and are part
of the state, so a search that is stopped and resumed can finish them.
"""
from __future__ import annotations

import base64
import json
import math
import random
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from search_space.space import Decision, as_decisions

STATE_VERSION = 1

Indices = tuple[int, ...]


class Controller(ABC):
    """A search strategy over categorical decisions with an ask/tell interface."""

    #: registry name, e.g. ``"evolution"``
    name: ClassVar[str] = ""
    #: every option the controller accepts, with its default
    OPTIONS: ClassVar[dict[str, Any]] = {}
    #: whether `tell` insists on a matching outstanding ask (ppo needs the ask's log-prob)
    TELL_REQUIRES_ASK: ClassVar[bool] = False

    def __init__(self, decisions: Iterable[Any], seed: int = 0, **options: Any) -> None:
        self.decisions: list[Decision] = _check_decisions(decisions)
        self.seed = int(seed)
        self.options: dict[str, Any] = self._resolve_options(options)
        self.sizes: list[int] = [len(d.choices) for d in self.decisions]
        # Each outstanding ask: its indices and whatever the algorithm needs back at tell time.
        self._pending: list[tuple[Indices, Any]] = []
        self.num_asked = 0
        self.num_told = 0

    # ---- the public interface ----------------------------------------------------------
    def ask(self) -> dict[str, Any]:
        """Propose one sample: a dict mapping each decision name to one of its choices."""
        idx, aux = self._propose()
        self._pending.append((idx, aux))
        self.num_asked += 1
        return self.decode(idx)

    def tell(self, sample: Mapping[str, Any], reward: float) -> None:
        """Report the reward of a sample; tells may arrive in any order."""
        idx = self.encode(sample)
        reward = float(reward)
        if not math.isfinite(reward):
            raise ValueError(f"reward must be a finite number, got {reward!r}")
        # Identical samples may be outstanding more than once: the oldest ask answers first.
        pos = next((i for i, (p, _) in enumerate(self._pending) if p == idx), None)
        if pos is None:
            if self.TELL_REQUIRES_ASK:
                raise ValueError(f"{self.name}: tell for a sample that is not outstanding: {dict(sample)}")
            aux, asked = None, False
        else:
            aux, asked = self._pending.pop(pos)[1], True
        self.num_told += 1
        self._observe(idx, reward, aux, asked)

    def outstanding(self) -> list[dict[str, Any]]:
        """Samples asked but not yet told, oldest first (e.g. to re-evaluate after a resume)."""
        return [self.decode(idx) for idx, _ in self._pending]

    @abstractmethod
    def entropy(self) -> float:
        """Entropy of the current sampling distribution in nats (for logging)."""

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly, as plain JSON-serialisable data."""
        return {
            "controller": self.name,
            "version": STATE_VERSION,
            "decisions": _decisions_json(self.decisions),
            "options": dict(self.options),
            "seed": self.seed,
            "num_asked": self.num_asked,
            "num_told": self.num_told,
            "pending": [[list(idx), self._aux_to_json(aux)] for idx, aux in self._pending],
            "algorithm": self._algorithm_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a `state_dict`; the controller must be built with the same decisions/options."""
        if state.get("controller") != self.name:
            raise ValueError(f"state is for controller {state.get('controller')!r}, not {self.name!r}")
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"state version {state.get('version')!r} is not supported (want {STATE_VERSION})")
        if state["decisions"] != _decisions_json(self.decisions):
            raise ValueError("state was saved for different decisions")
        diff = sorted(k for k in set(state["options"]) | set(self.options)
                      if state["options"].get(k) != self.options.get(k))
        if diff:
            raise ValueError(f"state was saved with different options: {diff}")
        self.seed = int(state["seed"])
        self.num_asked = int(state["num_asked"])
        self.num_told = int(state["num_told"])
        self._pending = [(tuple(int(i) for i in idx), self._aux_from_json(aux)) for idx, aux in state["pending"]]
        self._load_algorithm_state(state["algorithm"])

    # ---- encoding ----------------------------------------------------------------------
    def decode(self, idx: Indices) -> dict[str, Any]:
        """The sample dict for a tuple of choice indices."""
        return {d.name: d.choices[i] for d, i in zip(self.decisions, idx)}

    def encode(self, sample: Mapping[str, Any]) -> Indices:
        """The choice indices of a sample dict; every decision must be present and valid."""
        if not isinstance(sample, Mapping):
            raise TypeError(f"sample must be a mapping of decision name to choice, got {type(sample).__name__}")
        names = {d.name for d in self.decisions}
        missing = [d.name for d in self.decisions if d.name not in sample]
        unknown = sorted(str(k) for k in sample if k not in names)
        if missing or unknown:
            raise ValueError(f"sample does not fit the decisions: missing {missing}, unknown {unknown}")
        out = []
        for d in self.decisions:
            try:
                out.append(d.choices.index(sample[d.name]))
            except ValueError:
                raise ValueError(f"decision {d.name!r}: {sample[d.name]!r} is not one of {list(d.choices)}") from None
        return tuple(out)

    def uniform_entropy(self) -> float:
        """Entropy of uniform sampling: the sum of log(number of choices) over decisions."""
        return float(sum(math.log(n) for n in self.sizes))

    # ---- what each algorithm provides ----------------------------------------------------
    @abstractmethod
    def _propose(self) -> tuple[Indices, Any]:
        """The next sample's indices and the data `_observe` gets back with its tell."""

    @abstractmethod
    def _observe(self, idx: Indices, reward: float, aux: Any, asked: bool) -> None:
        """Learn from one told sample (``asked`` is False for samples that were never asked)."""

    @abstractmethod
    def _algorithm_state(self) -> dict[str, Any]:
        """The algorithm's own JSON state."""

    @abstractmethod
    def _load_algorithm_state(self, state: Mapping[str, Any]) -> None:
        """Restore what `_algorithm_state` returned."""

    def _aux_to_json(self, aux: Any) -> Any:
        return aux

    def _aux_from_json(self, data: Any) -> Any:
        return data

    # ---- options -----------------------------------------------------------------------
    @classmethod
    def _resolve_options(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(options) - set(cls.OPTIONS))
        if unknown:
            raise ValueError(f"unknown option(s) {unknown} for controller {cls.name!r}; "
                             f"allowed: {sorted(cls.OPTIONS)}")
        out = dict(cls.OPTIONS)
        for key, value in options.items():
            default = cls.OPTIONS[key]
            # bool is an int subclass: keep flags and numbers apart so typos fail loudly.
            if isinstance(default, bool):
                ok = isinstance(value, bool)
            elif isinstance(default, int):
                ok = isinstance(value, int) and not isinstance(value, bool)
            elif isinstance(default, float):
                ok = isinstance(value, (int, float)) and not isinstance(value, bool)
                value = float(value)
            else:
                ok = True
            if not ok:
                raise ValueError(f"option {key!r} of controller {cls.name!r} must be "
                                 f"{type(default).__name__}, got {value!r}")
            out[key] = value
        cls._check_options(out)
        return out

    @classmethod  # noqa: B027 - an optional hook
    def _check_options(cls, options: dict[str, Any]) -> None:
        """Raise ValueError for option values out of range."""


def _check_decisions(decisions: Iterable[Any]) -> list[Decision]:
    try:
        out = as_decisions(decisions)
    except (TypeError, ValueError) as e:
        raise ValueError(f"decisions must be (name, choices) pairs or Decision objects: {e}") from None
    if not out:
        raise ValueError("a controller needs at least one decision")
    seen: set[str] = set()
    for d in out:
        if d.name in seen:
            raise ValueError(f"decision name {d.name!r} appears twice")
        seen.add(d.name)
        if not d.choices:
            raise ValueError(f"decision {d.name!r} has no choices")
        # Samples are matched back to indices by value, so equal choices would be ambiguous.
        if any(d.choices.index(c) != i for i, c in enumerate(d.choices)):
            raise ValueError(f"decision {d.name!r} has repeated choices {list(d.choices)}")
    return out


def _decisions_json(decisions: list[Decision]) -> list[Any]:
    # Round-trip through JSON so the comparison at load time sees what a saved file holds.
    return json.loads(json.dumps([[d.name, list(d.choices)] for d in decisions], default=repr))


# ---- JSON helpers for RNG and tensor state ----------------------------------------------
def random_state_to_json(rng: random.Random) -> list[Any]:
    """`random.Random.getstate()` as nested lists."""
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def random_state_from_json(rng: random.Random, state: list[Any]) -> None:
    """Restore a state written by `random_state_to_json`."""
    version, internal, gauss = state
    rng.setstate((version, tuple(internal), gauss))


def tensor_to_json(t: Any) -> dict[str, Any]:
    """A tensor as dtype, shape and base64 of its bytes (exact, compact)."""
    t = t.detach().cpu().contiguous()
    return {"dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape),
            "b64": base64.b64encode(t.numpy().tobytes()).decode("ascii")}


def tensor_from_json(data: Mapping[str, Any]) -> Any:
    """The tensor written by `tensor_to_json`."""
    import numpy as np
    import torch

    arr = np.frombuffer(base64.b64decode(data["b64"]), dtype=np.dtype(data["dtype"]))
    return torch.from_numpy(arr.copy()).reshape(data["shape"])
