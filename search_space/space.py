"""The MnasNet factorized hierarchical search space, defined by a YAML file.

A space maps a genotype to a flat list of categorical decisions and back; controllers only
ever see the decisions. YAML form (see `configs/space_mnas.yaml`)::

    activation: swish          # global knob, not searched
    resolution: 224            # input size the space is meant for
    stem: {channels: 32, kernel: 3, stride: 2}   # any value may be a list of choices
    head: 1280
    defaults:                  # per-stage choices, unless a stage overrides them
      op: [conv, sepconv, mbconv1, mbconv3, mbconv6]
      kernel: [3, 5]
      se: [0.0, 0.25]
      skip: [identity, none]
    stages:                    # fixed stride, choices for channels and layers
      - {stride: 1, channels: [12, 16, 20], layers: [1, 2]}

Optional, for MobileNetV3-style spaces (see `configs/space_mbv3.yaml`): a stage (or `defaults`)
may list `activation` choices (the stage's own activation; without the key its layers use the
global one), `se_gate: hsigmoid` selects MobileNetV3's SE for every stage, and `head_mix`
(choices like `head`) gives the MobileNetV3 head's width after the pool. Files without them
read, and write back through `to_dict`, exactly as before.

Every key with more than one choice becomes one decision, named ``s<i>.<key>`` for stage i
(1-based), ``stem.channels``, ``head`` and ``head_mix``.
"""
from __future__ import annotations

import copy
import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .genotype import Genotype, GenotypeError, Stage, Stem
from .vocab import ACTIVATIONS, KERNELS, MAX_RESOLUTION, OP_CHOICES, SE_GATES, SKIPS, STRIDES, check_keys
from .yamlfile import read_yaml_file

_OP_NAME = {v: k for k, v in OP_CHOICES.items()}
STAGE_KEYS = ("op", "kernel", "se", "skip", "channels", "layers")
# Keys a stage may leave out; without them the stage has no such decision (see module doc).
OPTIONAL_STAGE_KEYS = ("activation",)
_ALLOWED = {
    "op": list(OP_CHOICES),
    "kernel": list(KERNELS),
    "skip": list(SKIPS),
    "activation": list(ACTIVATIONS),
}


class SpaceError(ValueError):
    """A search-space file or a sample that does not fit the space."""


@dataclass(frozen=True)
class Decision:
    """One categorical decision: a name and its choices."""

    name: str
    choices: tuple[Any, ...]

    def __iter__(self):  # lets a Decision unpack like a (name, choices) pair
        return iter((self.name, self.choices))


def op_name(stage: Stage) -> str:
    """The op decision's choice for a stage (e.g. ``mbconv6``)."""
    key = (stage.op, stage.expansion)
    if key not in _OP_NAME:
        raise SpaceError(f"op {stage.op} with expansion {stage.expansion} is not a choice of the space")
    return _OP_NAME[key]


