"""How much a supernet favours one value of a decision: each study candidate scored with every stage's
kernel (or MBConv expansion) set to one value, then to another.

    python bench/supernet_decision_bias.py --checkpoint docs/data/supernet_study_full/supernet.pt \\
        --config configs/supernet_cifar_elastic.yaml --subset 50000 --spread [--decision expansion] \\
        [--out rows.jsonl] [--study docs/data/supernet_study_full] [--set supernet.seed=1 ...]

The candidates are `bench/supernet_study.py`'s (same --seed, --candidates, --spread); everything but
the decision stays as drawn, and each version (as drawn, and with every stage at each value) is
scored like the supernet evaluator does (extract, recalibrate BatchNorm, validation split). A
supernet whose 3x3 members run the centre of shared 5x5 weights, or whose expansion-3 members run
half of the expansion-6 channels, can favour one value more than training each member alone
would. With ``--study DIR`` (a study's folder) it also prints the Kendall tau of each version
against the study's stand-alone reference: how well the supernet ranks the candidates once that
decision is taken out of its scores. Rows already in ``--out`` are not scored again.

``--alone I [I ...] --alone-out FILE`` is the other side: candidates I (1-based) trained alone in both
versions, with the study's reference recipe (``--alone-epochs``, the candidate's search seed), one
JSON line per training; start two processes with different candidates to use two cores. Skips
with a message without CIFAR-10.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

DATA = ROOT.parent / "shared" / "datasets" / "cifar10_uint8.npz"
# decision -> (the Stage field, the short name of a value in the rows, default values compared)
DECISIONS = {"kernel": ("kernel", "k", (3, 5)), "expansion": ("expansion", "e", (3, 6))}


def with_value(genotype, decision: str, value: int):
    """The genotype with every stage's `decision` set to `value` (expansion: MBConv stages only)."""
    field = DECISIONS[decision][0]
    stages = [st if decision == "expansion" and st.op != "ir" else dataclasses.replace(st, **{field: value})
              for st in genotype.stages]
    return genotype.replace(stages=tuple(stages))


