"""Our search space in NNI 3.0's terms: one ``nni.choice`` per decision.

`executable_space` is what the bridge gives NNI strategies (a mutable dict of choices: strategies
only need the labels and choices). `HwnasModelSpace` is for NNI users: a PyTorch `ModelSpace`
whose frozen instances are our networks, usable in their own ``NasExperiment`` together with
`nni_evaluator`, which trains a frozen model with our proxy trainer and reports its accuracy.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import nni
from nni.mutable import MutableDict, ensure_frozen
from nni.nas.nn.pytorch import ModelSpace
from nni.nas.space import RawFormatModelSpace, model_context
from torch import nn

from search_space import SearchSpace
from search_space.space import as_decisions


def choices(decisions: Iterable[Any]) -> MutableDict:
    """One labelled ``nni.choice`` per decision (label = decision name, e.g. ``s1.op``)."""
    return MutableDict({d.name: nni.choice(d.name, list(d.choices)) for d in as_decisions(decisions)})


def executable_space(decisions: Iterable[Any]) -> RawFormatModelSpace:
    """The space NNI strategies explore: samples are ``{decision name: choice}`` dicts."""
    return RawFormatModelSpace(choices(decisions), None)


class HwnasModelSpace(ModelSpace):
    """Our MBConv space as an NNI ModelSpace; a frozen instance wraps the built network (`.genotype`)."""

    def __init__(self, space: str | dict[str, Any], num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        self._args = (space, num_classes, in_channels)
        s = SearchSpace.from_yaml(space) if isinstance(space, str) else SearchSpace(space)
        # Inside NNI's freeze each ensure_frozen returns the sampled value; at definition time
        # (no sample) it gives the first choice, so the space can be built and inspected.
        sample = {d.name: ensure_frozen(self.add_mutable(nni.choice(d.name, list(d.choices))), strict=False)
                  for d in s.decisions}
        from search_space.model import build_model

        self.genotype = s.decode(sample)
        self.net = build_model(self.genotype, num_classes=num_classes, in_channels=in_channels)

    def freeze(self, sample: dict[str, Any]) -> HwnasModelSpace:
        """The network of one sample (NNI re-runs ``__init__`` inside the sample's context)."""
        with model_context(sample):
            return self.__class__(*self._args)

    def forward(self, x: Any) -> Any:
        """The network's logits."""
        return self.net(x)


def model_space(space: str | dict[str, Any], num_classes: int = 10, in_channels: int = 3) -> HwnasModelSpace:
    """An NNI `ModelSpace` over a search-space YAML (path) or its mapping."""
    return HwnasModelSpace(space, num_classes=num_classes, in_channels=in_channels)


def nni_evaluator(config: Any, search_seed: int = 0) -> Any:
    """An NNI `FunctionalEvaluator` that trains a frozen `HwnasModelSpace` with our proxy trainer."""
    from nni.nas.evaluator import FunctionalEvaluator

    return FunctionalEvaluator(_train_and_report, data=config.data, train=config.train, search_seed=search_seed)


def _train_and_report(model: nn.Module, data: Any, train: Any, search_seed: int) -> None:
    from ..evaluate import Evaluator
    from ..results import eval_seed

    key = model.genotype.to_string()
    res = Evaluator(data, train).evaluate(model.genotype, eval_seed(search_seed, key))
    nni.report_final_result(res.accuracy)
