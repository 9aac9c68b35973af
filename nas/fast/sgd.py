"""SGD with (Nesterov) momentum and weight decay as a few foreach kernels, the LR read from a device tensor.

`torch.optim.SGD` has no `capturable` mode: its LR is a Python number baked into a captured graph.
This update takes the LR as a 0-d tensor, so one captured step serves the whole schedule, and it
runs as ~5 multi-tensor launches instead of several per parameter. Same maths as
`torch.optim.SGD(momentum=m, nesterov=True, weight_decay=wd)` with a zero-initialised buffer.
"""
from __future__ import annotations

import torch
from torch import nn


class ForeachSGD:
    """Nesterov/heavy-ball SGD over two parameter groups (decayed weights, undecayed BN and biases)."""

    def __init__(self, model: nn.Module, momentum: float, weight_decay: float, nesterov: bool = True) -> None:
        params = [p for p in model.parameters() if p.requires_grad]
        # No decay on BN parameters and biases, as the standard trainer does.
        self.decay = [p for p in params if p.ndim > 1]
        self.params = self.decay + [p for p in params if p.ndim <= 1]
        self.momentum = float(momentum)
        self.weight_decay = float(weight_decay)
        self.nesterov = nesterov and momentum > 0
        self.bufs = [torch.zeros_like(p) for p in self.params] if momentum > 0 else []

    def zero_grad(self) -> None:
        """Drop the gradients (backward then writes fresh ones, also inside a graph's memory pool)."""
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, lr: torch.Tensor) -> None:
        """One update with learning rate `lr` (a 0-d tensor on the parameters' device)."""
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        if self.weight_decay:
            torch._foreach_add_(grads[:len(self.decay)], self.decay, alpha=self.weight_decay)
        if self.momentum:
            torch._foreach_mul_(self.bufs, self.momentum)
            torch._foreach_add_(self.bufs, grads)
            if self.nesterov:
                torch._foreach_add_(grads, self.bufs, alpha=self.momentum)
                update = grads
            else:
                update = torch._foreach_mul(self.bufs, 1.0)  # a copy: the buffers must keep their values
        else:
            update = grads
        torch._foreach_mul_(update, lr)
        torch._foreach_sub_(self.params, update)


__all__ = ["ForeachSGD"]
