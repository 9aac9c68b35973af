"""The search run: ``python -m nas.search CONFIG [--set key=value ...] [--out DIR] [--resume] [--check]``.

Loop: the controller asks for a sample, the space decodes it into a genotype, the genotype is
costed and trained (unless an identical genotype was evaluated before: then its journaled result
is told again without training), the reward goes back to the controller. The budget counts
distinct evaluations; a controller that keeps proposing known genotypes is given up on after
``search.max_ask_factor x budget`` asks.

Resume is exact: the controller state (including samples asked but not yet told) is saved
atomically after every ask and every tell, each evaluation is journaled (fsync) before it is
told, and evaluation seeds depend only on ``search.seed`` and the genotype. After a kill at any
moment, ``--resume`` restores the controller, finishes its outstanding samples (from the journal
when they were evaluated already, else by training them) and goes on, so the journal, the
controller's history and the best candidate are those of an uninterrupted run.

Scheduling: the executor (``executor.kind``: inline, local worker processes, Ray) has slots; the
controller is asked for a new sample whenever one is free, so with several workers several asks
are outstanding at once and results are told in the order they finish (no generation barrier).
Only this driver writes the journal and the controller state, so each finished evaluation is
recorded exactly once whichever worker ran it. On resume the outstanding asks are re-submitted,
not re-asked. With the inline executor the loop is the sequential one and resume stays exact.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from search_space import SearchSpace, SpaceError, parse
from search_space.yamlfile import read_yaml_file

from . import runfolder
from .config import Config, ConfigError, dump_config, load_config
from .errors import UserError
from .journal import Journal, JournalError, atomic_write_text, check_search_record, load_json, save_json
from .reseed import RESEED_FILE, auto_top_k, check_reseed_record, reseed_seeds, summarize, winner_record
from .results import eval_seed
from .reward import CostModel, LatencyFn, Objective, check_latency_available, latency_predictor
from .units import format_target

# Keys that may change between a run and its resume: where it lives, how far it goes, and where its
# evaluations run (results depend only on genotype and seed, not on the worker); stage2 is read by
# python -m nas.train only (and run folders from before that section existed must still resume).
# Keys that may change on --resume: none of them changes what the search evaluates or tells.
RESUMABLE_CHANGES = ("out", "search.budget", "search.reseed_top_k", "search.reseeds", "executor",
                     "supernet.checkpoint",  # (its sha256 is checked)
                     "stage2")


def _resumable(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in RESUMABLE_CHANGES)


class RunError(UserError):
    """A run folder that cannot be used as asked (exists already, or does not match on resume)."""


@dataclass
class Setup:
    """Everything checked and built before any work: space, controller, objective, evaluator, data shape."""

    config: Config
    space: SearchSpace
    controller: Any
    objective: Objective
    evaluator: Any  # nas.evaluate.Evaluator (imported lazily: torch is slow to import)
    in_channels: int
    num_classes: int
    latency: LatencyFn | None = None  # from a given table; a table to measure is built in the run folder


def prepare(cfg: Config, source: str = "config") -> Setup:
    """Build and check every part of a run; mistakes raise ConfigError/DataError/ObjectiveUnavailable."""
    from . import controllers
    from .evaluate import Evaluator
    from .executors import check_executor

    try:
        space = SearchSpace.from_yaml(cfg.space)
    except SpaceError as e:
        raise ConfigError(f"{source}: key 'space': {e}") from None
    if cfg.search.budget > space.size:
        raise ConfigError(f"{source}: key 'search.budget': {cfg.search.budget} is more than the {space.size} distinct "
                          f"members of the space {cfg.space}")
    if cfg.controller.name.startswith("nni:"):  # NNI's strategies, an optional extra
        from .nni_bridge import NNIUnavailable, check_available

        try:
            check_available(cfg.controller.name)
        except NNIUnavailable as e:
            raise ConfigError(f"{source}: key 'controller.name': {e}") from None
    try:
        if cfg.controller.name.startswith("nni:"):
            from .nni_bridge import build_controller as build_nni

            controller = build_nni(cfg.controller.name, space.decisions, seed=cfg.search.seed,
                                   **cfg.controller.options)
        else:
            controller = controllers.build(cfg.controller.name, space.decisions, seed=cfg.search.seed,
                                           **cfg.controller.options)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{source}: key 'controller.options': {' '.join(str(e).split())}") from None
    check_executor(cfg.executor, cfg.train.device, source)
    objective = cfg.reward_objective()
    if objective.kind == "latency":
        check_latency_available(need_runtime=cfg.objective.lut is None)
    evaluator = Evaluator(cfg.data, cfg.train, cfg.supernet)
    splits = evaluator.prepare(space.resolution)  # loads (or downloads) the data now, not mid-search
    if evaluator.kind == "supernet":  # the checkpoint loads, covers the space and fits the data
        from .supernet.evaluator import check_for_search, validation_note

        check_for_search(evaluator, space, splits, source)
        note = validation_note(len(splits.y_val))
        if note:
            print(f"note: {note}", file=sys.stderr)
    latency = None
    if objective.kind == "latency" and cfg.objective.lut is not None:
        try:  # a given table is checked (resolution, classes) before any work
            latency = latency_predictor(cfg.objective.lut, space, space.resolution, None,
                                        threads=cfg.objective.threads,
                                        measure_missing=cfg.objective.measure_missing,
                                        **cfg.objective.latency_shape(splits.num_classes, splits.in_channels))
        except (ValueError, OSError, KeyError) as e:
            raise ConfigError(f"{source}: key 'objective.lut': {' '.join(str(e).split())}") from None
    return Setup(cfg, space, controller, objective, evaluator, splits.in_channels, splits.num_classes, latency)


def check_out_dir(out: Path) -> None:
    """Refuse a run folder path that is (or lies under) an existing file, before any work."""
    runfolder.check_out_dir(out, RunError)


def _mapping(data: Any, path: Path) -> dict[str, Any]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RunError(f"{path}: not a config mapping (a YAML {type(data).__name__})")
    return data


def open_run_dir(cfg: Config, space: SearchSpace, resume: bool) -> Path:
    """Create the run folder (fresh) or check it matches this config (resume)."""
    out = Path(cfg.out)
    saved_cfg = out / "config.yaml"
    check_out_dir(out)
    if not resume:
        if out.exists() and any(not runfolder.is_leftover(p) for p in out.iterdir()):
            raise RunError(f"run folder {out} exists and is not empty; continue it with --resume or choose "
                           f"another with --out")
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunError(f"cannot create run folder {out}: {e.strerror}") from None
        atomic_write_text(saved_cfg, dump_config(cfg))
        atomic_write_text(out / "space.yaml", yaml.safe_dump(space.to_dict(), sort_keys=False))
        _record_supernet(cfg, out, resume)
        return out
    if not saved_cfg.is_file():
        raise RunError(f"cannot resume: {out} has no config.yaml (start it without --resume)")
    saved = _mapping(read_yaml_file(saved_cfg, RunError, "run config"), saved_cfg)
    old, new = runfolder.flatten(saved), runfolder.flatten(cfg.to_dict())
    # A key a newer version added is absent from an older run's config.yaml: at its default it is no change.
    defaults = runfolder.flatten(Config().to_dict())
    diff = runfolder.differences(saved, cfg.to_dict(), lambda k: _resumable(k) or (
        k not in old and k in defaults and new.get(k) == defaults[k]))
    if diff:
        raise RunError(f"cannot resume {out}: the config differs from its config.yaml in "
                       f"{runfolder.describe(saved, cfg.to_dict(), diff)}; resume with the same config or use a new --out")
    space_file = out / "space.yaml"
    if space_file.is_file() and read_yaml_file(space_file, RunError, "run space") != space.to_dict():
        raise RunError(f"cannot resume {out}: the search space {cfg.space} changed since the run started")
    if any(old.get(k) != new.get(k) for k in set(old) | set(new) if _resumable(k) and k != "out"):
        atomic_write_text(saved_cfg, dump_config(cfg))
    _record_supernet(cfg, out, resume)
    return out


def _record_supernet(cfg: Config, out: Path, resume: bool) -> None:
    """With the supernet evaluator: the checkpoint's sha256 goes into supernet.json; a resume must find the same."""
    if cfg.train.evaluator == "supernet" and cfg.supernet.checkpoint:
        from .supernet.evaluator import record_checkpoint

        try:
            record_checkpoint(cfg.supernet.checkpoint, out, resume)
        except OSError as e:
            raise RunError(f"cannot read supernet.checkpoint {cfg.supernet.checkpoint}: {e.strerror}") from None


