"""The fast proxy evaluator for GPUs: device-resident data, CUDA-graph training steps, several candidates per GPU.

See docs/gpu.md. `FastSession` is the entry point (`nas.evaluate.Evaluator` uses it when
``train.evaluator`` resolves to ``fast``); the pieces are small modules: `plan` (per-step tables),
`augment` (crop/flip/normalise as one gather), `sgd` (a capturable SGD), `runner` (one candidate's
step, eager or graphed), `scheduler` (streams and chunks), `select` (auto/standard/fast).
"""
from .select import resolve_evaluator
from .session import FastSession

__all__ = ["resolve_evaluator", "FastSession"]
