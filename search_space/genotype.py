"""Genotype: an immutable description of one MBConv network, with string and YAML forms.

String grammar (one place; `parse` and `Genotype.to_string` are its only readers/writers)::

    genotype := global ":" stem ( ":" stage )+ ":" head
    global   := ACT "_r" RESOLUTION                    e.g. swish_r224
    stem     := "stem_c" CH "_k" K "_s" S              e.g. stem_c32_k3_s2
    stage    := OP "_r" LAYERS "_k" K "_s" S ["_e" E] "_c" CH ["_se" RATIO] ["_noskip"]
    head     := "head_c" CH                            e.g. head_c1280
    OP       := "ir" (MBConv) | "ds" (depthwise-separable) | "cn" (regular conv)
    ACT      := "swish" | "relu"

`_e` is written for `ir` only (the expansion of `ds`/`cn` is always 1); `_se` is written when
the SE ratio is non-zero; `_noskip` when the stage asks for no identity residual. Example
(EfficientNet-B0, stage 2): ``ir_r2_k3_s2_e6_c24_se0.25``.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Iterator, Mapping

OPS = ("ir", "ds", "cn")
OP_NAMES = {"ir": "MBConv", "ds": "depthwise-separable conv", "cn": "regular conv"}
ACTIVATIONS = ("swish", "relu")
SKIPS = ("identity", "none")


class GenotypeError(ValueError):
    """A genotype string or mapping that does not describe a valid network."""


@dataclass(frozen=True)
class Stem:
    """The first convolution: channels, kernel and stride."""

    channels: int = 32
    kernel: int = 3
    stride: int = 2


@dataclass(frozen=True)
class Stage:
    """One stage of identical layers; only the first layer has the stride."""

    op: str
    kernel: int
    expansion: int
    se: float
    skip: str
    channels: int
    layers: int
    stride: int

    def __post_init__(self) -> None:
        _check(self.op in OPS, f"op {self.op!r} is not one of {list(OPS)}")
        _check(self.kernel in (1, 3, 5, 7), f"kernel {self.kernel!r} is not one of [1, 3, 5, 7]")
        _check(isinstance(self.expansion, int) and self.expansion >= 1,
               f"expansion {self.expansion!r} must be an integer >= 1")
        _check(self.op == "ir" or self.expansion == 1,
               f"op {self.op!r} has no expansion; got expansion {self.expansion}")
        _check(0.0 <= float(self.se) < 1.0, f"se ratio {self.se!r} must be in [0, 1)")
        _check(self.skip in SKIPS, f"skip {self.skip!r} is not one of {list(SKIPS)}")
        _check(isinstance(self.channels, int) and self.channels >= 1,
               f"channels {self.channels!r} must be a positive integer")
        _check(isinstance(self.layers, int) and self.layers >= 1,
               f"layers {self.layers!r} must be a positive integer")
        _check(self.stride in (1, 2), f"stride {self.stride!r} is not one of [1, 2]")

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
        return "_".join(parts)


@dataclass(frozen=True)
class Genotype:
    """A whole network: activation, input resolution, stem, stages and head width."""

    stages: tuple[Stage, ...]
    stem: Stem = field(default_factory=Stem)
    head: int = 1280
    activation: str = "swish"
    resolution: int = 224

    def __post_init__(self) -> None:
        object.__setattr__(self, "stages", tuple(self.stages))
        _check(len(self.stages) >= 1, "a genotype needs at least one stage")
        _check(self.activation in ACTIVATIONS,
               f"activation {self.activation!r} is not one of {list(ACTIVATIONS)}")
        _check(isinstance(self.resolution, int) and self.resolution >= 1,
               f"resolution {self.resolution!r} must be a positive integer")
        _check(isinstance(self.head, int) and self.head >= 1,
               f"head {self.head!r} must be a positive integer")

    # ---- string form -------------------------------------------------------------------
    def to_string(self) -> str:
        """The compact string form (grammar in the module docstring)."""
        s = self.stem
        tokens = [f"{self.activation}_r{self.resolution}", f"stem_c{s.channels}_k{s.kernel}_s{s.stride}"]
        tokens += [st.to_string() for st in self.stages]
        tokens.append(f"head_c{self.head}")
        return ":".join(tokens)

    def __str__(self) -> str:
        return self.to_string()

    # ---- YAML / mapping form -------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A plain mapping (the YAML form); `Genotype.from_dict` reads it back exactly."""
        return {
            "activation": self.activation,
            "resolution": self.resolution,
            "stem": {"channels": self.stem.channels, "kernel": self.stem.kernel, "stride": self.stem.stride},
            "stages": [
                {"op": st.op, "kernel": st.kernel, "expansion": st.expansion, "se": st.se,
                 "skip": st.skip, "channels": st.channels, "layers": st.layers, "stride": st.stride}
                for st in self.stages
            ],
            "head": self.head,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Genotype":
        """Read the mapping form; unknown or missing keys are errors naming the key."""
        if not isinstance(data, Mapping):
            raise GenotypeError(f"a genotype mapping is expected, got {type(data).__name__}")
        if "genotype" in data and "stages" not in data:
            return parse(str(data["genotype"]))
        allowed = {"activation", "resolution", "stem", "stages", "head", "name", "genotype", "meta"}
        _no_unknown(data, allowed, "genotype")
        stem_d = data.get("stem", {}) or {}
        _no_unknown(stem_d, {"channels", "kernel", "stride"}, "stem")
        stages_d = data.get("stages")
        if not isinstance(stages_d, list) or not stages_d:
            raise GenotypeError("genotype key 'stages' must be a non-empty list of stage mappings")
        stages = []
        keys = ("op", "kernel", "expansion", "se", "skip", "channels", "layers", "stride")
        for i, sd in enumerate(stages_d):
            if not isinstance(sd, Mapping):
                raise GenotypeError(f"stages[{i}] must be a mapping, got {sd!r}")
            _no_unknown(sd, set(keys), f"stages[{i}]")
            missing = [k for k in keys if k not in sd and k not in ("expansion", "se", "skip")]
            if missing:
                raise GenotypeError(f"stages[{i}] is missing key(s) {missing}")
            try:
                stages.append(Stage(op=sd["op"], kernel=int(sd["kernel"]), expansion=int(sd.get("expansion", 1)),
                                    se=float(sd.get("se", 0.0)), skip=sd.get("skip", "identity"),
                                    channels=int(sd["channels"]), layers=int(sd["layers"]),
                                    stride=int(sd["stride"])))
            except GenotypeError as e:
                raise GenotypeError(f"stages[{i}]: {e}") from None
            except (TypeError, ValueError) as e:
                raise GenotypeError(f"stages[{i}]: {e}") from None
        g = cls(stages=tuple(stages), stem=Stem(**{k: int(v) for k, v in stem_d.items()}),
                head=int(data.get("head", 1280)), activation=data.get("activation", "swish"),
                resolution=int(data.get("resolution", 224)))
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
    def from_yaml(cls, text: str) -> "Genotype":
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
    def replace(self, **changes: Any) -> "Genotype":
        """A copy with some fields changed."""
        return replace(self, **changes)

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
    act, _, res = tokens[0].partition("_r")
    if act not in ACTIVATIONS or not res.isdigit():
        raise GenotypeError(f"bad global token {tokens[0]!r}: expected e.g. 'swish_r224'")
    stem_f = _fields(tokens[1], "stem", {"c", "k", "s"})
    head_f = _fields(tokens[-1], "head", {"c"})
    stages = []
    for tok in tokens[2:-1]:
        op = tok.split("_", 1)[0]
        if op not in OPS:
            raise GenotypeError(f"bad stage token {tok!r}: op must be one of {list(OPS)}")
        flags = {"noskip"}
        f = _fields(tok, op, {"r", "k", "s", "e", "c", "se"}, flags)
        for need in ("r", "k", "s", "c"):
            if need not in f:
                raise GenotypeError(f"bad stage token {tok!r}: missing '_{need}<n>'")
        try:
            stages.append(Stage(op=op, kernel=int(f["k"]), expansion=int(f.get("e", "1")),
                                se=float(f.get("se", "0")), skip="none" if "noskip" in f else "identity",
                                channels=int(f["c"]), layers=int(f["r"]), stride=int(f["s"])))
        except ValueError as e:
            raise GenotypeError(f"bad stage token {tok!r}: {e}") from None
    try:
        return Genotype(stages=tuple(stages), stem=Stem(int(stem_f["c"]), int(stem_f["k"]), int(stem_f["s"])),
                        head=int(head_f["c"]), activation=act, resolution=int(res))
    except (KeyError, ValueError) as e:
        raise GenotypeError(f"bad genotype string {text!r}: {e}") from None


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


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise GenotypeError(msg)


def _no_unknown(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise GenotypeError(f"unknown key(s) {unknown} in {where}; allowed: {sorted(allowed)}")
