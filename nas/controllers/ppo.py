"""The MnasNet controller: an LSTM policy over the decisions, trained with PPO.

The LSTM emits one decision per step. Each decision has its own softmax head (choice counts
differ) and its own embedding of the chosen choice, which is the next step's input. Rewards
become advantages against an exponential moving-average baseline; every `batch_size` tells
the policy takes `epochs` Adam steps on the clipped surrogate objective (Schulman et al. 2017)
plus an entropy bonus, with the log-probs recorded at ask time as the old policy.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from .base import Controller, Indices, tensor_from_json, tensor_to_json

# Samples drawn by `entropy()`; its estimate uses a private generator so logging never
# changes what the controller asks next.
_ENTROPY_SAMPLES = 64


class _Policy(nn.Module):
    """An LSTM cell run once per decision, with a head and an embedding per decision."""

    def __init__(self, sizes: list[int], hidden: int) -> None:
        super().__init__()
        self.sizes = sizes
        self.start = nn.Parameter(torch.zeros(1, hidden))
        self.cell = nn.LSTMCell(hidden, hidden)
        self.heads = nn.ModuleList(nn.Linear(hidden, n) for n in sizes)
        # The last decision's choice feeds no further step, so it needs no embedding.
        self.embeds = nn.ModuleList(nn.Embedding(n, hidden) for n in sizes[:-1])

    def run(self, batch: int, actions: torch.Tensor | None = None,
            generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sample (or score given) actions: returns actions [B, n], log-prob [B], entropy [B]."""
        h = c = self.start.new_zeros(batch, self.start.shape[1])
        x = self.start.expand(batch, -1)
        taken, logp, ent = [], h.new_zeros(batch), h.new_zeros(batch)
        for k, head in enumerate(self.heads):
            h, c = self.cell(x, (h, c))
            logits = torch.log_softmax(head(h), dim=-1)
            if actions is None:
                a = torch.multinomial(logits.exp(), 1, generator=generator).squeeze(1)
            else:
                a = actions[:, k]
            taken.append(a)
            logp = logp + logits.gather(1, a[:, None]).squeeze(1)
            ent = ent - (logits.exp() * logits).sum(-1)
            if k < len(self.embeds):
                x = self.embeds[k](a)
        return torch.stack(taken, 1), logp, ent


