"""TensorBoard curves of a search: reward, accuracy, cost, best-so-far and controller entropy per evaluation."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any


class TBLog:
    """One SummaryWriter in ``<run>/tensorboard``; step = evaluation index."""

    def __init__(self, run_dir: str | Path, fresh: bool = False) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.dir = Path(run_dir) / "tensorboard"
        if fresh and self.dir.exists():
            # Curves are derived from the journal: on resume they are rewritten from it whole,
            # so events buffered but lost at a kill leave no gap or duplicate.
            shutil.rmtree(self.dir)
        self.writer = SummaryWriter(str(self.dir), flush_secs=30)
        self.best = float("-inf")

    def log(self, record: dict[str, Any]) -> None:
        """Scalars of one journal record."""
        step = int(record["index"])
        w = self.writer
        self.best = max(self.best, float(record["reward"]))
        w.add_scalar("search/reward", record["reward"], step)
        w.add_scalar("search/best_reward", self.best, step)
        w.add_scalar("search/accuracy", record["accuracy"], step)
        w.add_scalar("cost/macs", record["macs"], step)
        w.add_scalar("cost/params", record["params"], step)
        if record.get("latency_ms") is not None:
            w.add_scalar("cost/latency_ms", record["latency_ms"], step)
        if record.get("entropy") is not None:
            w.add_scalar("controller/entropy", record["entropy"], step)
        if record.get("train_time_s") is not None:
            w.add_scalar("time/train_s", record["train_time_s"], step)

    def flush(self) -> None:
        """Write buffered events."""
        self.writer.flush()

    def close(self) -> None:
        """Flush and close."""
        self.writer.close()
