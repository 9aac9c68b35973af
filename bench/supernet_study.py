"""Does the supernet rank candidates like stand-alone training, and how much cheaper is it? (issue 11)

    python bench/supernet_study.py [--resume] [--out runs/supernet_study] [--data PATH.npz]

On CIFAR-10 (``../shared/datasets/cifar10_uint8.npz``; the study skips with a message when it is
absent) with the recipe of ``--config`` (default ``configs/supernet_cifar.yaml``: space
``space_cifar_narrow.yaml``), on ``--subset`` images (default 5,000: 4,000 to train on, 1,000 held
out, on which every estimator is scored), one torch thread per process:

1. trains the supernet (uniform single-path sampling, ``--supernet-epochs``), resumable;
2. scores K random members with inherited weights (extract, recalibrate BatchNorm, validate);
3. trains each of them alone for ``--proxy-epochs`` (1): today's per-candidate short-training proxy;
4. trains each of them alone for ``--standalone-epochs`` (5): the stand-alone reference. The cost
   comparison's standard evaluator trains ``--standard-epochs`` (5); its time is taken from these
   runs (set-up and evaluation as measured, their training scaled to that many epochs).

``--retest N`` trains N candidates (spaced evenly over the list) alone again with another seed, which
measures the reference's own noise (a reference noisier than the candidates' differences caps any tau; the
report simulates that ceiling);
``--variant NAME --sn-set KEY=VALUE`` trains and scores another supernet recipe on the same candidates.
``--test-images N`` trains every candidate alone again with the reference's recipe and seed and scores
it on the validation split and on N images of CIFAR-10's test split (a fixed random draw), which nothing else
reads: a reference free of the small validation split's sampling noise (the estimators keep scoring
on the validation split, as a search does). Start it twice to use both cores; the report then ranks
every estimator against the test accuracies too. ``--supernet-test N`` scores the candidates with every
supernet of the study (the main one and each variant, as trained) on the same N test images as well:
the supernets' own evaluation noise (how far two supernets agree on 2,000 validation images against
10,000 test images). Start it twice to use both cores.

Any other estimator of the same candidates (an earlier, shorter reference; a supernet of another
study) joins the report as a file ``OUT/estimator-NAME.jsonl`` of rows ``{"genotype", "accuracy",
"status"}``, one per candidate (a study's own row files qualify: their ``kind`` is ignored). The
report also ranks every estimator against the candidates' depth, width and number of layers with
the space's largest expansion and kernel: what each one rewards.

Steps 1-3 run in this process, step 4 in a child process at the same time (one thread each; a
2-core machine). Every finished item is appended to a JSON-lines file at once, so ``--resume``
after a kill continues where it stopped (the supernet from its last checkpoint). At the end it
prints the table and writes ``OUT/supernet_study.json``: Kendall tau and Spearman rho of the
supernet and of the short proxy against the stand-alone accuracies, and candidates per hour of
the supernet evaluator (its training amortized over a 1,000-candidate search) vs the standard
5-epoch evaluator.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.claims import alive, claim  # noqa: E402 - after the path set-up

DATA = ROOT.parent / "shared" / "datasets" / "cifar10_uint8.npz"
MARKER = b"supernet_study"  # in the command line of this study's processes
CONFIG = ROOT / "configs" / "supernet_cifar.yaml"
SPREAD_POOL = 64  # --spread: random members drawn per candidate, then cut into strata of multiply-adds
SEARCH_SIZE = 1000  # the search the supernet's training is amortized over


def _sets(args: argparse.Namespace, out: Path) -> list[str]:
    return [f"data.path={args.data}", f"supernet.checkpoint={out / 'supernet' / 'supernet.pt'}",
            "train.threads=1", "train.device=cpu", f"supernet.epochs={args.supernet_epochs}",
            f"data.subset={args.subset}", f"out={out / 'search'}"]


def _candidates(space, k: int, seed: int, spread: bool = False) -> list:
    """`k` distinct random members; `spread`: one random member from each of `k` equal strata of multiply-adds."""
    rng = random.Random(seed)
    out: dict[str, object] = {}
    want = SPREAD_POOL * k if spread else k
    for _ in range(100 * want):  # a space with fewer members than asked stops the draw
        if len(out) >= want:
            break
        g = space.sample(rng)
        out.setdefault(g.to_string(), g)
    if not spread:
        return list(out.values())[:k]
    from search_space.cost import cost

    pool = sorted(out.values(), key=lambda g: (cost(g).macs, g.to_string()))
    edges = [round(i * len(pool) / k) for i in range(k + 1)]
    return [rng.choice(pool[a:b]) for a, b in zip(edges, edges[1:])]


def _done(path: Path) -> dict[tuple[str, str], dict]:
    rows: dict[tuple[str, str], dict] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line torn by a kill
            rows[(r["kind"], r["genotype"])] = r
    return rows


def _append(path: Path, row: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _log(msg: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {msg}", flush=True)


def _evaluate(kind: str, ev, gs: list, seeds: list[int], path: Path, claims: Path | None = None,
              reverse: bool = False, test: tuple | None = None, claim_prefix: str = "standalone") -> None:
    """Evaluate every candidate not yet in `path` (or the main and stand-alone files, with `claims`);
    with `test` (images, labels) the candidate is trained with `ev`'s recipe and also scored on them."""
    ev.prepare(gs[0].resolution)  # the data is loaded once, outside the timed evaluations
    order = list(range(len(gs)))[::-1] if reverse else list(range(len(gs)))
    for i in order:
        g, seed = gs[i], seeds[i]
        key = g.to_string()
        done = {**_done(path), **(_done(path.parent / "main.jsonl") if claims else {}),
                **(_done(path.parent / "standalone.jsonl") if claims else {})}
        if (kind, key) in done or (claims is not None and not claim(claims / f"{claim_prefix}-{i}", MARKER)):
            continue
        t0 = time.perf_counter()
        extra = {}
        if test is None:
            r = ev.evaluate(g, seed)
        else:
            r, extra = _train_and_test(ev, g, seed, test)
        wall = time.perf_counter() - t0 - extra.get("test_eval_s", 0.0)
        row = {"kind": kind, "genotype": key, "accuracy": r.accuracy, "status": r.status, "reason": r.reason,
               "train_time_s": r.train_time_s, "eval_time_s": r.eval_time_s, "wall_s": wall, "steps": r.steps,
               "epochs": r.epochs, **extra}
        if ev.train_cfg.evaluator == "supernet":  # the report tells rescorings of one checkpoint apart by it
            row["score_kernel"] = ev.supernet_cfg.score_kernel
        _append(path, row)
        more = f", test {100 * extra['test_accuracy']:.2f}%" if "test_accuracy" in extra else ""
        _log(f"{kind} {i + 1}/{len(gs)}: {100 * r.accuracy:.2f}%{more} in {wall:.1f} s ({r.status})  {key}")


