"""The field's naive baseline, as docs/reference.md describes it: a plain eager PyTorch loop.

bf16 autocast, channels_last, data resident on the GPU, cudnn.benchmark on, torch.optim.SGD with
a LambdaLR schedule, augmentation with device tensor ops, one candidate after another. Same
recipe as the project's evaluators (nas.train.make_optimizer / lr_factor), so accuracies compare.
"""
from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F

from nas.config import TrainConfig
from nas.train import lr_factor, make_optimizer
from search_space import Genotype
from search_space.model import build_model


def _augment(x: torch.Tensor, pad: int, flip: bool) -> torch.Tensor:
    """Random flips and padded random crops of a uint8 NCHW batch with device RNG."""
    n, c, h, w = x.shape
    dev = x.device
    if flip:
        x = torch.where((torch.rand(n, device=dev) < 0.5).view(n, 1, 1, 1), x.flip(3), x)
    if pad:
        xp = F.pad(x, (pad, pad, pad, pad))
        oy = torch.randint(0, 2 * pad + 1, (n, 1), device=dev)
        ox = torch.randint(0, 2 * pad + 1, (n, 1), device=dev)
        rows = (oy + torch.arange(h, device=dev))[:, None, :, None]
        cols = (ox + torch.arange(w, device=dev))[:, None, None, :]
        x = xp[torch.arange(n, device=dev)[:, None, None, None], torch.arange(c, device=dev)[None, :, None, None],
               rows, cols]
    return x


def naive_evaluate(g: Genotype, seed: int, x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor,
                   y_test: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...], cfg: TrainConfig,
                   device: torch.device) -> dict[str, float]:
    """Train one candidate with the naive loop and return its test accuracy and wall time (data on `device`)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as the reference baseline ran
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    model = build_model(g, num_classes=10, in_channels=3, dropout=cfg.dropout, drop_connect=cfg.drop_connect,
                        bn_momentum=cfg.bn_momentum).to(device, memory_format=torch.channels_last)
    opt = make_optimizer(model, cfg)
    n = len(y_train)
    bs = min(cfg.batch_size, n)
    per_epoch = max(1, n // bs)
    total = max(1, math.ceil(cfg.epochs * per_epoch))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor(cfg.schedule, total, cfg.warmup))
    m = torch.tensor(mean, device=device).view(1, -1, 1, 1)
    s = torch.tensor(std, device=device).view(1, -1, 1, 1)
    amp = device.type == "cuda"
    step = 0
    first_epoch_s = 0.0
    model.train()
    while step < total:
        perm = torch.randperm(n, device=device)
        for i in range(per_epoch):
            if step == total:
                break
            idx = perm[i * bs:(i + 1) * bs]
            xb = _augment(x_train[idx], cfg.crop_pad, cfg.flip)
            xb = ((xb.float() / 255.0 - m) / s).contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                out = model(xb)
            loss = F.cross_entropy(out.float(), y_train[idx], label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
        if not first_epoch_s:
            if device.type == "cuda":
                torch.cuda.synchronize()
            first_epoch_s = time.perf_counter() - t0
    model.eval()
    correct = 0
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        for i in range(0, len(y_test), cfg.eval_batch_size):
            xb = ((x_test[i:i + cfg.eval_batch_size].float() / 255.0 - m) / s).contiguous(
                memory_format=torch.channels_last)
            correct += int((model(xb).argmax(1) == y_test[i:i + cfg.eval_batch_size]).sum())
    if device.type == "cuda":
        torch.cuda.synchronize()
    return {"accuracy": correct / len(y_test), "wall_s": time.perf_counter() - t0, "first_epoch_s": first_epoch_s,
            "steps": total, "final_loss": float(loss.detach())}


__all__ = ["naive_evaluate"]