@dataclass
class Summary:
    """The outcome of a search run."""

    run_dir: Path
    evaluations: int
    asks: int
    best: dict[str, Any] | None
    wall_s: float
    gave_up: bool = False


class SearchRun:
    """One search in a run folder: the ask / evaluate / tell loop with its journal and state."""

    def __init__(self, setup: Setup, run_dir: Path, progress: bool = True) -> None:
        self.s = setup
        self.cfg = setup.config
        self.run_dir = run_dir
        self.journal = Journal(run_dir / "journal.jsonl", check_search_record)
        self.state_path = run_dir / "controller.json"
        self.progress = progress
        self.records: list[dict[str, Any]] = []
        self.cache: dict[str, dict[str, Any]] = {}
        self.costs: CostModel | None = None
        self.executor: Any = None  # built when the run starts (worker pools start processes)
        self.running: dict[str, _Running] = {}  # genotype string -> its evaluation in flight
        self.best: dict[str, Any] | None = None

    # ---- state ----------------------------------------------------------------------------
    def _save_state(self) -> None:
        save_json(self.state_path, {"journal_len": len(self.records),
                                    "state": self.s.controller.state_dict()})

    def _restore(self) -> None:
        # Everything is checked before the journal is touched: a refused resume changes no file.
        self.records = self.journal.read()
        for r in self.records:
            self.cache.setdefault(r["genotype"], r)
        if self.state_path.is_file():
            try:
                saved = load_json(self.state_path)
            except JournalError as e:
                raise RunError(f"cannot resume {self.run_dir}: {e}") from None
            if not (isinstance(saved, dict) and isinstance(saved.get("state"), dict)
                    and isinstance(saved.get("journal_len"), int) and not isinstance(saved["journal_len"], bool)
                    and saved["journal_len"] >= 0):
                raise RunError(f"cannot resume {self.run_dir}: {self.state_path} is not a controller state "
                               f"(needs 'journal_len' and 'state')")
            if saved["journal_len"] > len(self.records):
                raise RunError(f"cannot resume {self.run_dir}: controller.json is at evaluation "
                               f"{saved['journal_len']} but the journal has only {len(self.records)}")
            try:
                self.s.controller.load_state_dict(saved["state"])
            except (KeyError, ValueError, TypeError, IndexError, AttributeError, RuntimeError) as e:
                raise RunError(f"cannot resume {self.run_dir}: controller.json does not fit "
                               f"({type(e).__name__}: {e})") from None
        elif self.records:
            raise RunError(f"cannot resume {self.run_dir}: journal.jsonl has entries but controller.json is missing")
        self.journal.read(repair=True)  # set a torn last line aside so appends start a line of their own
        if self.journal.set_aside is not None and self.progress:
            print(f"note: {self.journal.path} ended in a record cut off mid-write; its bytes are kept in "
                  f"{self.journal.set_aside.name} and that evaluation runs again", file=sys.stderr)
        for r in self.records:
            self._track_best(r)

    def _track_best(self, r: dict[str, Any]) -> bool:
        if r["status"] == "ok" and (self.best is None or r["reward"] > self.best["reward"]):
            self.best = r
            return True
        return False

    # ---- one sample ---------------------------------------------------------------------------
    def _costs(self) -> CostModel:
        if self.costs is None:
            latency = self.s.latency
            if self.s.objective.kind == "latency" and latency is None:
                o = self.cfg.objective
                # Built (or resumed) into the run folder, so --resume reuses the measured table.
                latency = latency_predictor(o.lut, self.s.space, self.s.space.resolution, self.run_dir,
                                            threads=o.threads, progress=self.progress,
                                            **o.latency_shape(self.s.num_classes, self.s.in_channels))
            self.costs = CostModel(self.s.in_channels, self.s.num_classes, latency)
        return self.costs

    def _record(self, p: _Running, res: Any) -> dict[str, Any]:
        """The journal line of a finished evaluation (failed ones get reward 0)."""
        reward = self.s.objective.reward(res.accuracy, p.costs) if res.ok else 0.0
        return {
            "index": len(self.records), "genotype": p.key, "decisions": dict(p.samples[0]),
            "accuracy": res.accuracy, "reward": reward, "cost": self.s.objective.cost(p.costs),
            "macs": p.costs.macs, "params": p.costs.params, "latency_ms": p.costs.latency_ms,
            "train_time_s": res.train_time_s, "eval_time_s": res.eval_time_s, "steps": res.steps,
            "epochs": res.epochs, "final_loss": res.final_loss, "status": res.status, "reason": res.reason,
            "seed": p.seed, "device": res.device, "entropy": p.entropy,
            "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }

    def _submit(self, sample: dict[str, Any]) -> bool:
        """Tell a known genotype's journaled result at once, else start (or join) its evaluation.

        Returns False when the sample needs a new evaluation but the budget has no room for it
        (it then stays outstanding in the controller, as before a resume).
        """
        from .executors import Job

        g = self.s.space.decode(sample)
        key = g.to_string()
        record = self.cache.get(key)
        if record is not None:
            self.s.controller.tell(sample, record["reward"])
            self._save_state()
            return True
        if key in self.running:  # asked again while it trains: one evaluation answers both asks
            self.running[key].samples.append(sample)
            return True
        if len(self.records) + len(self.running) >= self.cfg.search.budget:
            return False
        seed = eval_seed(self.cfg.search.seed, key)
        self.running[key] = _Running(key, [sample], seed, self._costs()(g), float(self.s.controller.entropy()))
        self.executor.submit(Job(key, key, seed))
        return True

    def _finish(self, key: str, res: Any, tb: Any, bar: Any) -> None:
        """Journal a finished evaluation (durable before the controller hears of it), then tell it."""
        p = self.running.pop(key)
        record = self._record(p, res)
        self.journal.append(record)
        self.records.append(record)
        self.cache[key] = record
        if tb is not None:
            tb.log(record)
            tb.flush()
        if self._track_best(record):
            atomic_write_text(self.run_dir / "best.yaml", _best_yaml(record, self.cfg.name))
        for sample in p.samples:
            self.s.controller.tell(sample, record["reward"])
        self._save_state()
        if bar is not None:
            bar.set_postfix_str(self._postfix(), refresh=False)
            bar.update(1)

    def _postfix(self) -> str:
        run = f"running {len(self.running)}, " if self.executor is not None and self.executor.slots > 1 else ""
        if self.best is None:
            return f"{run}best: -"
        b = self.best
        return f"{run}best reward {b['reward']:.4f} acc {100 * b['accuracy']:.1f}%"

    # ---- the loop -------------------------------------------------------------------------------
    def run(self) -> Summary:
        """Search until the budget of distinct evaluations is spent (or the controller only repeats)."""
        from tqdm import tqdm

        from .report import write_outputs
        from .tblog import TBLog

        start = time.perf_counter()
        self._restore()
        budget = self.cfg.search.budget
        max_asks = budget * self.cfg.search.max_ask_factor
        self._costs()  # a latency table is built before the first candidate, with its own progress bar
        tb = TBLog(self.run_dir, fresh=True)
        for r in self.records:
            tb.log(r)
        tb.flush()
        ctl = self.s.controller
        gave_up = finished = False
        from .executors import build_executor

        self.executor = build_executor(self.cfg.executor, self.s.evaluator, self.cfg.train.device)
        if self.progress and self.executor.slots > 1:
            print(f"executor: {self.executor.describe()}", file=sys.stderr)
        bar = tqdm(total=budget, initial=min(len(self.records), budget), desc="search", unit="eval",
                   disable=not self.progress, file=sys.stderr, dynamic_ncols=True, mininterval=1.0)
        try:
            bar.set_postfix_str(self._postfix(), refresh=False)
            # Samples asked before a kill and never told: re-submitted (not re-asked), in asking order.
            backlog = deque(ctl.outstanding())
            while True:
                # Keep every slot busy: the controller is asked as soon as a worker frees up.
                while self.executor.free() > 0 and not (gave_up or finished):
                    if backlog:
                        self._submit(backlog.popleft())
                        continue
                    if len(self.records) + len(self.running) >= budget:
                        break
                    if ctl.num_asked >= max_asks:
                        gave_up = True
                        break
                    if not getattr(ctl, "can_ask", _always)():
                        finished = not self.running  # e.g. an NNI strategy that has run out of candidates
                        break
                    sample = ctl.ask()
                    self._save_state()  # the ask is part of the state (PPO keeps its log-prob)
                    self._submit(sample)
                if not self.running:
                    break
                for done in self.executor.wait():
                    self._finish(done.job.key, done.result, tb, bar)
                bar.set_postfix_str(self._postfix(), refresh=False)
        finally:
            self.executor.close()
            close = getattr(ctl, "close", None)  # e.g. the thread of an NNI strategy
            if close is not None:
                close()
            bar.close()
            tb.close()
        note = ""
        if gave_up:
            note = (f"gave up after {ctl.num_asked} asks gave only {len(self.records)} distinct candidates of the "
                    f"budget {budget}: the controller keeps proposing genotypes it has seen")
        elif finished and len(self.records) < budget:
            note = (f"the controller stopped proposing after {len(self.records)} distinct candidates of the "
                    f"budget {budget}")
        if note:
            print(f"warning: {note}", file=sys.stderr)
        reseeds = self._reseed()
        best = winner_record(summarize(self.records, reseeds)) or self.best
        o = self.s.objective
        write_outputs(self.run_dir, self.records, self.cfg.to_dict(), o.target, note, (o.alpha, o.beta), reseeds)
        return Summary(self.run_dir, len(self.records), ctl.num_asked, best, time.perf_counter() - start,
                       gave_up)

    def _reseed(self) -> list[dict[str, Any]]:
        """Train the top candidates with more seeds (journaled in reseed.jsonl, resumable); all such records."""
        from tqdm import tqdm

        from .executors import Job, build_executor
        from .report import top_records

        k = auto_top_k(self.cfg.search.reseed_top_k, self.cfg.train)
        if k == 0:
            return []
        journal = Journal(self.run_dir / RESEED_FILE, check_reseed_record)
        done = journal.read(repair=True)
        have = {(r["genotype"], r["seed"]) for r in done}
        pending: dict[str, tuple[dict[str, Any], int]] = {}
        for r in top_records(self.records, k):
            for seed in reseed_seeds(self.cfg.search.seed, r["genotype"], self.cfg.search.reseeds):
                if (r["genotype"], seed) not in have:
                    pending[f"{r['genotype']}#{seed}"] = (r, seed)
        if not pending:
            return done
        bar = tqdm(total=len(pending), desc="reseed top", unit="eval", disable=not self.progress, file=sys.stderr,
                   dynamic_ncols=True, mininterval=1.0)
        executor = build_executor(self.cfg.executor, self.s.evaluator, self.cfg.train.device)
        try:
            for key, (r, seed) in pending.items():
                executor.submit(Job(key, r["genotype"], seed))
            while pending:
                for d in executor.wait():
                    r, seed = pending.pop(d.job.key)
                    res = d.result
                    costs = self._costs()(parse(r["genotype"]))
                    rec = {"genotype": r["genotype"], "index": r["index"], "seed": seed, "accuracy": res.accuracy,
                           "reward": self.s.objective.reward(res.accuracy, costs) if res.ok else 0.0,
                           "status": res.status, "reason": res.reason, "train_time_s": res.train_time_s,
                           "time": datetime.now(timezone.utc).isoformat(timespec="seconds")}
                    journal.append(rec)
                    done.append(rec)
                    bar.update(1)
        finally:
            executor.close()
            bar.close()
        return done


@dataclass
class _Running:
    """An evaluation in flight: the asks it answers, its seed, costs and the controller's entropy at the ask."""

    key: str
    samples: list[dict[str, Any]]
    seed: int
    costs: Any
    entropy: float


def _always() -> bool:
    return True


def _best_yaml(record: dict[str, Any], name: str | None) -> str:
    from .report import best_yaml

    return best_yaml(record, f"{name or 'search'}-best")


def run_search(cfg: Config, resume: bool = False, progress: bool = True) -> Summary:
    """Run (or resume) a search described by a loaded config; returns its summary."""
    setup = prepare(cfg)
    run_dir = open_run_dir(cfg, setup.space, resume)
    return SearchRun(setup, run_dir, progress=progress).run()


def _describe(setup: Setup) -> str:
    cfg = setup.config
    o = setup.objective
    target = "" if o.target is None else f" target {format_target(o.target, o.kind)}, alpha {o.alpha}, beta {o.beta}"
    return (f"config ok: space {cfg.space} ({len(setup.space.decisions)} decisions, {setup.space.size:.3g} members), "
            f"controller {cfg.controller.name}, objective {o.kind}{target}, data {cfg.data.source} "
            f"({setup.in_channels} channels, {setup.num_classes} classes), budget {cfg.search.budget}, "
            f"executor {cfg.executor.kind}, out {cfg.out}")


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; config mistakes exit 2 with one line on stderr."""
    ap = argparse.ArgumentParser(prog="python -m nas.search", description="Hardware-aware architecture search.")
    ap.add_argument("config", help="search config YAML (e.g. configs/mnas.yaml)")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config key, value parsed as YAML (repeatable), e.g. objective.target=200M")
    ap.add_argument("--out", help="run folder (default: the config's out, else runs/<config name>)")
    ap.add_argument("--resume", action="store_true", help="continue the run in the run folder")
    ap.add_argument("--check", action="store_true", help="validate the config and the data, then exit")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    try:
        sets = list(args.sets) + ([f"out={args.out}"] if args.out else [])
        cfg = load_config(args.config, sets)
        check_out_dir(Path(cfg.out))
        setup = prepare(cfg, args.config)
        if args.check:
            print(_describe(setup))
            return 0
        run_dir = open_run_dir(cfg, setup.space, args.resume)
        summary = SearchRun(setup, run_dir, progress=not args.no_progress).run()
    except (UserError, SpaceError) as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted; continue with: python -m nas.search {args.config} --resume", file=sys.stderr)
        return 130
    b = summary.best
    best = "none trained" if b is None else (f"reward {b['reward']:.4f}, accuracy {100 * b['accuracy']:.2f}%, "
                                            f"{b['macs']:,} MACs, {b['params']:,} params"
                                            + (f", {b['latency_ms']:.3f} ms" if b.get("latency_ms") else "")
                                            + f"\n  {b['genotype']}")
    print(f"{summary.evaluations} evaluations ({summary.asks} asks) in {summary.wall_s:.1f} s -> {run_dir}\n"
          f"best: {best}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
