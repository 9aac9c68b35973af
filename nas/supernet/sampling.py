"""Which members of a space a training step runs: the largest, the smallest and random ones.

The sandwich rule (Yu & Huang 2019, BigNAS) trains the largest and the smallest member at every
step and N random ones in between. With several op families in a stage, "largest" and
"smallest" need a rule:

- largest: widest channels, most layers, largest kernel, SE on (its largest ratio), identity
  skip, and MBConv with its largest expansion when the stage offers one (the strongest family:
  it is the teacher of in-place distillation); otherwise the family with the most multiply-adds;
- smallest: fewest channels and layers, smallest kernel, SE off, and per stage the op with the
  fewest multiply-adds (counted by `search_space.cost`).
"""
from __future__ import annotations

import hashlib
import random
from typing import Any

from search_space import cost
from search_space.genotype import Genotype
from search_space.space import OP_CHOICES, SearchSpace


def _extreme(space: SearchSpace, big: bool) -> dict[str, Any]:
    pick = max if big else min
    sample: dict[str, Any] = {}
    ops = []
    for d in space.decisions:
        key = d.name.split(".", 1)[-1] if "." in d.name else d.name
        if key == "op":
            ops.append(d)
            continue
        if key == "skip":
            sample[d.name] = "identity" if "identity" in d.choices else d.choices[0]
        elif key == "activation":  # no size to order by: the space's first choice
            sample[d.name] = d.choices[0]
        else:  # channels, layers, kernel, se, stem.channels, head, head_mix: numbers
            sample[d.name] = pick(d.choices)
    for d in ops:  # a first guess, refined below stage by stage
        sample[d.name] = d.choices[0]
    for d in ops:
        if big:
            mb = [c for c in d.choices if OP_CHOICES[c][0] == "ir"]
            if mb:
                sample[d.name] = max(mb, key=lambda c: OP_CHOICES[c][1])
                continue

        def macs(choice: str, name: str = d.name) -> int:
            return cost(space.decode({**sample, name: choice})).macs

        sample[d.name] = pick(d.choices, key=macs)
    return sample


def largest(space: SearchSpace) -> Genotype:
    """The sandwich rule's largest member (the distillation teacher)."""
    return space.decode(_extreme(space, True))


def smallest(space: SearchSpace) -> Genotype:
    """The sandwich rule's smallest member."""
    return space.decode(_extreme(space, False))


def step_rng(seed: int, step: int) -> random.Random:
    """The random stream of one training step: the same on every rank and after a resume."""
    digest = hashlib.sha256(f"supernet:{seed}:{step}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "little"))


def sample_member(space: SearchSpace, rng: random.Random, balance_ops: bool = False) -> Genotype:
    """A random member; with `balance_ops` each stage's op *family* (conv, sepconv, MBConv) is equally likely.

    Uniform over the op choices trains MBConv (three of the five choices) three times as often as
    regular and separable convs, whose separate weights then stay under-trained and whose members
    the supernet under-scores; balancing the families gives each family's weights the same share.
    """
    if not balance_ops:
        return space.sample(rng)
    sample = {}
    for d in space.decisions:
        if d.name.endswith(".op"):
            families: dict[str, list[Any]] = {}
            for c in d.choices:
                families.setdefault(OP_CHOICES[c][0], []).append(c)
            sample[d.name] = rng.choice(families[rng.choice(sorted(families))])
        else:
            sample[d.name] = rng.choice(d.choices)
    return space.decode(sample)


def step_members(space: SearchSpace, sampling: str, num_random: int, seed: int, step: int,
                 big: Genotype | None = None, small: Genotype | None = None,
                 balance_ops: bool = False) -> list[tuple[str, Genotype]]:
    """The (role, genotype) pairs a step trains: sandwich = largest, smallest, N random; uniform = 1 random."""
    rng = step_rng(seed, step)
    if sampling == "uniform":
        return [("random", sample_member(space, rng, balance_ops))]
    big = big or largest(space)
    small = small or smallest(space)
    return [("largest", big), ("smallest", small)] + [("random", sample_member(space, rng, balance_ops))
                                                      for _ in range(num_random)]


__all__ = ["largest", "smallest", "step_rng", "step_members", "sample_member"]