class SearchSpace:
    """A factorized hierarchical space of MBConv networks."""

    def __init__(self, spec: Mapping[str, Any], source: str = "<space>") -> None:
        self.source = source
        self._spec = _validate(spec, source)
        s = self._spec
        self.activation: str = s["activation"]
        self.resolution: int = s["resolution"]
        self.se_gate: str = s.get("se_gate", "sigmoid")
        self.num_stages = len(s["stages"])
        self._fixed: dict[str, Any] = {}
        decisions: list[Decision] = []

        def add(name: str, values: list[Any]) -> None:
            if len(values) == 1:
                self._fixed[name] = values[0]
            else:
                decisions.append(Decision(name, tuple(values)))

        add("stem.channels", s["stem"]["channels"])
        for i, st in enumerate(s["stages"], 1):
            for key in STAGE_KEYS + OPTIONAL_STAGE_KEYS:
                if key in st:
                    add(f"s{i}.{key}", st[key])
        add("head", s["head"])
        add("head_mix", s.get("head_mix", [0]))
        self.decisions: list[Decision] = decisions
        self._index = {d.name: d for d in decisions}

    # ---- construction ------------------------------------------------------------------
    @classmethod
    def from_yaml(cls, path: str | Path) -> SearchSpace:
        """Load a space from a YAML file (errors name the file and the key)."""
        return cls(read_yaml_file(path, SpaceError, "search space file"), source=str(path))

    def to_dict(self) -> dict[str, Any]:
        """The validated mapping form of the space (every value a list of choices)."""
        return copy.deepcopy(self._spec)

    # ---- size & sampling -----------------------------------------------------------------
    @property
    def size(self) -> int:
        """Number of distinct decision vectors."""
        return math.prod(len(d.choices) for d in self.decisions)

    def sample_decisions(self, rng: random.Random) -> dict[str, Any]:
        """A uniformly random decision vector."""
        return {d.name: rng.choice(d.choices) for d in self.decisions}

    def sample(self, rng: random.Random | int | None = None) -> Genotype:
        """A uniformly random member of the space."""
        if not isinstance(rng, random.Random):
            rng = random.Random(rng)
        return self.decode(self.sample_decisions(rng))

    # ---- decisions <-> genotype -------------------------------------------------------------
    def decode(self, sample: Mapping[str, Any]) -> Genotype:
        """The genotype a decision vector stands for; every decision must be present and valid."""
        missing = [d.name for d in self.decisions if d.name not in sample]
        if missing:
            raise SpaceError(f"sample is missing decision(s) {missing}")
        unknown = sorted(set(sample) - set(self._index))
        if unknown:
            raise SpaceError(f"sample has unknown decision(s) {unknown}")
        for d in self.decisions:
            if sample[d.name] not in d.choices:
                raise SpaceError(f"decision {d.name!r}: {sample[d.name]!r} is not one of {list(d.choices)}")

        def val(name: str) -> Any:
            return sample[name] if name in sample else self._fixed[name]

        s = self._spec
        stages = []
        for i, st in enumerate(s["stages"], 1):
            op, exp = OP_CHOICES[val(f"s{i}.op")]
            stages.append(Stage(op=op, kernel=val(f"s{i}.kernel"), expansion=exp, se=float(val(f"s{i}.se")),
                                skip=val(f"s{i}.skip"), channels=val(f"s{i}.channels"),
                                layers=val(f"s{i}.layers"), stride=st["stride"],
                                act=val(f"s{i}.activation") if "activation" in st else None))
        stem = Stem(channels=val("stem.channels"), kernel=s["stem"]["kernel"], stride=s["stem"]["stride"])
        return Genotype(stages=tuple(stages), stem=stem, head=val("head"), activation=self.activation,
                        resolution=self.resolution, se_gate=self.se_gate, head_mix=val("head_mix"))

    def encode(self, g: Genotype) -> dict[str, Any]:
        """The decision vector of a member genotype; raises SpaceError naming what does not fit.

        Activation and resolution are global knobs of the space, not decisions, and are not
        compared; the SE variant changes the weights' shapes and is. A stage's own activation is
        compared where the space lists activation choices for it; elsewhere a stage may only name
        the global one.
        """
        s = self._spec
        if len(g.stages) != self.num_stages:
            raise SpaceError(f"genotype has {len(g.stages)} stages, the space {self.num_stages}")
        if g.se_gate != self.se_gate:
            raise SpaceError(f"se_gate {g.se_gate!r} is not allowed; allowed: the space's {self.se_gate!r}")
        if g.stem.kernel != s["stem"]["kernel"] or g.stem.stride != s["stem"]["stride"]:
            raise SpaceError(f"stem k{g.stem.kernel} s{g.stem.stride} differs from the space's "
                             f"k{s['stem']['kernel']} s{s['stem']['stride']}")
        values: dict[str, Any] = {"stem.channels": g.stem.channels, "head": g.head, "head_mix": g.head_mix}
        for i, (st, sp) in enumerate(zip(g.stages, s["stages"]), 1):
            if st.stride != sp["stride"]:
                raise SpaceError(f"stage {i}: stride {st.stride} differs from the space's {sp['stride']}")
            values.update({f"s{i}.op": op_name(st), f"s{i}.kernel": st.kernel, f"s{i}.se": st.se,
                           f"s{i}.skip": st.skip, f"s{i}.channels": st.channels, f"s{i}.layers": st.layers})
            if "activation" in sp:
                values[f"s{i}.activation"] = g.stage_activation(st)
            elif st.act not in (None, g.activation):
                raise SpaceError(f"stage {i}: activation {st.act!r} is not allowed; allowed: the global "
                                 f"{g.activation!r} (the space has no per-stage activation)")
        for name, v in values.items():
            allowed = self._index[name].choices if name in self._index else (self._fixed[name],)
            if v not in allowed:
                raise SpaceError(f"decision {name!r}: {v!r} is not one of {list(allowed)}")
        return {d.name: values[d.name] for d in self.decisions}

    def contains(self, g: Genotype) -> bool:
        """Whether a genotype is a member of the space."""
        try:
            self.encode(g)
        except SpaceError:
            return False
        return True

    def describe(self) -> str:
        """A human-readable summary: decisions, choices and size."""
        lines = [f"search space {self.source}: {len(self.decisions)} decisions, size {self.size:.3e}"]
        lines += [f"  {d.name:<14} {list(d.choices)}" for d in self.decisions]
        return "\n".join(lines)


