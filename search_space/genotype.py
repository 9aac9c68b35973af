"""Genotype: an immutable description of one MBConv network, with string and YAML forms.

String grammar (one place; `parse` and `Genotype.to_string` are its only readers/writers)::

    genotype := global ":" stem ( ":" stage )+ ":" head
    global   := ACT "_r" RESOLUTION ["_hsigmoid"]      e.g. swish_r224, hswish_r224_hsigmoid
    stem     := "stem_c" CH "_k" K "_s" S              e.g. stem_c32_k3_s2
    stage    := OP "_r" LAYERS "_k" K "_s" S ["_e" E] "_c" CH ["_se" RATIO] ["_noskip"] ["_" ACT]
    head     := "head_c" CH ["_m" MIX]                 e.g. head_c1280, head_c960_m1280
    OP       := "ir" (MBConv) | "ds" (depthwise-separable) | "cn" (regular conv)
    ACT      := "swish" | "relu" | "hswish"            (search_space.vocab.ACTIVATIONS)

`_e` is written for `ir` only (the expansion of `ds`/`cn` is always 1); it is an integer or,
as timm writes MobileNetV3-Large, a float such as ``e2.5`` (expanded width:
`search_space.rounding.expanded_channels`). `_se` is written when the SE ratio is non-zero;
`_noskip` when the stage asks for no identity residual; a trailing ACT when the stage has its
own activation (the global one, which the stem and head use, otherwise). `_hsigmoid` selects
MobileNetV3's SE for every stage (hard-sigmoid gate, ReLU inside, squeeze of the expanded
width; `search_space.rounding.squeeze_channels`) instead of EfficientNet's. `_m` gives the
MobileNetV3 head: after the pool a 1x1 (linear) layer to MIX channels with bias and the global
activation, no BN, then dropout and the classifier. Examples: EfficientNet-B0's stage 2
``ir_r2_k3_s2_e6_c24_se0.25``; MobileNetV3-Large's ``ir_r3_k5_s2_e3_c40_se0.25_relu``.
"""
from __future__ import annotations

import math
import operator
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from .vocab import ACTIVATIONS, KERNELS, MAX_RESOLUTION, OPS, SE_GATES, SKIPS, STRIDES, check_keys