def _train_and_test(ev, g, seed: int, test: tuple) -> tuple:
    """(EvalResult on the validation split, {test_accuracy, test_images, test_eval_s}) of one stand-alone training."""
    from nas.results import EvalResult
    from nas.train import accuracy, train_model

    splits = ev.prepare(g.resolution)
    model = ev.built(g, seed, splits)
    out = train_model(model, splits, ev.train_cfg, seed, ev.device)
    t0 = time.perf_counter()
    acc = accuracy(model, splits.x_val, splits.y_val, splits, ev.train_cfg, ev.device)
    t1 = time.perf_counter()
    x, y = test
    test_acc = accuracy(model, x, y, splits, ev.train_cfg, ev.device)
    r = EvalResult(accuracy=acc, train_time_s=out.train_time_s, steps=out.steps, epochs=out.epochs,
                   final_loss=out.final_loss, eval_time_s=t1 - t0, device=str(ev.device), seed=seed)
    return r, {"test_accuracy": test_acc, "test_images": len(y), "test_eval_s": time.perf_counter() - t1}


def _setup(args: argparse.Namespace, out: Path):
    from nas.config import load_config
    from nas.results import eval_seed
    from search_space import SearchSpace

    cfg = load_config(args.config, _sets(args, out))
    space = SearchSpace.from_yaml(cfg.space)
    gs = _candidates(space, args.candidates, args.seed, args.spread)
    seeds = [eval_seed(cfg.search.seed, g.to_string()) for g in gs]
    return cfg, gs, seeds


def _trainer_evaluator(cfg, epochs: float):
    from nas.evaluate import Evaluator

    return Evaluator(cfg.data, dataclasses.replace(cfg.train, evaluator="standard", epochs=float(epochs), steps=None))


def run_standalone(args: argparse.Namespace, out: Path) -> None:
    """Part B (the child): every candidate trained alone for the long budget."""
    import torch

    torch.set_num_threads(1)
    cfg, gs, seeds = _setup(args, out)
    _evaluate("standalone", _trainer_evaluator(cfg, args.standalone_epochs), gs, seeds, out / "standalone.jsonl",
              claims=out / "claims")
    _log("stand-alone trainings done (here)")


