"""How much does weight sharing slow training down, and which decisions cause it?

    python bench/supernet_interference.py [--steps 120] [--data PATH.npz] [--genotype-seed 3] [--config C] [--each]

Trains for the same number of steps (same batches, same cosine schedule, one thread) on the
CIFAR-10 subset of ``configs/supernet_cifar.yaml``: one member alone (``build_model``), the same
member as a fixed path of a fresh supernet, and supernets whose steps sample a random member with
some decisions random and the rest at the largest member's values. Prints the mean training loss
over each quarter of the steps. Equal curves for the first two say the supernet computes what the
builder does; the gap to the others is what sharing costs, decision by decision.
"""
from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "datasets" / "cifar10_uint8.npz"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--genotype-seed", type=int, default=3, help="which member is the fixed path")
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "supernet_cifar.yaml")
    ap.add_argument("--each", action="store_true", help="also one case per decision: only it random")
    args = ap.parse_args(argv)
    if not args.data.is_file():
        print(f"skipped: CIFAR-10 not found at {args.data} (pass --data PATH to cifar10_uint8.npz)")
        return 0
    import torch
    import torch.nn.functional as F

    from nas.config import load_config
    from nas.evaluate import Evaluator
    from nas.supernet import SuperNet
    from nas.supernet.sampling import largest, sample_member
    from nas.train import Normalizer, lr_factor, make_optimizer
    from search_space import SearchSpace
    from search_space.model import build_model

    torch.set_num_threads(1)
    cfg = load_config(args.config,
                      [f"data.path={args.data.resolve()}", "train.threads=1", "train.device=cpu"])
    space = SearchSpace.from_yaml(cfg.space)
    splits = Evaluator(cfg.data, cfg.train).prepare(space.resolution)
    norm = Normalizer(splits.mean, splits.std, torch.device("cpu"), True)
    g = space.sample(random.Random(args.genotype_seed))
    big = space.encode(largest(space))

    def run(model: torch.nn.Module, forward) -> list[float]:
        opt = make_optimizer(model, cfg.train)
        lr = lr_factor("cosine", args.steps, 0.0)
        gen = torch.Generator().manual_seed(0)
        losses = []
        for t in range(args.steps):
            for group in opt.param_groups:
                group["lr"] = cfg.train.lr * lr(t)
            idx = torch.randint(0, len(splits.y_train), (cfg.train.batch_size,), generator=gen)
            loss = F.cross_entropy(forward(norm(splits.x_train[idx])), splits.y_train[idx].long())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        q = max(1, args.steps // 4)
        return [sum(losses[i:i + q]) / len(losses[i:i + q]) for i in range(0, args.steps, q)]

    def sampler(keys: tuple[str, ...] | None, balance: bool = False):
        rng = random.Random(1)

        def draw():
            if keys is None:
                return sample_member(space, rng, balance)
            d = space.sample_decisions(rng)
            return space.decode({k: d[k] if k.split(".")[-1] in keys else big[k] for k in d})
        return draw

    print(f"{args.steps} steps of {cfg.train.batch_size} images, lr {cfg.train.lr} cosine; mean loss per quarter")
    print(f"fixed member: {g.to_string()}")
    torch.manual_seed(0)
    alone = build_model(g, splits.num_classes, splits.in_channels, dropout=0.0, drop_connect=0.0)
    rows = [("member alone (build_model)", run(alone.to(memory_format=torch.channels_last), alone))]
    cases = [("same member, fixed path of a supernet", lambda: g),
             ("random members (uniform over decisions)", sampler(None)),
             ("random members, op families balanced", sampler(None, True)),
             ("only the op random", sampler(("op",))),
             ("all but the op random (MBConv6)", sampler(("kernel", "se", "skip", "channels", "layers")))]
    if args.each:
        cases += [(f"only the {k} random", sampler((k,))) for k in ("kernel", "se", "skip", "channels", "layers")]
    for name, draw in cases:
        torch.manual_seed(0)
        net = SuperNet(space, splits.num_classes, splits.in_channels)
        rows.append((name, run(net, lambda x, net=net, draw=draw: net(x, draw()))))
        print(f"{rows[-1][0]:<42}" + "".join(f"{v:8.3f}" for v in rows[-1][1]), flush=True)
    print(f"{rows[0][0]:<42}" + "".join(f"{v:8.3f}" for v in rows[0][1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