class GenotypeError(ValueError):
    """A genotype string or mapping that does not describe a valid network."""

    def __init__(self, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        # The message without its part, so a reader that knows where the part came from
        # (stages[2] of a file, a string token) can name it instead.
        self.detail = detail


@dataclass(frozen=True)
class Stem:
    """The first convolution: channels, kernel and stride."""

    channels: int = 32
    kernel: int = 3
    stride: int = 2

    def __post_init__(self) -> None:
        _set(self, "channels", _integer("stem", "channels", self.channels))
        _set(self, "kernel", _integer("stem", "kernel", self.kernel, choices=KERNELS))
        _set(self, "stride", _integer("stem", "stride", self.stride, choices=STRIDES))


@dataclass(frozen=True)
class Stage:
    """One stage of identical layers; only the first layer has the stride; `act` None: the global activation."""

    op: str
    kernel: int
    expansion: int | float
    se: float
    skip: str
    channels: int
    layers: int
    stride: int
    act: str | None = None

    def __post_init__(self) -> None:
        part = "stage"
        _choice(part, "op", self.op, OPS)
        _set(self, "kernel", _integer(part, "kernel", self.kernel, choices=KERNELS))
        _set(self, "expansion", _expansion(part, self.expansion))
        if self.op != "ir" and self.expansion != 1:
            raise _field_error(part, "expansion", self.expansion, f"1 (op {self.op!r} has no expansion)")
        se = self.se
        if isinstance(se, bool) or not isinstance(se, (int, float)) or not 0.0 <= se < 1.0:
            raise _field_error(part, "se", se, "a ratio in [0, 1)")
        _set(self, "se", float(se))
        _choice(part, "skip", self.skip, SKIPS)
        _set(self, "channels", _integer(part, "channels", self.channels))
        _set(self, "layers", _integer(part, "layers", self.layers))
        _set(self, "stride", _integer(part, "stride", self.stride, choices=STRIDES))
        if self.act is not None:
            _choice(part, "activation", self.act, ACTIVATIONS)

    def to_string(self) -> str:
        """The stage's block string, e.g. ``ir_r2_k3_s2_e6_c24_se0.25``."""
        parts = [self.op, f"r{self.layers}", f"k{self.kernel}", f"s{self.stride}"]
        if self.op == "ir":
            parts.append(f"e{self.expansion}")
        parts.append(f"c{self.channels}")
        if self.se:
            parts.append(f"se{_fmt_float(self.se)}")
        if self.skip == "none":
            parts.append("noskip")
        if self.act is not None:
            parts.append(self.act)
        return "_".join(parts)


@dataclass(frozen=True)
class Genotype:
    """A whole network: activation, input resolution, stem, stages, head width, SE variant and head form.

    `se_gate` picks the SE variant of every stage (see `search_space.vocab.SE_GATES`);
    `head_mix` > 0 is the MobileNetV3 head's width after the pool (0: EfficientNet's head).
    """

    stages: tuple[Stage, ...]
    stem: Stem = field(default_factory=Stem)
    head: int = 1280
    activation: str = "swish"
    resolution: int = 224
    se_gate: str = "sigmoid"
    head_mix: int = 0

    def __post_init__(self) -> None:
        stages = self.stages
        if not isinstance(stages, tuple):
            if isinstance(stages, (str, bytes, Mapping)) or not hasattr(stages, "__iter__"):
                raise _field_error("genotype", "stages", stages, "a non-empty sequence of Stage")
            stages = tuple(stages)
            object.__setattr__(self, "stages", stages)
        if not stages:
            raise _field_error("genotype", "stages", stages, "a non-empty sequence of Stage")
        for i, st in enumerate(stages):
            if not isinstance(st, Stage):
                raise _field_error(f"stages[{i}]", "type", type(st).__name__, "a Stage")
        if not isinstance(self.stem, Stem):
            raise _field_error("stem", "type", type(self.stem).__name__, "a Stem")
        _set(self, "head", _integer("head", "channels", self.head))
        _choice("genotype", "activation", self.activation, ACTIVATIONS)
        _set(self, "resolution", _integer("genotype", "resolution", self.resolution, hi=MAX_RESOLUTION))
        _choice("genotype", "se_gate", self.se_gate, SE_GATES)
        _set(self, "head_mix", _integer("head", "mix", self.head_mix, lo=0))

    # ---- string form -------------------------------------------------------------------
    def to_string(self) -> str:
        """The compact string form (grammar in the module docstring)."""
        s = self.stem
        glob = f"{self.activation}_r{self.resolution}" + ("" if self.se_gate == "sigmoid" else f"_{self.se_gate}")
        tokens = [glob, f"stem_c{s.channels}_k{s.kernel}_s{s.stride}"]
        tokens += [st.to_string() for st in self.stages]
        tokens.append(f"head_c{self.head}" + (f"_m{self.head_mix}" if self.head_mix else ""))
        return ":".join(tokens)

    def __str__(self) -> str:
        return self.to_string()

    # ---- YAML / mapping form -------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A plain mapping (the YAML form); `Genotype.from_dict` reads it back exactly.

        The MobileNetV3 fields (`se_gate`, `head_mix`, a stage's `activation`) appear only when
        set, so older genotypes keep their exact form.
        """
        stages = []
        for st in self.stages:
            d: dict[str, Any] = {"op": st.op, "kernel": st.kernel, "expansion": st.expansion, "se": st.se,
                                 "skip": st.skip, "channels": st.channels, "layers": st.layers, "stride": st.stride}
            if st.act is not None:
                d["activation"] = st.act
            stages.append(d)
        out: dict[str, Any] = {
            "activation": self.activation,
            "resolution": self.resolution,
            "stem": {"channels": self.stem.channels, "kernel": self.stem.kernel, "stride": self.stem.stride},
            "stages": stages,
            "head": self.head,
        }
        if self.head_mix:
            out["head_mix"] = self.head_mix
        if self.se_gate != "sigmoid":
            out["se_gate"] = self.se_gate
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Genotype:
        """Read the mapping form; unknown or missing keys are errors naming the key."""
        if not isinstance(data, Mapping):
            raise GenotypeError(f"a genotype mapping is expected, got {type(data).__name__}")
        allowed = {"activation", "resolution", "stem", "stages", "head", "head_mix", "se_gate", "name", "genotype",
                   "meta"}
        check_keys(data, allowed, GenotypeError)
        if "genotype" in data and "stages" not in data:
            return parse(str(data["genotype"]))
        stem_d = data.get("stem", {}) or {}
        if not isinstance(stem_d, Mapping):
            raise _field_error("genotype", "stem", stem_d, "a mapping of channels, kernel, stride")
        check_keys(stem_d, {"channels", "kernel", "stride"}, GenotypeError, prefix="stem.")
        stages_d = data.get("stages")
        if not isinstance(stages_d, list) or not stages_d:
            raise GenotypeError("genotype key 'stages' must be a non-empty list of stage mappings")
        stages = []
        keys = ("op", "kernel", "expansion", "se", "skip", "channels", "layers", "stride")
        for i, sd in enumerate(stages_d):
            where = f"stages[{i}]"
            if not isinstance(sd, Mapping):
                raise GenotypeError(f"{where} must be a mapping, got {sd!r}")
            check_keys(sd, {*keys, "activation"}, GenotypeError, prefix=f"{where}.")
            missing = [k for k in keys if k not in sd and k not in ("expansion", "se", "skip")]
            if missing:
                raise GenotypeError(f"{where} is missing key(s) {missing}")
            with _part(where):
                stages.append(Stage(op=sd["op"], kernel=sd["kernel"], expansion=sd.get("expansion", 1),
                                    se=sd.get("se", 0.0), skip=sd.get("skip", "identity"),
                                    channels=sd["channels"], layers=sd["layers"], stride=sd["stride"],
                                    act=sd.get("activation")))
        g = cls(stages=tuple(stages), stem=Stem(**stem_d), head=data.get("head", 1280),
                activation=data.get("activation", "swish"), resolution=data.get("resolution", 224),
                se_gate=data.get("se_gate", "sigmoid"), head_mix=data.get("head_mix", 0))
        if "genotype" in data and parse(str(data["genotype"])) != g:
            raise GenotypeError("the 'genotype' string and the 'stages' mapping disagree")
        return g

    def to_yaml(self, name: str | None = None) -> str:
        """YAML text: the mapping form plus the string form for humans."""
        import yaml

        doc: dict[str, Any] = {}
        if name:
            doc["name"] = name
        doc["genotype"] = self.to_string()
        doc.update(self.to_dict())
        return yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=120)

    @classmethod
    def from_yaml(cls, text: str) -> Genotype:
        """Parse YAML text written by `to_yaml` (or a bare genotype string)."""
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise GenotypeError(f"not valid YAML: {e}") from None
        if isinstance(data, str):
            return parse(data)
        return cls.from_dict(data)

    # ---- helpers -------------------------------------------------------------------------
    def replace(self, **changes: Any) -> Genotype:
        """A copy with some fields changed."""
        return replace(self, **changes)

    def stage_activation(self, stage: Stage) -> str:
        """The activation of a stage's layers: its own, else the global one."""
        return stage.act or self.activation

    def layers(self) -> Iterator[tuple[int, Stage, int, int, int]]:
        """Yield (block index, stage, in channels, out channels, stride) for every layer."""
        c_in = self.stem.channels
        idx = 0
        for st in self.stages:
            for j in range(st.layers):
                yield idx, st, c_in, st.channels, st.stride if j == 0 else 1
                c_in = st.channels
                idx += 1

    @property
    def num_blocks(self) -> int:
        """Total number of layers (blocks) over all stages."""
        return sum(st.layers for st in self.stages)

    @property
    def total_stride(self) -> int:
        """Downsampling factor of stem and stages together."""
        s = self.stem.stride
        for st in self.stages:
            s *= st.stride
        return s


def uses_residual(stage: Stage, c_in: int, c_out: int, stride: int) -> bool:
    """Whether a layer gets the identity residual: asked for, and shape kept."""
    return stage.skip == "identity" and stride == 1 and c_in == c_out


def parse(text: str) -> Genotype:
    """Parse the compact string form into a Genotype (grammar in the module docstring)."""
    if not isinstance(text, str) or not text.strip():
        raise GenotypeError("empty genotype string")
    tokens = [t.strip() for t in text.strip().split(":")]
    if len(tokens) < 4:
        raise GenotypeError(f"genotype string {text!r} needs global:stem:stage...:head tokens")
    act, *glob = tokens[0].split("_")
    gates = glob[1:]
    if not act or not glob or not glob[0].startswith("r") or len(glob[0]) < 2 or len(gates) > 1:
        raise GenotypeError(f"bad global token {tokens[0]!r}: expected e.g. 'swish_r224' or 'hswish_r224_hsigmoid'")
    res = glob[0][1:]
    stem_f = _fields(tokens[1], "stem", {"c", "k", "s"})
    head_f = _fields(tokens[-1], "head", {"c", "m"})
    for f, tok, need in ((stem_f, tokens[1], "cks"), (head_f, tokens[-1], "c")):
        for key in need:
            if key not in f:
                raise GenotypeError(f"bad token {tok!r}: missing '_{key}<n>'")
    stages = []
    for i, tok in enumerate(tokens[2:-1]):
        op = tok.split("_", 1)[0]
        if op not in OPS:
            raise GenotypeError(f"bad stage token {tok!r}: op must be one of {list(OPS)}")
        f = _fields(tok, op, {"r", "k", "s", "e", "c", "se"}, {"noskip", *ACTIVATIONS})
        for need in ("r", "k", "s", "c"):
            if need not in f:
                raise GenotypeError(f"bad stage token {tok!r}: missing '_{need}<n>'")
        acts = [a for a in ACTIVATIONS if a in f]
        if len(acts) > 1:
            raise GenotypeError(f"bad stage token {tok!r}: activations {acts}; allowed: at most one")
        with _part(f"stages[{i}] {tok!r}"):
            stages.append(Stage(op=op, kernel=_number(f["k"]), expansion=_number(f.get("e", "1")),
                                se=_number(f.get("se", "0")), skip="none" if "noskip" in f else "identity",
                                channels=_number(f["c"]), layers=_number(f["r"]), stride=_number(f["s"]),
                                act=acts[0] if acts else None))
    return Genotype(stages=tuple(stages),
                    stem=Stem(_number(stem_f["c"]), _number(stem_f["k"]), _number(stem_f["s"])),
                    head=_number(head_f["c"]), activation=act, resolution=_number(res),
                    se_gate=gates[0] if gates else "sigmoid", head_mix=_number(head_f.get("m", "0")))


def _fields(tok: str, prefix: str, keys: set[str], flags: set[str] = frozenset()) -> dict[str, str]:
    parts = tok.split("_")
    if parts[0] != prefix:
        raise GenotypeError(f"bad token {tok!r}: expected it to start with {prefix!r}")
    out: dict[str, str] = {}
    for p in parts[1:]:
        if p in flags:
            out[p] = ""
            continue
        key = "se" if p.startswith("se") else p[:1]
        val = p[len(key):]
        if key not in keys or not val or key in out:
            raise GenotypeError(f"bad token {tok!r}: cannot read field {p!r}")
        out[key] = val
    return out


def _fmt_float(x: float) -> str:
    return repr(float(x))


_SIGNED_INT = re.compile(r"[+-]\d+")


def _number(text: str) -> Any:
    """A string field as the number it spells (int if it is one), else the text itself.

    The dataclasses then judge the value, so a string, a mapping and a constructor call all get
    the same error for the same value.
    """
    if text.isdigit() or _SIGNED_INT.fullmatch(text):
        return int(text)
    try:
        return float(text)
    except ValueError:
        return text


def _field_error(part: str, name: str, value: Any, allowed: str) -> GenotypeError:
    detail = f"{name} {value!r} is not allowed; allowed: {allowed}"
    return GenotypeError(f"{part}: {detail}", detail)


def _integer(part: str, name: str, value: Any, lo: int = 1, hi: int | None = None,
             choices: Sequence[int] | None = None) -> int:
    """`value` as an int; bools, non-integral floats and strings are errors (True is not 1)."""
    v: Any = None
    if type(value) is int:  # the common case, first: genotypes are built thousands of times a second
        v = value
    elif not isinstance(value, bool):
        if isinstance(value, float):
            v = int(value) if math.isfinite(value) and value.is_integer() else None
        else:
            try:
                v = operator.index(value)  # int and numpy integers, nothing that merely converts
            except TypeError:
                v = None
    ok = v is not None and (v in choices if choices is not None else v >= lo and (hi is None or v <= hi))
    if not ok:
        if choices is not None:
            allowed = f"one of {list(choices)}"
        else:
            allowed = f"an integer >= {lo}" if hi is None else f"an integer in [{lo}, {hi}]"
        raise _field_error(part, name, value, allowed)
    return v


def _expansion(part: str, value: Any) -> int | float:
    """An expansion: an integer >= 1 (integral floats become ints) or a finite float > 1 such as 2.5."""
    if isinstance(value, float) and math.isfinite(value) and value > 1.0 and not value.is_integer():
        return value
    try:
        return _integer(part, "expansion", value)
    except GenotypeError:
        raise _field_error(part, "expansion", value, "an integer >= 1 or a number > 1 such as 2.5") from None


def _choice(part: str, name: str, value: Any, choices: Sequence[str]) -> None:
    if not isinstance(value, str) or value not in choices:
        raise _field_error(part, name, value, f"one of {list(choices)}")


def _set(obj: Any, name: str, value: Any) -> None:
    if obj.__dict__[name] is not value:
        object.__setattr__(obj, name, value)  # frozen dataclass: store the normalized value


class _part:
    """Context manager: a field error raised inside names `where` as its part."""

    def __init__(self, where: str) -> None:
        self.where = where

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> bool:
        if isinstance(exc, GenotypeError) and exc.detail:
            raise GenotypeError(f"{self.where}: {exc.detail}", exc.detail) from None
        return False