def retest_picks(k: int, n: int) -> list[int]:
    """Which of `k` candidates ``--retest n`` trains again: `n` spaced evenly over the list (the cost range, with --spread)."""
    n = min(n, k)
    return [i * k // n for i in range(n)]


def run_retest(args: argparse.Namespace, out: Path) -> int:
    """``--retest N`` candidates trained alone again with another seed: the reference's own noise."""
    import torch

    from nas.results import eval_seed

    torch.set_num_threads(1)
    cfg, gs, _ = _setup(args, out)
    gs = [gs[i] for i in retest_picks(len(gs), args.retest)]
    seeds = [eval_seed(cfg.search.seed + 1, g.to_string()) for g in gs]
    _evaluate("standalone-retest", _trainer_evaluator(cfg, args.standalone_epochs), gs, seeds, out / "retest.jsonl",
              claims=out / "claims", claim_prefix=f"retest{len(gs)}")
    return report(args, out)


def _test_part(x, y, n: int) -> tuple:
    """`n` of the test images, a fixed random draw (CIFAR-10's file is ordered by class: no prefix)."""
    from nas.data.split import random_indices

    idx = random_indices(len(y), n, 0)
    return x[idx], y[idx]


def run_test(args: argparse.Namespace, out: Path) -> int:
    """Every candidate trained alone again (reference recipe and seed), scored on validation and test images."""
    import torch

    from nas.data.test_split import load_test

    torch.set_num_threads(1)
    cfg, gs, seeds = _setup(args, out)
    x, y = load_test(cfg.data, gs[0].resolution)
    test = _test_part(x, y, args.test_images)
    _evaluate("standalone-test", _trainer_evaluator(cfg, args.standalone_epochs), gs, seeds, out / "test.jsonl",
              claims=out / "claims", test=test, claim_prefix="test")
    return report(args, out)


def run_supernet_test(args: argparse.Namespace, out: Path) -> int:
    """Every supernet of the study scores the candidates on the same N test images too (rows ``KIND@test``)."""
    import torch

    from nas.config import load_config
    from nas.data.test_split import load_test
    from nas.evaluate import Evaluator
    from nas.train import accuracy

    torch.set_num_threads(1)
    cfg, gs, _ = _setup(args, out)
    path = out / "supernet-test.jsonl"
    test = None
    for kind, folder, sets in _variants(out):
        ckpt = folder / "supernet.pt"
        if not ckpt.is_file():
            continue
        vcfg = load_config(args.config, _sets(args, out) + sets + [f"supernet.checkpoint={ckpt}"])
        ev = Evaluator(vcfg.data, vcfg.train, vcfg.supernet)
        splits = ev.prepare(gs[0].resolution)
        if test is None:
            x, y = load_test(vcfg.data, gs[0].resolution)
            test = _test_part(x, y, args.supernet_test)
        scorer = ev.supernet_scorer()
        for i, g in enumerate(gs):
            key = g.to_string()
            if (f"{kind}@test", key) in _done(path) or not claim(out / "claims" / f"sntest-{kind}-{i}", MARKER):
                continue
            t0 = time.perf_counter()
            # the evaluator's own member and recalibration: same images, same seed
            model = scorer.model(scorer.scored_member(g), splits, ev.device)
            val = accuracy(model, splits.x_val, splits.y_val, splits, vcfg.train, ev.device)
            acc = accuracy(model, test[0], test[1], splits, vcfg.train, ev.device)
            _append(path, {"kind": f"{kind}@test", "genotype": key, "accuracy": acc, "validation_accuracy": val,
                           "test_images": len(test[1]), "status": "ok", "wall_s": time.perf_counter() - t0})
            _log(f"{kind} {i + 1}/{len(gs)}: validation {100 * val:.2f}%, test {100 * acc:.2f}%")
    return report(args, out)


def _alive(pid: int) -> bool:
    return alive(pid, MARKER)


def _start_child(args: argparse.Namespace, out: Path):
    pid_file = out / "standalone.pid"
    if pid_file.is_file():
        pid = int(pid_file.read_text().strip() or 0)
        if pid and _alive(pid):
            _log(f"stand-alone trainings already running (pid {pid})")
            return pid
    argv = [sys.executable, __file__, "--part", "standalone", "--out", str(out), "--data", str(args.data),
            "--config", str(args.config),
            "--candidates", str(args.candidates), "--seed", str(args.seed), "--subset", str(args.subset),
            "--standalone-epochs", str(args.standalone_epochs), "--supernet-epochs", str(args.supernet_epochs),
            *(["--spread"] if args.spread else [])]
    log = open(out / "standalone.log", "a")
    p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    pid_file.write_text(f"{p.pid}\n")
    _log(f"stand-alone trainings started in pid {p.pid} (log {out / 'standalone.log'})")
    return p


def run_main(args: argparse.Namespace, out: Path) -> int:
    import torch

    from nas.evaluate import Evaluator
    from nas.supernet.evaluator import check_for_search
    from nas.supernet.train import train_supernet

    torch.set_num_threads(1)
    cfg, gs, seeds = _setup(args, out)
    child = _start_child(args, out) if args.standalone_epochs > 0 else None
    sn_dir = out / "supernet"
    sets_file = out / "main-sets.json"
    if sets_file.is_file() and json.loads(sets_file.read_text()) != args.sn_set:
        print(f"error: this study's supernet was started with --sn-set {json.loads(sets_file.read_text())}",
              file=sys.stderr)
        return 2
    sets_file.write_text(json.dumps(args.sn_set) + "\n")
    if args.sn_set:  # the supernet's own recipe; candidates keep the config's train section
        from nas.config import load_config

        sn_cfg = load_config(args.config, _sets(args, out) + args.sn_set)
        cfg = dataclasses.replace(cfg, supernet=sn_cfg.supernet)
    else:
        sn_cfg = cfg
    ckpt = Path(cfg.supernet.checkpoint)
    if not ckpt.is_file():
        _log(f"training the supernet of {cfg.space} ({cfg.supernet.sampling}, {cfg.supernet.epochs:g} epochs) "
             f"in {sn_dir}")
        s = train_supernet(sn_cfg, sn_dir, resume=True, progress=args.progress)
        _log(f"supernet trained: {s.steps} steps, {s.train_s:.0f} s of steps, largest {100 * (s.largest_acc or 0):.1f}%"
             f", smallest {100 * (s.smallest_acc or 0):.1f}%")
    ev = Evaluator(cfg.data, sn_cfg.train, cfg.supernet)
    from search_space import SearchSpace

    space = SearchSpace.from_yaml(cfg.space)
    check_for_search(ev, space, ev.prepare(space.resolution), str(args.config))
    _evaluate("supernet", ev, gs, seeds, out / "main.jsonl")
    if args.proxy_epochs > 0:
        _evaluate("proxy", _trainer_evaluator(cfg, args.proxy_epochs), gs, seeds, out / "main.jsonl")
    if args.standalone_epochs > 0:  # then help with the stand-alone queue, from its other end
        _log("taking stand-alone trainings from the end of the queue")
        _evaluate("standalone", _trainer_evaluator(cfg, args.standalone_epochs), gs, seeds, out / "main.jsonl",
                  claims=out / "claims", reverse=True)
    if child is not None:
        _log("waiting for the stand-alone trainings")
        if isinstance(child, int):
            while _alive(child):
                time.sleep(10)
        else:
            child.wait()
    return report(args, out, cfg, gs)


def _variants(out: Path) -> list[tuple[str, Path, list[str]]]:
    """(kind, supernet folder, extra --set) of the main supernet and of every variant trained in `out`."""
    main_sets = out / "main-sets.json"
    found = [("supernet", out / "supernet", json.loads(main_sets.read_text()) if main_sets.is_file() else [])]
    for spec in sorted(out.glob("variant-*.json")):
        v = json.loads(spec.read_text())
        found.append((f"supernet:{v['name']}", out / f"supernet-{v['name']}", v["sets"]))
    return found


SCORE_KEY = "supernet.score_kernel="


def scoring(rows: list[dict], sets: list[str]) -> str:
    """How a supernet of the study scored its members: as its rows record, else as its --sn-set says, else ``member``.

    Rows and variants from before ``supernet.score_kernel`` existed were scored as drawn."""
    recorded = [r["score_kernel"] for r in rows if r.get("score_kernel")]
    if recorded:
        return recorded[-1]
    explicit = [s[len(SCORE_KEY):] for s in sets if s.startswith(SCORE_KEY)]
    return explicit[-1] if explicit else "member"


def training(sets: list[str]) -> tuple[str, ...]:
    """A supernet's training recipe: its --sn-set without the scoring key (a rescoring shares its checkpoint)."""
    return tuple(s for s in sets if not s.startswith(SCORE_KEY))


def self_tau(accs: list[float], sd: float, trials: int = 2000, seed: int = 0) -> float | None:
    """Expected Kendall tau between two trainings of these candidates, each `accs` plus seed noise of sd `sd`.

    The ceiling of any estimator's tau against one such training. Slightly optimistic: `accs` carry
    one draw of that noise already, which widens their spread."""
    import numpy as np
    from scipy.stats import kendalltau

    if len(accs) < 2 or sd <= 0:
        return 1.0 if len(set(accs)) == len(accs) > 1 else None
    rng = np.random.default_rng(seed)
    a = np.asarray(accs, dtype=float)
    taus = [kendalltau(a + rng.normal(0, sd, a.size), a + rng.normal(0, sd, a.size)).statistic for _ in range(trials)]
    return float(np.mean(taus))


def standard_seconds(runs: list[dict], epochs: float) -> float | None:
    """Mean seconds of the standard `epochs`-epoch evaluator, timed from the stand-alone runs.

    The runs' set-up and evaluation as measured, plus their measured training scaled to `epochs` (an
    epoch costs the same at every point of the schedule): cut when the reference trains longer than
    the standard proxy, extended when it trains shorter."""
    w = [r["wall_s"] - r["train_time_s"] * (1.0 - epochs / r["epochs"]) for r in runs if r.get("epochs")]
    return sum(w) / len(w) if w else None


def report(args: argparse.Namespace, out: Path, cfg=None, gs=None) -> int:
    from nas.proxycheck import rank_correlations
    from search_space.cost import cost

    if cfg is None:
        cfg, gs, _ = _setup(args, out)
    rows = {**_done(out / "main.jsonl"), **_done(out / "standalone.jsonl"), **_done(out / "retest.jsonl"),
            **_done(out / "test.jsonl"), **_done(out / "supernet-test.jsonl")}
    for f in sorted(out.glob("variant-*.jsonl")):
        rows.update(_done(f))
    keys = [g.to_string() for g in gs]

    def acc(kind: str, field: str = "accuracy") -> list[float | None]:
        return [rows[(kind, k)].get(field) if (kind, k) in rows and rows[(kind, k)]["status"] == "ok" else None
                for k in keys]

    def corr(a: list, b: list) -> dict:
        idx = [i for i in range(len(keys)) if a[i] is not None and b[i] is not None]
        tau, rho = rank_correlations([a[i] for i in idx], [b[i] for i in idx])
        return {"kendall_tau": tau, "spearman_rho": rho, "n": len(idx)}

    def mean_wall(kind: str) -> float | None:
        w = [rows[(kind, k)]["wall_s"] for k in keys if (kind, k) in rows]
        return sum(w) / len(w) if w else None

    px, sa = acc("proxy"), acc("standalone")
    again = acc("standalone-retest")
    diffs = [100 * (b - a) for a, b in zip(sa, again) if a is not None and b is not None]
    retest = ({"n": len(diffs), "differences_points": diffs,
               "mean_abs_difference_points": sum(abs(d) for d in diffs) / len(diffs),
               "seed_sd_points": (sum(d * d for d in diffs) / len(diffs) / 2) ** 0.5,
               "vs_first": corr(sa, again)} if diffs else None)
    if retest:
        retest["simulated_self_tau"] = self_tau([a for a in sa if a is not None], retest["seed_sd_points"] / 100)
    macs = [float(cost(g).macs) for g in gs]  # the zero-cost baseline: bigger is better
    per_px = mean_wall("proxy")
    per_std = standard_seconds([rows[("standalone", k)] for k in keys if ("standalone", k) in rows],
                               args.standard_epochs)
    estimators = []
    scores: dict[str, list[float | None]] = {}  # each supernet's accuracies, read from the rows once
    recipes: dict[str, tuple[str, tuple[str, ...]]] = {}  # kind -> (scoring, training recipe)
    for kind, folder, sets in _variants(out):
        recipes[kind] = (scoring([rows[(kind, k)] for k in keys if (kind, k) in rows], sets), training(sets))
        summary_file = folder / "summary.json"
        summary = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
        per = mean_wall(kind)
        scores[kind] = acc(kind)
        e = {"kind": kind, "sets": sets, "score_kernel": recipes[kind][0], "training": summary,
             "vs_standalone": corr(scores[kind], sa),
             "vs_proxy": corr(scores[kind], px), "score_s": per}
        if per is not None and summary.get("train_s") is not None:
            # process-seconds: a training under torchrun occupies world_size processes (one thread each)
            e["training_s"] = summary["train_s"] * int(summary.get("world_size", 1))
            e["per_candidate_s"] = per + e["training_s"] / SEARCH_SIZE
            e["candidates_per_hour"] = 3600 / e["per_candidate_s"]
            if per_std:
                e["speedup_vs_standard"] = e["candidates_per_hour"] / (3600 / per_std)
        estimators.append(e)
    # How far two supernets agree bounds how well either can rank anything: seed and recalibration noise.
    kinds = list(scores)
    mean_score = {}  # per way of scoring, an ensemble of distinct checkpoints: each candidate's mean score
    for how in dict.fromkeys(recipes[k][0] for k in kinds):
        members, trained = [], set()
        for k in kinds:
            if recipes[k][0] == how and recipes[k][1] not in trained:  # two scorings alike of one checkpoint: once
                members.append(k)
                trained.add(recipes[k][1])
        if len(members) < 2:
            continue
        means = [sum(scores[k][i] for k in members) / len(members) if all(scores[k][i] is not None for k in members)
                 else None for i in range(len(keys))]
        mean_score[how] = {"supernets": members, "vs_standalone": corr(means, sa), "vs_proxy": corr(means, px)}
    agreement = [{"a": a, "b": b, **corr(scores[a], scores[b])} for i, a in enumerate(kinds) for b in kinds[i + 1:]]
    tested = acc("standalone-test", "test_accuracy")
    test_ref = None
    if any(t is not None for t in tested):
        rerun = acc("standalone-test")
        same = [100 * abs(b - a) for a, b in zip(sa, rerun) if a is not None and b is not None]
        test_ref = {"images": max(rows[("standalone-test", k)].get("test_images", 0) for k in keys
                                  if ("standalone-test", k) in rows),
                    "validation_vs_test": corr(sa, tested), "proxy": corr(px, tested), "macs": corr(macs, tested),
                    "supernets": {kind: corr(s, tested) for kind, s in scores.items()},
                    "rerun_max_validation_difference_points": max(same) if same else None}
    others = {}  # estimator-NAME.jsonl: any other estimator's accuracies of the same candidates
    for f in sorted(out.glob("estimator-*.jsonl")):
        by_key = {r["genotype"]: r for r in _done(f).values()}
        others[f.stem[len("estimator-"):]] = [by_key[k]["accuracy"] if k in by_key and by_key[k]["status"] == "ok"
                                              else None for k in keys]
    on_test = {kind: acc(f"{kind}@test") for kind in scores if any(v is not None for v in acc(f"{kind}@test"))}
    supernet_test = None
    if on_test:  # the supernets scored on test images: their agreement without the validation split's noise
        supernet_test = {
            "images": max(rows[(f"{k}@test", g)].get("test_images", 0) for k in on_test for g in keys
                          if (f"{k}@test", g) in rows),
            "validation_vs_test": {k: corr(scores[k], s) for k, s in on_test.items()},
            "vs_standalone": {k: corr(s, sa) for k, s in on_test.items()},
            "vs_standalone_test": {k: corr(s, tested) for k, s in on_test.items()} if test_ref else None,
            "agreement": [{"a": a, "b": b, **corr(on_test[a], on_test[b])}
                          for i, a in enumerate(list(on_test)) for b in list(on_test)[i + 1:]]}
    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} CPUs (load average {os.getloadavg()[1]:.1f} over the last 5 minutes), "
                   f"torch {__import__('torch').__version__}, 1 torch thread per process, 2 processes",
        "config": str(args.config.name), "space": str(Path(cfg.space).name), "candidates": len(keys),
        "sample": "spread" if args.spread else "random",
        "train_images": int(round(cfg.data.subset * (1 - cfg.data.val_fraction))) if cfg.data.subset else None,
        "val_images": int(round(cfg.data.subset * cfg.data.val_fraction)) if cfg.data.subset else None,
        "supernet_recipe": dataclasses.asdict(cfg.supernet), "train_recipe": dataclasses.asdict(cfg.train),
        "proxy_epochs": args.proxy_epochs, "standalone_epochs": args.standalone_epochs,
        "standard_epochs": args.standard_epochs, "standalone_retest": retest,
        "proxy_vs_standalone": corr(px, sa), "macs_vs_standalone": corr(macs, sa), "amortized_over": SEARCH_SIZE,
        "standard_per_candidate_s": per_std, "proxy_per_candidate_s": per_px,
        "standard_candidates_per_hour": 3600 / per_std if per_std else None,
        "supernets": estimators, "supernet_mean": mean_score, "supernet_agreement": agreement,
        "test_reference": test_ref,
        "supernets_on_test": supernet_test,
        "other_estimators": {name: {"vs_standalone": corr(a, sa), "vs_proxy": corr(a, px)} for name, a in others.items()},
        "tastes": tastes(gs, {"stand-alone": sa, "proxy": px, **scores, **others}, corr),
        "rows": [{"genotype": k, "macs": int(macs[i]), "standalone": sa[i], "standalone_test": tested[i],
                  "proxy": px[i],
                  **{kind: s[i] for kind, s in scores.items()},
                  **{f"{kind}@test": s[i] for kind, s in on_test.items()},
                  **{f"estimator:{name}": a[i] for name, a in others.items()}} for i, k in enumerate(keys)],
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "supernet_study.json").write_text(json.dumps(result, indent=1) + "\n")
    print(format_table(result))
    return 0