class PPOController(Controller):
    """An LSTM policy trained with proximal policy optimization, as in MnasNet."""

    name = "ppo"
    OPTIONS: dict[str, Any] = {
        "hidden_size": 64,
        "lr": 3e-3,
        "batch_size": 8,
        "epochs": 4,
        "clip": 0.2,
        "baseline_decay": 0.95,
        "entropy_coef": 1e-2,
        "normalize_advantage": True,
        "max_grad_norm": 1.0,
        "init_range": 0.1,
    }
    TELL_REQUIRES_ASK = True

    def __init__(self, decisions: Iterable[Any], seed: int = 0, **options: Any) -> None:
        super().__init__(decisions, seed, **options)
        o = self.options
        # One explicit generator for init and sampling keeps the global torch RNG untouched.
        self._gen = torch.Generator().manual_seed(self.seed)
        # nn modules draw their default init from the global RNG; fork it so it stays untouched
        # (the weights are overwritten from our own generator right after).
        with torch.random.fork_rng(devices=[]):
            self.policy = _Policy(self.sizes, o["hidden_size"])
        with torch.no_grad():
            for p in self.policy.parameters():
                # Small uniform weights (as in ENAS) start the policy close to uniform.
                p.uniform_(-o["init_range"], o["init_range"], generator=self._gen)
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=o["lr"])
        self._baseline: float | None = None
        self._adv_sq: float | None = None  # moving average of squared advantages (their scale)
        self._batch: list[tuple[Indices, float, float]] = []  # (indices, old log-prob, advantage)
        self.num_updates = 0

    @classmethod
    def _check_options(cls, options: dict[str, Any]) -> None:
        o = options
        for key in ("hidden_size", "batch_size", "epochs"):
            if o[key] < 1:
                raise ValueError(f"option {key!r} must be >= 1, got {o[key]}")
        for key in ("lr", "clip", "max_grad_norm", "init_range"):
            if not o[key] > 0:
                raise ValueError(f"option {key!r} must be > 0, got {o[key]}")
        if not 0 <= o["baseline_decay"] < 1:
            raise ValueError(f"option 'baseline_decay' must be in [0, 1), got {o['baseline_decay']}")
        if o["entropy_coef"] < 0:
            raise ValueError(f"option 'entropy_coef' must be >= 0, got {o['entropy_coef']}")

    @property
    def baseline(self) -> float | None:
        """The moving-average reward baseline (None before the first tell)."""
        return self._baseline

    # ---- ask / tell ----------------------------------------------------------------------
    def _propose(self) -> tuple[Indices, Any]:
        with torch.no_grad():
            acts, logp, _ = self.policy.run(1, generator=self._gen)
        return tuple(int(a) for a in acts[0]), float(logp[0])

    def _observe(self, idx: Indices, reward: float, aux: Any, asked: bool) -> None:
        decay = self.options["baseline_decay"]
        if self._baseline is None:
            self._baseline = reward
        adv = reward - self._baseline
        self._baseline = decay * self._baseline + (1 - decay) * reward
        if self.options["normalize_advantage"]:
            # Divide by a running RMS of the advantages so the step size does not depend on the
            # reward's scale (MnasNet rewards differ in the 2nd decimal, toy ones in the 1st).
            sq = adv * adv
            self._adv_sq = sq if self._adv_sq is None else decay * self._adv_sq + (1 - decay) * sq
            adv = adv / math.sqrt(self._adv_sq + 1e-12) if self._adv_sq > 0 else 0.0
        self._batch.append((idx, aux, adv))
        if len(self._batch) >= self.options["batch_size"]:
            self._update()

    def _update(self) -> None:
        o = self.options
        acts = torch.tensor([idx for idx, _, _ in self._batch], dtype=torch.long)
        old = torch.tensor([lp for _, lp, _ in self._batch], dtype=torch.float32)
        adv = torch.tensor([a for _, _, a in self._batch], dtype=torch.float32)
        self._batch = []
        for _ in range(o["epochs"]):
            _, logp, ent = self.policy.run(len(acts), actions=acts)
            ratio = torch.exp(logp - old)
            surrogate = torch.min(ratio * adv, ratio.clamp(1 - o["clip"], 1 + o["clip"]) * adv)
            loss = -surrogate.mean() - o["entropy_coef"] * ent.mean()
            self.optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(self.policy.parameters(), o["max_grad_norm"])
            self.optimizer.step()
        self.num_updates += 1

    # ---- logging -------------------------------------------------------------------------
    def entropy(self) -> float:
        """Policy entropy in nats: the mean over samples of the summed per-step entropies,
        an unbiased estimate of the joint entropy (chain rule), from a fixed private generator."""
        gen = torch.Generator().manual_seed(self.seed)
        with torch.no_grad():
            _, _, ent = self.policy.run(_ENTROPY_SAMPLES, generator=gen)
        return float(ent.mean())

    def probabilities(self) -> list[list[float]]:
        """Per-decision choice probabilities along the most likely path (for inspection)."""
        with torch.no_grad():
            p = self.policy
            h = c = p.start.new_zeros(1, p.start.shape[1])
            x, out = p.start, []
            for k, head in enumerate(p.heads):
                h, c = p.cell(x, (h, c))
                probs = torch.softmax(head(h), -1)[0]
                out.append([float(v) for v in probs])
                if k < len(p.embeds):
                    x = p.embeds[k](probs.argmax()[None])
        return out

    # ---- state ---------------------------------------------------------------------------
    def _algorithm_state(self) -> dict[str, Any]:
        opt = self.optimizer.state_dict()
        return {
            "generator": [int(b) for b in self._gen.get_state()],
            "policy": {k: tensor_to_json(v) for k, v in self.policy.state_dict().items()},
            # Adam's per-parameter state is keyed by int, which JSON would turn into strings.
            "optimizer": {
                "state": [[int(k), {n: tensor_to_json(v) if torch.is_tensor(v) else v for n, v in s.items()}]
                          for k, s in opt["state"].items()],
                "param_groups": opt["param_groups"],
            },
            "baseline": self._baseline,
            "adv_sq": self._adv_sq,
            "batch": [[list(idx), lp, a] for idx, lp, a in self._batch],
            "num_updates": self.num_updates,
        }

    def _load_algorithm_state(self, state: Mapping[str, Any]) -> None:
        self._gen.set_state(torch.tensor(state["generator"], dtype=torch.uint8))
        self.policy.load_state_dict({k: tensor_from_json(v) for k, v in state["policy"].items()})
        opt = state["optimizer"]
        self.optimizer.load_state_dict({
            "state": {int(k): {n: tensor_from_json(v) if isinstance(v, dict) else v for n, v in s.items()}
                      for k, s in opt["state"]},
            "param_groups": opt["param_groups"],
        })
        self._baseline = state["baseline"]
        self._adv_sq = state["adv_sq"]
        self._batch = [(tuple(int(i) for i in idx), float(lp), float(a)) for idx, lp, a in state["batch"]]
        self.num_updates = int(state["num_updates"])
