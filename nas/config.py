"""The search config: YAML sections validated into dataclasses before any work starts.

Sections: ``space`` (path), ``controller``, ``objective``, ``data``, ``train``, ``search``,
``executor``, ``scaling``, ``supernet``, ``stage2`` (read by `python -m nas.train` only), ``out``.
`DataConfig` and `TrainConfig` are self-contained so other tools (the scaling grid search) can
embed them in their own top-level dataclass and load it with `load_yaml(path, TheirConfig, sets)`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from search_space.yamlfile import read_yaml_file

from .controllers import CONTROLLERS
from .nni_bridge.names import NAMES as NNI_NAMES
from .reward import KINDS, PRESETS, Objective, weights
from .schema import ConfigError, apply_sets, build, option, to_dict
from .supernet.net import KERNEL_SHARING
from .units import UnitError, parse_target

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_CHECKSUM = "md5:c58f30108f718f92721af3b95e74349a"


@dataclass
class DataConfig:
    """Where the images come from and how they are split and shaped."""

    source: str = option("digits", choices=("digits", "cifar10", "imagefolder"))
    path: str | None = None                        # cifar10: folder or .npz; imagefolder: root
    subset: int | None = option(None, lo=10)       # training images drawn (stratified) before the split
    val_fraction: float = option(0.2, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    split_seed: int = option(0, lo=0)
    resolution: int | None = option(None, lo=4, hi=1024)  # null: the genotype's (space's) resolution
    interpolation: str = option("bilinear", choices=("bilinear", "nearest"))
    normalize: bool = True                          # per-channel mean/std of the training split
    mean: list[float] | None = None                 # fixed per-channel mean in [0, 1] (else measured)
    std: list[float] | None = None
    download: bool = True                           # cifar10: fetch from `url` when the files are missing
    url: str = CIFAR10_URL
    checksum: str | None = CIFAR10_CHECKSUM         # "md5:<hex>" or "sha256:<hex>" of the download


@dataclass
class TrainConfig:
    """The proxy training of one candidate."""

    epochs: float = option(5.0, lo=0.0, lo_open=True)
    steps: int | None = option(None, lo=1)          # when set, wins over epochs
    batch_size: int = option(64, lo=1)
    eval_batch_size: int | None = option(None, lo=1)  # null: 1024 on CUDA, 32 on the CPU (bench/eval_batch.py)
    optimizer: str = option("sgd", choices=("sgd", "rmsprop", "adamw"))
    lr: float = option(0.05, lo=0.0, lo_open=True)
    momentum: float = option(0.9, lo=0.0, hi=1.0, hi_open=True)
    weight_decay: float = option(5e-5, lo=0.0)
    schedule: str = option("cosine", choices=("cosine", "linear", "constant"))
    warmup: float = option(0.0, lo=0.0, hi=0.5)     # fraction of the steps with a linear warm-up
    label_smoothing: float = option(0.0, lo=0.0, hi=1.0, hi_open=True)
    dropout: float = option(0.0, lo=0.0, hi=1.0, hi_open=True)
    drop_connect: float = option(0.0, lo=0.0, hi=1.0, hi_open=True)
    bn_momentum: float = option(0.1, lo=0.0, hi=1.0, lo_open=True)  # PyTorch convention; short runs need 0.1
    flip: bool = False                              # random horizontal flips (not for digits)
    crop_pad: int = option(0, lo=0, hi=64)          # random crops after zero padding by this much
    device: str = option("auto", choices=("auto", "cpu", "cuda"))
    threads: int | None = option(None, lo=1)        # CPU threads; null: physical cores
    amp: bool = True                                # bf16 autocast on CUDA (ignored on CPU)
    channels_last: bool = True
    cudnn_benchmark: bool = False                   # autotuning costs more than it saves per candidate
    # auto: fast on CUDA (SGD), else standard; supernet: inherited weights (the `supernet` section)
    evaluator: str = option("auto", choices=("auto", "standard", "fast", "supernet"))
    concurrent: int = option(4, lo=1, hi=64)        # fast evaluator: candidates training at once per GPU
    cuda_graphs: bool = True                        # fast evaluator: replay each training step as a CUDA graph


@dataclass
class ControllerConfig:
    """Which controller proposes candidates; options go to `nas.controllers.build`."""

    # nni:* run NNI 3.0's strategies (the `nni` extra, nas/nni_bridge); the rest are ours.
    name: str = option("ppo", choices=tuple(CONTROLLERS) + NNI_NAMES)
    options: dict[str, Any] = option(factory=dict)


@dataclass
class ObjectiveConfig:
    """The reward: cost kind, target and exponents (a preset or explicit alpha/beta)."""

    kind: str = option("flops", choices=KINDS)
    target: str | float | None = None               # 400M, 0.4G, 4e8 (flops) or 75ms, 0.075s (latency)
    preset: str | None = option(None, choices=tuple(PRESETS))
    alpha: float | None = option(None, lo=-10.0, hi=10.0)
    beta: float | None = option(None, lo=-10.0, hi=10.0)
    lut: str | None = None                          # latency table; null: built into the run folder
    threads: int = option(1, lo=1)                  # threads of the latency measurements
    measure_missing: bool = False                   # measure blocks missing from a given table
    # The network the latency is for, where it differs from the proxy's: a phone table of ImageNet
    # networks (1000 classes, RGB) while the proxy trains on a few classes or grey images; null: the data's.
    classes: int | None = option(None, lo=1, hi=100_000)
    in_channels: int | None = option(None, lo=1, hi=64)

    def latency_shape(self, num_classes: int, in_channels: int) -> dict[str, int]:
        """The classes and input channels of the network the latency is for (the data's unless set here)."""
        return {"num_classes": self.classes or num_classes, "in_channels": self.in_channels or in_channels}


@dataclass
class SearchConfig:
    """How many candidates, with which seed, and how many to report."""

    budget: int = option(20, lo=1)                  # distinct candidates evaluated
    seed: int = option(0, lo=0)
    top_k: int = option(5, lo=1)
    max_ask_factor: int = option(50, lo=1)          # give up after budget x this many asks
    # After the search, train the top k again with `reseeds` more seeds each and pick by the mean
    # (null: 3 for short proxies, train.steps set or epochs <= 5, else 0; 0 turns it off).
    reseed_top_k: int | None = option(None, lo=0, hi=100)
    reseeds: int = option(2, lo=1, hi=20)


@dataclass
class ExecutorConfig:
    """Where evaluations run: in this process, a pool of local worker processes, or a Ray cluster."""

    kind: str = option("inline", choices=("inline", "local", "ray"))
    workers: int | None = option(None, lo=1)        # local on CPU: processes (null: cores); ray: actors (null: fit)
    gpus: list[int] | str | None = None             # local: GPU indices or "all"; [] forces CPU workers
    workers_per_gpu: int = option(1, lo=1)          # local: workers sharing each listed GPU
    max_retries: int = option(2, lo=0)              # retries of a job whose worker died, then status failed
    address: str | None = None                      # ray: "auto", "ray://host:10001", null starts a local one
    num_cpus: float = option(1.0, lo=0.0)           # ray: CPUs per trial (also its torch threads)
    num_gpus: float = option(0.0, lo=0.0)           # ray: GPUs per trial; 0.25 packs four trials on a GPU
    runtime_env: dict[str, Any] | None = None       # ray: passed to ray.init, e.g. {working_dir: .}


@dataclass
class ScalingConfig:
    """The grid of compound coefficients and the family to emit afterwards."""

    step: float = option(0.05, lo=0.0, lo_open=True, hi=1.0)
    tolerance: float = option(0.1, lo=0.0, hi=1.0)     # |alpha * beta^2 * gamma^2 - factor| allowed
    factor: float = option(2.0, lo=1.0, lo_open=True)  # FLOPs growth per unit of phi
    max_alpha: float | None = option(None, lo=1.0)
    max_beta: float | None = option(None, lo=1.0)
    max_gamma: float | None = option(None, lo=1.0)
    max_points: int | None = option(None, lo=1)        # train at most this many, spread over the grid
    points: list[list[float]] | None = None            # explicit [alpha, beta, gamma] triples instead
    include_paper_point: bool = True                   # keep (1.2, 1.1, 1.15) when subsampling (and it qualifies)
    # measured: keep the points whose counted MACs at phi = 1 are within tolerance of factor x the
    # baseline's (rounding of channels, layers and resolution moves them off the formula); formula:
    # keep the points with |alpha * beta^2 * gamma^2 - factor| <= tolerance, as the paper states it.
    rule: str = option("measured", choices=("measured", "formula"))
    reseed_top_k: int | None = option(None, lo=0, hi=100)  # train the best k again with more seeds (as search.*)
    reseeds: int = option(2, lo=1, hi=20)
    phis: list[float] = option(factory=lambda: [1, 2, 3, 4, 5, 6, 7])
    divisor: int = option(8, lo=1)                     # channel multiple (8 official; 2-4 for tiny nets)
    seed: int = option(0, lo=0)                        # the same training seed for every point
    lut: str | None = None                             # latency table to report predicted latency


@dataclass
class SupernetConfig:
    """The weight-sharing supernet: how `python -m nas.supernet train` trains it, how the evaluator uses it."""

    checkpoint: str | None = None                   # the trained supernet (evaluator input; train writes it)
    sampling: str = option("sandwich", choices=("sandwich", "uniform"))  # per step: largest+smallest+N, or 1
    num_random: int = option(2, lo=0, hi=16)        # sandwich: random members per step
    distill: bool = True                            # sandwich: in-place distillation from the largest member
    balance_ops: bool = False                       # random members: each op family (conv/sepconv/MBConv) 1/3
    # smaller kernels: the centre of the largest (BigNAS), that centre through a learned matrix
    # (Once-for-All's kernel transformation), or their own weights (docs/supernet.md)
    kernel_sharing: str = option("centre", choices=KERNEL_SHARING)
    lr: float | None = option(None, lo=0.0, lo_open=True)  # supernet's peak learning rate; null: train.lr
    epochs: float = option(30.0, lo=0.0, lo_open=True)  # supernet training length (train.epochs is the proxy's)
    steps: int | None = option(None, lo=1)          # when set, wins over epochs
    seed: int = option(0, lo=0)                     # weights, data order and sampled members
    checkpoint_every: int = option(200, lo=1)       # steps between resumable checkpoints
    eval_every: int | None = option(None, lo=1)     # steps between largest/smallest accuracy curves (null: per epoch)
    eval_images: int = option(1000, lo=1)           # validation images for those curves (a fixed random draw)
    bn_batches: int = option(8, lo=1)               # BatchNorm recalibration: training batches per candidate
    bn_batch_size: int | None = option(None, lo=2)  # null: train.batch_size
    # each candidate's kernels when it is scored: its own, or every stage at the supernet's largest kernel.
    # Supernets reward larger kernels more than training alone does; scored at the largest kernel they
    # rank the rest of a member better, and the search weighs kernels by cost alone (docs/supernet.md)
    score_kernel: str = option("member", choices=("member", "largest"))


@dataclass
class Stage2Config:
    """Stage 2, `python -m nas.train`: one genotype trained for real with the EfficientNet recipe's parts (docs/train.md)."""

    epochs: int = option(30, lo=1)
    batch_size: int = option(128, lo=1)
    optimizer: str = option("rmsprop", choices=("rmsprop", "sgd"))  # rmsprop: decay 0.9, eps 1e-3 (TF's)
    lr: float = option(0.008, lo=0.0, lo_open=True)  # EfficientNet: 0.016 per 256 images; sgd wants ~0.1
    momentum: float = option(0.9, lo=0.0, hi=1.0, hi_open=True)
    weight_decay: float = option(1e-5, lo=0.0)      # on conv and linear weights, not on BN or biases
    schedule: str = option("cosine", choices=("cosine", "linear", "constant"))
    warmup_epochs: float = option(2.0, lo=0.0)      # linear warm-up, then the schedule (to 0 at the end)
    label_smoothing: float = option(0.1, lo=0.0, hi=1.0, hi_open=True)
    ema_decay: float | None = option(0.9999, lo=0.0, hi=1.0, lo_open=True, hi_open=True)  # null: no EMA
    dropout: float = option(0.2, lo=0.0, hi=1.0, hi_open=True)       # before the classifier
    drop_connect: float = option(0.2, lo=0.0, hi=1.0, hi_open=True)  # block i of n: drop_connect * i / n
    # TF's decay 0.99 (0.01 here) needs thousands of steps; over a few hundred the running statistics
    # still remember their initial values and evaluation fails, so the short runs' 0.1 by default.
    bn_momentum: float = option(0.1, lo=0.0, hi=1.0, lo_open=True)
    flip: bool | None = None                        # random horizontal flips; null: train.flip
    crop_pad: int | None = option(None, lo=0, hi=64)  # random crops after zero padding; null: train.crop_pad
    cutout: int = option(0, lo=0, hi=1024)          # stronger augmentation: a zeroed square of this side; 0: off
    seed: int = option(0, lo=0)                     # weights, batch order, augmentation, dropout
    test: bool = True                               # score best.pt on the test split once, at the end
    data: dict[str, Any] = option(factory=dict)     # overrides of the data section (e.g. subset: null)
    # python -m nas.pipeline only (docs/train.md, "Stage 2 in the pipeline"):
    top_k: int = option(0, lo=0, hi=1000)           # the search's k best trained with this recipe; 0: no stage 2
    reference: str | None = "efficientnet-b0"       # trained beside them: a reference name, genotype string or file
    baseline_from: str = option("candidates", choices=("candidates", "all"))  # all: the reference may be the baseline


@dataclass
class Config:
    """A whole search run."""

    space: str | None = None
    name: str | None = None                         # run name; default: the config file's stem
    controller: ControllerConfig = field(default_factory=ControllerConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    scaling: ScalingConfig = field(default_factory=ScalingConfig)  # used by nas.pipeline, not the search
    supernet: SupernetConfig = field(default_factory=SupernetConfig)  # nas.supernet and train.evaluator: supernet
    stage2: Stage2Config = field(default_factory=Stage2Config)  # python -m nas.train, not the search
    out: str | None = None                          # run folder; default runs/<name>

    def reward_objective(self) -> Objective:
        """The parsed objective (target in MACs or ms, exponents resolved)."""
        o = self.objective
        alpha, beta = weights(o.preset, o.alpha, o.beta)
        target = None if o.kind == "accuracy" else parse_target(o.target, o.kind)
        return Objective(kind=o.kind, target=target, alpha=alpha, beta=beta)

    def to_dict(self) -> dict[str, Any]:
        """The plain mapping form."""
        return to_dict(self)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping from a file; errors are ConfigError naming the file."""
    p = Path(path)
    data = read_yaml_file(p, ConfigError, "config file")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: a config must be a mapping of sections, got {type(data).__name__}")
    return data


def load_yaml(path: str | Path, cls: type, sets: list[str] | None = None) -> Any:
    """Read a YAML file, apply ``--set`` overrides and validate it into dataclass `cls`."""
    data = read_yaml(path)
    data, origins = apply_sets(cls, data, list(sets or []))
    return build(cls, data, str(path), origins=origins)


def resolve_path(value: str, config_dir: Path) -> Path:
    """A path as written in a config: absolute, else relative to the config's folder, else to the cwd."""
    p = Path(value).expanduser()
    if p.is_absolute():
        return p
    for base in (config_dir, Path.cwd()):
        if (base / p).exists():
            return (base / p).resolve()
    return (config_dir / p).resolve()


def check_data_paths(data: DataConfig, config_dir: Path, src: str) -> DataConfig:
    """Resolve data.path and check it exists where it must (imagefolder always, cifar10 unless downloading)."""
    if data.source == "digits":
        return data
    if data.path is None:
        if data.source == "imagefolder":
            raise ConfigError(f"{src}: key 'data.path' must be set for source 'imagefolder': a folder with one "
                              f"sub-folder of images per class (e.g. --set data.path=/data/imagenet)")
        data.path = str(Path("data_cache/cifar10").resolve())
        return data
    p = resolve_path(data.path, config_dir)
    if not p.exists() and not (data.source == "cifar10" and data.download):
        what = ("a folder with one sub-folder per class" if data.source == "imagefolder" else
                "the cifar-10-batches-py folder (or its parent) or a .npz with x_train/y_train/x_test/y_test")
        raise ConfigError(f"{src}: key 'data.path': {data.path!r} does not exist ({p}); expected {what} "
                          f"(e.g. --set data.path=/path/to/data)")
    data.path = str(p)
    return data


def check_train(train: TrainConfig, src: str) -> None:
    """Cross-field checks of the train section."""
    if train.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"{src}: key 'train.device': 'cuda' but no CUDA device is available; use auto or cpu")
    if train.evaluator == "fast" and train.optimizer != "sgd":
        raise ConfigError(f"{src}: key 'train.evaluator': 'fast' implements the sgd optimizer only, got "
                          f"train.optimizer {train.optimizer!r}; use evaluator auto or standard")


def check_stage2_reference(s2: Stage2Config, config_dir: Path, src: str) -> None:
    """Check stage2.reference parses; a genotype file's path becomes absolute (the run may start elsewhere)."""
    from search_space.references import REFERENCES, load_genotype

    ref = s2.reference
    if ref is None or ref.lower().replace("_", "-") in REFERENCES:
        return
    if ":" not in ref or Path(ref).suffix in (".yaml", ".yml"):  # a file, not a genotype string
        ref = str(resolve_path(ref, config_dir))
    try:
        load_genotype(ref)
    except ValueError as e:  # GenotypeError, SpaceError
        raise ConfigError(f"{src}: key 'stage2.reference': {s2.reference!r} is not usable ({' '.join(str(e).split())});"
                          f" allowed: null, a reference name ({', '.join(sorted(REFERENCES))}), a genotype string or"
                          f" a genotype YAML file") from None
    s2.reference = ref


def load_config(path: str | Path, sets: list[str] | None = None) -> Config:
    """Load and fully validate a search config; every mistake is a one-line ConfigError."""
    path = Path(path)
    cfg: Config = load_yaml(path, Config, sets)
    src = str(path)
    config_dir = path.resolve().parent
    if cfg.space is None:
        raise ConfigError(f"{src}: key 'space' must be set: the path of a search-space YAML (e.g. space_digits.yaml)")
    space_path = resolve_path(cfg.space, config_dir)
    if not space_path.is_file():
        raise ConfigError(f"{src}: key 'space': file {cfg.space!r} not found (looked in {config_dir} and {Path.cwd()})")
    cfg.space = str(space_path)
    cfg.name = cfg.name or path.stem
    o = cfg.objective
    if o.preset is not None and (o.alpha is not None or o.beta is not None):
        raise ConfigError(f"{src}: key 'objective.preset': {o.preset!r} and explicit alpha/beta both given; "
                          f"use one of them")
    if o.kind != "accuracy":
        if o.target is None:
            raise ConfigError(f"{src}: key 'objective.target' must be set for objective '{o.kind}' "
                              f"({'e.g. 400M or 0.4G' if o.kind == 'flops' else 'e.g. 75ms or 0.075s'})")
        try:
            parse_target(o.target, o.kind)
        except UnitError as e:
            raise ConfigError(f"{src}: key 'objective.target': {e}") from None
    if o.lut is not None:
        lut = resolve_path(o.lut, config_dir)
        if not lut.is_file():
            raise ConfigError(f"{src}: key 'objective.lut': file {o.lut!r} not found ({lut})")
        o.lut = str(lut)
    check_data_paths(cfg.data, config_dir, src)
    check_train(cfg.train, src)
    if cfg.supernet.checkpoint is not None:  # an input (search) or an output (training): like `out` when absent
        ckpt = resolve_path(cfg.supernet.checkpoint, config_dir)
        if not ckpt.exists() and not Path(cfg.supernet.checkpoint).expanduser().is_absolute():
            ckpt = (Path.cwd() / Path(cfg.supernet.checkpoint).expanduser()).resolve()
        cfg.supernet.checkpoint = str(ckpt)
    elif cfg.train.evaluator == "supernet":
        raise ConfigError(f"{src}: key 'supernet.checkpoint' must be set for train.evaluator 'supernet': a "
                          f"checkpoint written by python -m nas.supernet train (e.g. --set "
                          f"supernet.checkpoint=runs/{cfg.name or path.stem}-supernet/supernet.pt)")
    for key in ("mean", "std"):
        vals = getattr(cfg.data, key)
        if vals is not None and (not vals or any(v <= 0 and key == "std" for v in vals)):
            raise ConfigError(f"{src}: key 'data.{key}': {vals!r} must be a non-empty list (std > 0)")
    check_stage2_reference(cfg.stage2, config_dir, src)
    cfg.out = str(Path(cfg.out).expanduser().resolve()) if cfg.out else str((Path("runs") / cfg.name).resolve())
    return cfg


def dump_config(cfg: Config) -> str:
    """The resolved config as YAML (what a run folder keeps)."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


def config_from_dict(data: dict[str, Any], src: str = "<config>") -> Config:
    """A Config from an already resolved mapping (e.g. a run folder's config.yaml)."""
    return build(Config, data, src)


__all__ = ["DataConfig", "TrainConfig", "ControllerConfig", "ObjectiveConfig", "SearchConfig", "ExecutorConfig",
           "ScalingConfig", "SupernetConfig", "Stage2Config", "Config", "ConfigError", "load_config", "load_yaml", "read_yaml",
           "resolve_path", "dump_config",
           "config_from_dict", "check_data_paths", "CIFAR10_URL", "CIFAR10_CHECKSUM"]