def properties(gs: list) -> dict[str, list[float]]:
    """Architectural properties of the candidates whose rank an estimator may follow: depth, width, large choices."""
    big_k = max(st.kernel for g in gs for st in g.stages)
    big_e = max(float(st.expansion) for g in gs for st in g.stages)
    return {"depth (layers)": [float(sum(st.layers for st in g.stages)) for g in gs],
            "width (channels)": [float(sum(st.channels for st in g.stages)) for g in gs],  # summed over stages
            f"expansion-{big_e:g} layers": [float(sum(st.layers for st in g.stages if float(st.expansion) == big_e))
                                           for g in gs],
            f"{big_k}x{big_k}-kernel layers": [float(sum(st.layers for st in g.stages if st.kernel == big_k))
                                               for g in gs]}


def tastes(gs: list, estimators: dict[str, list[float | None]], corr) -> dict[str, dict[str, float | None]]:
    """Kendall tau of each estimator against each property of `properties`: what it rewards."""
    props = properties(gs)
    return {name: {p: corr(a, v)["kendall_tau"] for p, v in props.items()} for name, a in estimators.items()
            if any(x is not None for x in a)}


def sample_words(n: int, spread: bool) -> str:
    """How the report names the candidates: random members, or spread over the cost range (``--spread``)."""
    return f"{n} members spread over the multiply-add range" if spread else f"{n} random members"