def train_alone(args: argparse.Namespace, cfg, gs: list, versions: list[tuple[str, int]], scored: dict) -> None:
    """Candidates `args.alone` trained alone in each version; prints each one's gap next to the supernet's.

    Rows are the study's (`supernet_study._evaluate`): kind the version, genotype the network trained.
    """
    import supernet_study as study

    from nas.results import eval_seed

    ev = study._trainer_evaluator(cfg, args.alone_epochs)
    for i in args.alone:
        if not 1 <= i <= len(gs):
            raise SystemExit(f"error: --alone {i}: the study has candidates 1-{len(gs)}")
        g = gs[i - 1]
        seed = eval_seed(cfg.search.seed, g.to_string())  # the drawn candidate's, as its reference run
        accs = {}
        for key, value in versions:
            member = with_value(g, args.decision, value)
            study._evaluate(key, ev, [member], [seed], args.alone_out)
            accs[key] = study._done(args.alone_out)[(key, member.to_string())]["accuracy"]
        (ka, _), (kb, _) = versions
        sn = scored[g.to_string()]
        print(f"candidate {i} alone ({args.alone_epochs:g} epochs): {ka} {100 * accs[ka]:.2f}%, {kb} "
              f"{100 * accs[kb]:.2f}%, gap {100 * (accs[kb] - accs[ka]):+.2f} points (supernet "
              f"{100 * (sn[kb] - sn[ka]):+.2f})", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, required=True)
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "supernet_cifar_elastic.yaml")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--subset", type=int, default=50000)
    ap.add_argument("--candidates", type=int, default=16)
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--spread", action="store_true")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="config override, e.g. the supernet's own supernet.seed (it draws the recalibration images)")
    ap.add_argument("--decision", choices=sorted(DECISIONS), default="kernel")
    ap.add_argument("--values", type=int, nargs=2, help="the two values compared (default: 3 5 kernels, 3 6 expansion)")
    ap.add_argument("--out", type=Path, help="JSON lines, one per candidate (a rerun continues it)")
    ap.add_argument("--study", type=Path, help="a supernet_study folder: tau of each version vs its reference")
    ap.add_argument("--alone", type=int, nargs="+", metavar="I",
                    help="also train candidates I (1-based) alone in both versions (the stand-alone side)")
    ap.add_argument("--alone-epochs", type=float, default=2.0, help="the stand-alone training (the study's reference)")
    ap.add_argument("--alone-out", type=Path, help="JSON lines of the stand-alone trainings (a rerun continues it)")
    args = ap.parse_args(argv)
    if not args.data.is_file():
        print(f"skipped: CIFAR-10 not found at {args.data} (pass --data PATH to cifar10_uint8.npz)")
        return 0
    import supernet_study as study
    import torch

    from nas.config import load_config
    from nas.evaluate import Evaluator
    from nas.supernet.evaluator import SupernetScorer
    from nas.train import accuracy
    from search_space import SearchSpace

    torch.set_num_threads(1)
    cfg = load_config(args.config, [f"data.path={args.data.resolve()}", f"supernet.checkpoint={args.checkpoint.resolve()}",
                                    "train.threads=1", "train.device=cpu", f"data.subset={args.subset}", *args.sets])
    space = SearchSpace.from_yaml(cfg.space)
    gs = study._candidates(space, args.candidates, args.seed, args.spread)
    splits = Evaluator(cfg.data, cfg.train, cfg.supernet).prepare(space.resolution)
    scorer, dev = SupernetScorer(cfg.supernet, cfg.train), torch.device("cpu")
    _, short, default = DECISIONS[args.decision]
    a, b = args.values or default
    ka, kb = f"{short}{a}", f"{short}{b}"
    for v in (a, b):
        if not space.contains(with_value(gs[0], args.decision, v)):
            print(f"error: {args.decision} {v} is not a choice of every stage of {cfg.space}", file=sys.stderr)
            return 2
    done = {}
    if args.out and args.out.is_file():
        done = {r["genotype"]: r for r in map(json.loads, args.out.read_text().splitlines())
                if {"drawn", ka, kb} <= set(r)}
    rows = []
    for i, g in enumerate(gs, 1):
        row = done.get(g.to_string())
        if row is None:
            row = {"genotype": g.to_string()}
            for key, member in (("drawn", g), (ka, with_value(g, args.decision, a)),
                                (kb, with_value(g, args.decision, b))):
                model = scorer.model(member, splits, dev)
                row[key] = accuracy(model, splits.x_val, splits.y_val, splits, cfg.train, dev)
            if args.out:
                with open(args.out, "a") as f:
                    f.write(json.dumps(row) + "\n")
        rows.append(row)
        print(f"{i}/{len(gs)}: as drawn {100 * row['drawn']:.2f}%, {ka} {100 * row[ka]:.2f}%, "
              f"{kb} {100 * row[kb]:.2f}%  {row['genotype']}", flush=True)
    gaps = [100 * (r[kb] - r[ka]) for r in rows]
    print(f"every {args.decision} {b} instead of {a}: {min(gaps):+.2f} to {max(gaps):+.2f} points, mean "
          f"{statistics.mean(gaps):+.2f} over {len(gaps)} candidates")
    if args.alone:
        if not args.alone_out:
            print("error: --alone needs --alone-out FILE", file=sys.stderr)
            return 2
        train_alone(args, cfg, gs, [(ka, a), (kb, b)], {r["genotype"]: r for r in rows})
    if args.study:
        from nas.proxycheck import rank_correlations

        # The study's main process trains some reference runs too: its rows are in main.jsonl.
        ref = {**study._done(args.study / "main.jsonl"), **study._done(args.study / "standalone.jsonl")}
        have = [r for r in rows if ("standalone", r["genotype"]) in ref]
        truth = [ref[("standalone", r["genotype"])]["accuracy"] for r in have]
        for key in ("drawn", ka, kb):
            tau, rho = rank_correlations([r[key] for r in have], truth)
            shown = "undefined" if tau is None else f"{tau:+.3f} (rho {rho:+.3f})"
            print(f"Kendall tau vs the study's reference, {key}: {shown}, {len(have)} candidates")
    return 0


if __name__ == "__main__":
    sys.exit(main())