def load_space(path_or_spec: str | Path | Mapping[str, Any] | SearchSpace) -> SearchSpace:
    """A SearchSpace from a path, a mapping or a space (returned as is)."""
    if isinstance(path_or_spec, SearchSpace):
        return path_or_spec
    if isinstance(path_or_spec, Mapping):
        return SearchSpace(path_or_spec)
    return SearchSpace.from_yaml(path_or_spec)


def default_space_path() -> Path:
    """The MnasNet space at 224 shipped in `configs/space_mnas.yaml`."""
    return Path(__file__).resolve().parent.parent / "configs" / "space_mnas.yaml"


# ---- validation ------------------------------------------------------------------------------
def _validate(spec: Any, src: str) -> dict[str, Any]:
    if not isinstance(spec, Mapping):
        raise SpaceError(f"{src}: a search space must be a mapping, got {type(spec).__name__}")
    where = f"{src}: "
    check_keys(spec, {"activation", "resolution", "stem", "head", "head_mix", "se_gate", "defaults", "stages", "name",
                      "description"}, SpaceError, where)
    act = spec.get("activation", "swish")
    if not isinstance(act, str) or act not in ACTIVATIONS:
        raise SpaceError(f"{src}: key 'activation': {act!r} is not one of {list(ACTIVATIONS)}")
    res = spec.get("resolution", 224)
    if not isinstance(res, int) or isinstance(res, bool) or not 8 <= res <= MAX_RESOLUTION:
        raise SpaceError(f"{src}: key 'resolution': {res!r} must be an integer in [8, {MAX_RESOLUTION}]")
    stem = spec.get("stem", {}) or {}
    if not isinstance(stem, Mapping):
        raise SpaceError(f"{src}: key 'stem' must be a mapping with channels/kernel/stride")
    check_keys(stem, {"channels", "kernel", "stride"}, SpaceError, where, "stem.")
    out_stem = {
        "channels": _int_list(stem.get("channels", 32), src, "stem.channels"),
        "kernel": _scalar_int(stem.get("kernel", 3), src, "stem.kernel", KERNELS),
        "stride": _scalar_int(stem.get("stride", 2), src, "stem.stride", STRIDES),
    }
    head = _int_list(spec.get("head", 1280), src, "head")
    extra: dict[str, Any] = {}
    if "se_gate" in spec:
        if spec["se_gate"] not in SE_GATES:
            raise SpaceError(f"{src}: key 'se_gate': {spec['se_gate']!r} is not one of {list(SE_GATES)}")
        extra["se_gate"] = spec["se_gate"]
    if "head_mix" in spec:
        extra["head_mix"] = _int_list(spec["head_mix"], src, "head_mix")
    defaults = spec.get("defaults", {}) or {}
    if not isinstance(defaults, Mapping):
        raise SpaceError(f"{src}: key 'defaults' must be a mapping")
    check_keys(defaults, {*STAGE_KEYS, *OPTIONAL_STAGE_KEYS}, SpaceError, where, "defaults.")
    stages = spec.get("stages")
    if not isinstance(stages, list) or not stages:
        raise SpaceError(f"{src}: key 'stages' must be a non-empty list of stage mappings")
    out_stages = []
    for i, st in enumerate(stages, 1):
        prefix = f"stages[{i - 1}]."
        if not isinstance(st, Mapping):
            raise SpaceError(f"{src}: key '{prefix[:-1]}' must be a mapping, got {st!r}")
        check_keys(st, {*STAGE_KEYS, *OPTIONAL_STAGE_KEYS, "stride"}, SpaceError, where, prefix)
        merged = {**defaults, **st}
        out = {"stride": _scalar_int(merged.get("stride"), src, prefix + "stride", STRIDES)}
        for key in STAGE_KEYS + tuple(k for k in OPTIONAL_STAGE_KEYS if k in merged):
            if key not in merged:
                raise SpaceError(f"{src}: key '{prefix}{key}' is missing (and not in 'defaults')")
            vals = merged[key] if isinstance(merged[key], list) else [merged[key]]
            if not vals:
                raise SpaceError(f"{src}: key '{prefix}{key}' must list at least one choice")
            if key in _ALLOWED:
                # bool is an int (True == 1 is in KERNELS); it is never a valid choice
                bad = [v for v in vals if isinstance(v, bool) or v not in _ALLOWED[key]]
                if bad:
                    raise SpaceError(f"{src}: key '{prefix}{key}': {bad} not allowed; allowed: {_ALLOWED[key]}")
            elif key == "se":
                if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1 for v in vals):
                    raise SpaceError(f"{src}: key '{prefix}se': {vals} must be ratios in [0, 1)")
                vals = [float(v) for v in vals]
            else:
                vals = _int_list(vals, src, prefix + key)
            if len(set(vals)) != len(vals):
                raise SpaceError(f"{src}: key '{prefix}{key}': {vals} has duplicate choices")
            out[key] = vals
        out_stages.append(out)
    out_spec = {"activation": act, "resolution": res, "stem": out_stem, "head": head, "stages": out_stages}
    out_spec.update(extra)  # only when given, so older spaces keep their exact validated form
    return out_spec


def _int_list(v: Any, src: str, key: str) -> list[int]:
    vals = v if isinstance(v, list) else [v]
    if not vals or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in vals):
        raise SpaceError(f"{src}: key '{key}': {v!r} must be a positive integer or a list of them")
    return list(vals)


def _scalar_int(v: Any, src: str, key: str, allowed: Sequence[int]) -> int:
    if v not in allowed or isinstance(v, bool):
        raise SpaceError(f"{src}: key '{key}': {v!r} is not one of {list(allowed)}")
    return int(v)


def as_decisions(decisions: Iterable[Any]) -> list[Decision]:
    """Normalize `(name, choices)` pairs or Decision objects into Decisions."""
    out = []
    for d in decisions:
        name, choices = (d.name, d.choices) if isinstance(d, Decision) else d
        out.append(Decision(str(name), tuple(choices)))
    return out


__all__ = ["SearchSpace", "Decision", "SpaceError", "OP_CHOICES", "load_space", "default_space_path",
           "as_decisions", "op_name", "GenotypeError"]