def format_table(r: dict) -> str:
    def f(v, pct=False):
        if v is None:
            return "-"
        return f"{100 * v:.2f}%" if pct else f"{v:+.3f}"

    kinds = [e["kind"] for e in r["supernets"]]
    lines = [f"supernet study ({sample_words(r['candidates'], r.get('sample') == 'spread')} of {r['space']}, "
             f"{r['train_images']} training "
             f"and {r['val_images']} validation images of CIFAR-10, {r['date']})",
             f"{'#':>3} {'MMACs':>6} {'alone':>8} {'test':>8} {'proxy':>8} "
             + " ".join(f"{k[:14]:>14}" for k in kinds) + "  genotype"]
    for i, row in enumerate(r["rows"], 1):
        mm = f"{row['macs'] / 1e6:.1f}" if "macs" in row else "-"
        lines.append(f"{i:>3} {mm:>6} {f(row['standalone'], True):>8} {f(row.get('standalone_test'), True):>8} "
                     f"{f(row['proxy'], True):>8} "
                     + " ".join(f"{f(row[k], True):>14}" for k in kinds) + f"  {row['genotype']}")
    lines.append("")
    lines.append(f"{'estimator (vs stand-alone, ' + format(r['standalone_epochs'], 'g') + ' epochs)':<48}"
                 f"{'Kendall tau':>12}{'Spearman rho':>14}{'n':>4}{'s/candidate':>13}{'cand./hour':>12}")
    c = r["proxy_vs_standalone"]
    per_px = r["proxy_per_candidate_s"] or 0.0
    lines.append(f"{'short proxy (' + format(r['proxy_epochs'], 'g') + ' epoch, per candidate)':<48}"
                 f"{f(c['kendall_tau']):>12}{f(c['spearman_rho']):>14}{c['n']:>4}"
                 f"{per_px:>13.1f}{(3600 / per_px if per_px else 0):>12.1f}")
    if "macs_vs_standalone" in r:
        c = r["macs_vs_standalone"]
        lines.append(f"{'multiply-adds alone (no training)':<48}{f(c['kendall_tau']):>12}{f(c['spearman_rho']):>14}"
                     f"{c['n']:>4}")
    for e in r["supernets"]:
        c = e["vs_standalone"]
        t = e.get("training", {})
        at = ", largest kernel" if e.get("score_kernel") == "largest" else ""
        name = f"{e['kind']} ({t.get('sampling', '?')}, {t.get('epochs', 0):.0f} ep{at})"
        lines.append(f"{name:<48}{f(c['kendall_tau']):>12}{f(c['spearman_rho']):>14}{c['n']:>4}"
                     f"{e.get('per_candidate_s', 0):>13.2f}{e.get('candidates_per_hour', 0):>12.0f}")
    for how, m in (r.get("supernet_mean") or {}).items():
        c = m["vs_standalone"]
        name = f"mean score of {len(m['supernets'])} supernets" + (" (largest kernel)" if how == "largest" else "")
        lines.append(f"{name:<48}{f(c['kendall_tau']):>12}{f(c['spearman_rho']):>14}{c['n']:>4}")
    for name, e in (r.get("other_estimators") or {}).items():
        c = e["vs_standalone"]
        lines.append(f"{name + ' (estimator-' + name + '.jsonl)':<48}{f(c['kendall_tau']):>12}"
                     f"{f(c['spearman_rho']):>14}{c['n']:>4}")
    std = format(r.get("standard_epochs", r["standalone_epochs"]), "g")
    if r["standard_per_candidate_s"]:
        src = "the stand-alone runs" if std == format(r["standalone_epochs"], "g") else "timed from the stand-alone runs"
        lines.append(f"{'standard ' + std + '-epoch proxy (' + src + ')':<48}"
                     f"{'':>12}{'':>14}{'':>4}{r['standard_per_candidate_s']:>13.1f}"
                     f"{r['standard_candidates_per_hour']:>12.1f}")
    if r.get("supernet_agreement"):
        lines.append("supernets against each other (Kendall tau; the noise of training and recalibration):")
        for c in r["supernet_agreement"]:
            lines.append(f"  {c['a']} vs {c['b']}: {f(c['kendall_tau'])} (n {c['n']})")
    if r.get("standalone_retest"):
        t = r["standalone_retest"]
        lines.append(f"stand-alone test-retest (another training seed, {t['n']} candidates): mean |difference| "
                     f"{t['mean_abs_difference_points']:.2f} points, one training's seed noise about "
                     f"{t['seed_sd_points']:.2f} points (sd); the two trainings rank them at tau "
                     f"{f((t.get('vs_first') or {}).get('kendall_tau'))}")
        if t.get("simulated_self_tau") is not None:
            lines.append(f"  with that noise two trainings of the {r['candidates']} candidates would agree at about tau "
                         f"{f(t['simulated_self_tau'])} (simulated): the ceiling of any estimator's tau here")
    t = r.get("test_reference")
    if t:
        lines.append("")
        lines.append(f"against the same stand-alone trainings scored on {t['images']} CIFAR-10 test images "
                     f"(estimators still scored on the validation split):")
        named = [("stand-alone accuracy on the validation split", t["validation_vs_test"]),
                 ("short proxy", t["proxy"]), ("multiply-adds alone", t["macs"]),
                 *((k, c) for k, c in t["supernets"].items())]
        for name, c in named:
            lines.append(f"{name:<48}{f(c['kendall_tau']):>12}{f(c['spearman_rho']):>14}{c['n']:>4}")
        if t.get("rerun_max_validation_difference_points") is not None:
            lines.append(f"(the re-run trainings' validation accuracies differ from the first ones by at most "
                         f"{t['rerun_max_validation_difference_points']:.2f} points)")
    t = r.get("supernets_on_test")
    if t:
        lines.append("")
        lines.append(f"the supernets scored on {t['images']} CIFAR-10 test images (Kendall tau):")
        for k, c in t["validation_vs_test"].items():
            ref = (t.get("vs_standalone_test") or {}).get(k)
            lines.append(f"  {k}: against its own validation scores {f(c['kendall_tau'])}, against the stand-alone "
                         f"reference {f(t['vs_standalone'][k]['kendall_tau'])}"
                         + (f" (on test images {f(ref['kendall_tau'])})" if ref else "") + f" (n {c['n']})")
        for c in t["agreement"]:
            lines.append(f"  {c['a']} vs {c['b']} on test images: {f(c['kendall_tau'])} (n {c['n']})")
    if r.get("tastes"):
        props = list(next(iter(r["tastes"].values())))
        lines.append("")
        lines.append("what each estimator rewards (Kendall tau against a property of the candidates):")
        lines.append(f"{'':<28}" + "".join(f"{p[:22]:>24}" for p in props))
        for name, t in r["tastes"].items():
            lines.append(f"{name[:28]:<28}" + "".join(f"{f(t[p]):>24}" for p in props))
    for e in r["supernets"]:
        if "speedup_vs_standard" in e:
            lines.append(f"{e['kind']}: {e['training_s']:.0f} s of supernet training / {r['amortized_over']} "
                         f"candidates + {e['score_s']:.2f} s scoring = {e['per_candidate_s']:.2f} s a candidate: "
                         f"{e['speedup_vs_standard']:.1f}x the standard {std}-epoch proxy's "
                         f"candidates per hour")
    return "\n".join(lines)


