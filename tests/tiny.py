"""The tiny search space the end-to-end tests share: 8x8 inputs, two stages, a few members."""

SPACE = """
activation: relu
resolution: 8
stem: {channels: 8, kernel: 3, stride: 1}
head: 32
defaults: {op: [conv, sepconv, mbconv3], kernel: [3], se: [0.0], skip: [identity]}
stages:
  - {stride: 2, channels: [8, 12], layers: [1]}
  - {stride: 2, channels: [16], layers: [1, 2]}
"""
# The latency tests' space: 16x16, four blocks of two kinds, builds a table in seconds.
LATENCY_SPACE = """\
name: tiny
activation: relu
resolution: 16
stem: {channels: 8, kernel: 3, stride: 2}
head: 32
defaults: {op: [mbconv3, sepconv], kernel: [3], se: [0.0, 0.25], skip: [identity]}
stages:
  - {stride: 1, channels: [8], layers: [1, 2]}
  - {stride: 2, channels: [16], layers: [1]}
"""
# Twice the members: kernel 3 or 5 in every stage.
SPACE_K35 = SPACE.replace("kernel: [3]", "kernel: [3, 5]")


def tiny_config(**train):
    """A Config on 300 8x8 digits with a 12-step CPU proxy; keyword arguments override `train` keys."""
    from nas.config import Config

    cfg = Config()
    cfg.data.subset = 300
    cfg.data.resolution = 8
    for k, v in {"steps": 12, "batch_size": 32, "lr": 0.1, "threads": 1, "device": "cpu", **train}.items():
        setattr(cfg.train, k, v)
    return cfg


def evaluator(cfg):
    """The Evaluator of a config's data and train sections."""
    from nas.evaluate import Evaluator

    return Evaluator(cfg.data, cfg.train)


def write_search_config(folder, space_text: str = SPACE, **sections):
    """Write `space.yaml` and a search config `cfg.yaml` into `folder` (8x8 digits, CPU); sections merge over the defaults."""
    import yaml

    (folder / "space.yaml").write_text(space_text)
    cfg = {
        "space": "space.yaml",
        "controller": {"name": "random"},
        "objective": {"kind": "flops", "target": "60K"},
        "data": {"source": "digits", "resolution": 8, "subset": 300},
        "train": {"steps": 6, "batch_size": 32, "lr": 0.1, "threads": 1, "device": "cpu"},
        "search": {"budget": 5, "seed": 1, "reseed_top_k": 0},
    }
    for k, v in sections.items():
        cfg[k] = {**cfg[k], **v} if isinstance(v, dict) and isinstance(cfg.get(k), dict) else v
    p = folder / "cfg.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p