def run_variant(args: argparse.Namespace, out: Path) -> int:
    """Another supernet recipe (``--variant NAME --sn-set KEY=VALUE ...``) scored on the same candidates."""
    import torch

    from nas.config import load_config
    from nas.evaluate import Evaluator
    from nas.supernet.evaluator import check_for_search
    from nas.supernet.train import train_supernet
    from search_space import SearchSpace

    torch.set_num_threads(1)
    name = args.variant
    spec = out / f"variant-{name}.json"
    if spec.is_file() and json.loads(spec.read_text())["sets"] != args.sn_set:
        print(f"error: variant {name} was started with {json.loads(spec.read_text())['sets']}", file=sys.stderr)
        return 2
    spec.write_text(json.dumps({"name": name, "sets": args.sn_set}) + "\n")
    folder = out / f"supernet-{name}"
    cfg = load_config(args.config, _sets(args, out) + [f"supernet.checkpoint={folder / 'supernet.pt'}"] + args.sn_set)
    space = SearchSpace.from_yaml(cfg.space)
    gs = _candidates(space, args.candidates, args.seed, args.spread)
    from nas.results import eval_seed

    seeds = [eval_seed(cfg.search.seed, g.to_string()) for g in gs]
    if not Path(cfg.supernet.checkpoint).is_file():
        _log(f"variant {name}: training the supernet with {args.sn_set} in {folder}")
        s = train_supernet(cfg, folder, resume=True, progress=args.progress)
        _log(f"variant {name}: {s.steps} steps, {s.train_s:.0f} s, largest {100 * (s.largest_acc or 0):.1f}%, "
             f"smallest {100 * (s.smallest_acc or 0):.1f}%")
    ev = Evaluator(cfg.data, cfg.train, cfg.supernet)
    check_for_search(ev, space, ev.prepare(space.resolution), str(args.config))
    _evaluate(f"supernet:{name}", ev, gs, seeds, out / f"variant-{name}.jsonl")
    return report(args, out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "supernet_study")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--config", type=Path, default=CONFIG, help="the supernet config (its space, data and recipe)")
    ap.add_argument("--resume", action="store_true", help="continue a study in --out")
    ap.add_argument("--candidates", type=int, default=16)
    ap.add_argument("--seed", type=int, default=2024, help="which random members are the candidates")
    ap.add_argument("--spread", action="store_true",
                    help="candidates spread over the space's multiply-adds: one random member from each of "
                         "--candidates equal strata of a random pool (a search's population spans the cost range)")
    ap.add_argument("--subset", type=int, default=5000, help="CIFAR-10 images used (80%% train, 20%% validation)")
    ap.add_argument("--supernet-epochs", type=float, default=40.0)
    ap.add_argument("--proxy-epochs", type=float, default=1.0)
    ap.add_argument("--standalone-epochs", type=float, default=5.0, help="the stand-alone reference's training")
    ap.add_argument("--standard-epochs", type=float, default=5.0,
                    help="the standard evaluator of the cost comparison (timed from the stand-alone runs, "
                         "their training scaled to these epochs)")
    ap.add_argument("--progress", action="store_true", help="a progress bar for the supernet training")
    ap.add_argument("--report", action="store_true", help="only print and write the table from what is done")
    ap.add_argument("--variant", help="train and score another supernet recipe named so, on the same candidates")
    ap.add_argument("--sn-set", action="append", default=[], metavar="KEY=VALUE",
                    help="config overrides of the supernet's training (repeatable), e.g. train.lr=0.1; "
                         "the candidates' trainings keep the config's")
    ap.add_argument("--retest", type=int, default=0, metavar="N",
                    help="train N candidates, spaced evenly over the list, alone again with another seed (the "
                         "reference's own noise); start it twice to use two cores")
    ap.add_argument("--test-images", type=int, default=0, metavar="N",
                    help="train every candidate alone again and score it on N CIFAR-10 test images too (a reference "
                         "without the validation split's sampling noise); start it twice to use two cores")
    ap.add_argument("--supernet-test", type=int, default=0, metavar="N",
                    help="score the candidates with every supernet of the study on N CIFAR-10 test images too "
                         "(the supernets' own evaluation noise); start it twice to use two cores")
    ap.add_argument("--part", choices=["main", "standalone"], default="main", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if not args.data.is_file():
        print(f"skipped: CIFAR-10 not found at {args.data} (pass --data PATH to cifar10_uint8.npz)")
        return 0
    args.data = args.data.resolve()
    args.config = args.config.resolve()
    out = args.out.resolve()
    if args.report:
        return report(args, out)
    if args.variant:
        return run_variant(args, out)
    if args.retest:
        return run_retest(args, out)
    if args.test_images:
        return run_test(args, out)
    if args.supernet_test:
        return run_supernet_test(args, out)
    if args.part == "standalone":
        run_standalone(args, out)
        return 0
    if out.exists() and any(out.iterdir()) and not args.resume:
        print(f"error: {out} exists; continue it with --resume or choose another --out", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    _log(f"supernet study in {out}: {args.candidates} candidates, supernet {args.supernet_epochs:g} epochs, "
         f"proxy {args.proxy_epochs:g}, stand-alone {args.standalone_epochs:g} epochs")
    return run_main(args, out)


if __name__ == "__main__":
    sys.exit(main())
