"""The pipeline's stage 2: the search's top candidates and a reference trained for real, then compared.

A short proxy ranks candidates cheaply but not faithfully. As Vertex AI NAS does, the pipeline
trains the search's `stage2.top_k` best candidates (ranked as the search ranks them: by reward,
the mean over seeds where `nas.reseed` re-evaluated them) and a reference network with the
stage-2 recipe (`nas.stage2.train_genotype`, one resumable run folder each under
``<pipeline>/stage2/<name>/``), measures how well the proxy's order predicted the final one
(Kendall tau, `nas.proxycheck.rank_correlations`) and picks the baseline for compound scaling
by final validation accuracy. Test accuracy is reported beside it and never chooses anything.
"""
from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from search_space import parse
from search_space.genotype import Genotype
from search_space.references import REFERENCES, load_genotype, reference

from .errors import UserError
from .journal import atomic_write_text, load_json, save_json
from .proxycheck import rank_correlations
from .reseed import summarize
from .results import Diverged
from .stage2 import RESULT, Stage2Setup, fingerprint, parse_init, train_genotype
from .units import format_macs

RECIPE_FILE = "recipe.json"
DIVERGED_FILE = "diverged.json"


@dataclass(frozen=True)
class Finalist:
    """A network stage 2 trains: a searched candidate or the reference, with what the proxy said of it."""

    name: str                      # its run folder under <pipeline>/stage2/
    kind: str                      # "candidate" or "reference"
    label: str                     # how the report names it: "#12" or "efficientnet-b0"
    genotype: Genotype
    proxy_accuracy: float | None   # mean over seeds where re-seeded; None when its proxy training failed
    proxy_std: float | None        # over seeds; None for one seed
    seeds: int
    record: dict[str, Any]         # its proxy record (journal fields), the grid's baseline record if chosen


@dataclass(frozen=True)
class Final:
    """One finalist after stage 2: its result.json (None if training diverged) and both ranks."""

    finalist: Finalist
    result: dict[str, Any] | None
    reason: str = ""
    proxy_rank: int | None = None
    final_rank: int | None = None

    @property
    def val_accuracy(self) -> float | None:
        """Stage 2's best validation accuracy (EMA weights when on), or None."""
        return None if self.result is None else float(self.result["val_accuracy"])

    @property
    def test_accuracy(self) -> float | None:
        """The test accuracy the stage-2 run reported (never used for a choice), or None."""
        return None if self.result is None or self.result.get("test_accuracy") is None \
            else float(self.result["test_accuracy"])


@dataclass(frozen=True)
class FinalsSummary:
    """Stage 2's outcome: every finalist, the rank correlation and the chosen baseline."""

    finals: list[Final]
    kendall_tau: float | None
    spearman_rho: float | None
    ranked: int                    # models in the correlation
    chosen: Final
    best_candidate: Final
    reference: Final | None
    reference_wins: bool           # the reference's final accuracy is above every candidate's
    baseline_from: str
    reason: str                    # why `chosen`, in a sentence or two (Markdown)


# ---- who is trained ------------------------------------------------------------------------------
def top_candidates(records: list[dict[str, Any]], reseeds: list[dict[str, Any]], k: int) -> list[Finalist]:
    """The search's `k` best distinct candidates by reward (the mean over seeds where re-seeded), best first."""
    stats = {s.record["genotype"]: s for s in summarize(records, reseeds)}
    best: dict[str, tuple[float, dict[str, Any]]] = {}
    for r in records:
        if r.get("status") != "ok" or r["genotype"] in best:
            continue
        s = stats.get(r["genotype"])
        best[r["genotype"]] = (s.mean_reward if s is not None else float(r["reward"]), r)
    ranked = sorted(best.values(), key=lambda t: (-t[0], t[1]["index"]))[:k]
    out = []
    for _, r in ranked:
        s = stats.get(r["genotype"])
        acc = s.mean_accuracy if s is not None else float(r["accuracy"])
        rec = dict(r, accuracy=acc) if s is None else dict(r, accuracy=acc, accuracy_std=s.std_accuracy, seeds=s.n,
                                                           first_seed_accuracy=r["accuracy"])
        out.append(Finalist(name=f"candidate-{r['index']}", kind="candidate", label=f"#{r['index']}",
                            genotype=parse(r["genotype"]), proxy_accuracy=acc,
                            proxy_std=s.std_accuracy if s is not None and s.n > 1 else None,
                            seeds=s.n if s is not None else 1, record=rec))
    return out


def reference_genotype(spec: str | None, resolution: int) -> tuple[str, Genotype] | None:
    """(run folder name, genotype) of `stage2.reference`: a name at the space's resolution, a string or file as is."""
    if spec is None:
        return None
    key = spec.lower().replace("_", "-")
    if key in REFERENCES:
        return key, reference(key).replace(resolution=resolution)
    p = Path(spec)
    name = f"reference-{p.stem}" if p.suffix in (".yaml", ".yml") else "reference"
    return name, load_genotype(spec)


def reference_finalist(name: str, g: Genotype, proxy: dict[str, Any]) -> Finalist:
    """The reference as a finalist, with its proxy record (trained once with the search's proxy budget)."""
    ok = proxy.get("status") == "ok"
    return Finalist(name=name, kind="reference", label=name, genotype=g,
                    proxy_accuracy=float(proxy["accuracy"]) if ok else None, proxy_std=None, seeds=1, record=proxy)


# ---- training ------------------------------------------------------------------------------------
def check_recipe(folder: Path, setup: Stage2Setup, g: Genotype) -> None:
    """Refuse a stage 2 whose recipe or data changed since its first members trained (their numbers would mix)."""
    fp = {k: v for k, v in fingerprint(g, setup, parse_init(None)).items() if k != "genotype"}
    path = folder / RECIPE_FILE
    if path.is_file():
        from . import runfolder

        old = load_json(path)
        diff = runfolder.differences(old, fp)
        if diff:
            raise UserError(f"cannot resume the pipeline's stage 2 in {folder}: its recipe differs from the one its "
                            f"members trained with in {runfolder.describe(old, fp, diff, limit=3)}; resume with the "
                            f"same stage2 and data sections (top_k, reference and baseline_from may change) or use "
                            f"a new --out")
        return
    folder.mkdir(parents=True, exist_ok=True)
    save_json(path, fp)


def train_finalists(finalists: list[Finalist], setup: Stage2Setup, folder: Path,
                    progress: bool = True) -> list[Final]:
    """Train every finalist into ``folder/<name>/`` (finished ones are read back, an interrupted one resumes)."""
    if finalists:
        check_recipe(folder, setup, finalists[0].genotype)
    out: list[Final] = []
    for i, f in enumerate(finalists, 1):
        run = folder / f.name
        if (run / DIVERGED_FILE).is_file():
            out.append(Final(f, None, load_json(run / DIVERGED_FILE).get("reason", "diverged")))
            continue
        if progress and not (run / RESULT).is_file():
            print(f"stage 2 ({i}/{len(finalists)}): {f.label} -> {run}", file=sys.stderr, flush=True)
        try:
            res = train_genotype(f.genotype, setup, run, resume=True, progress=progress)
        except Diverged as e:
            # Kept, so a resumed pipeline does not train a network that is known to diverge again.
            reason = f"training diverged: {' '.join(str(e).split())}"
            save_json(run / DIVERGED_FILE, {"genotype": f.genotype.to_string(), "reason": reason})
            out.append(Final(f, None, reason))
            continue
        out.append(Final(f, res.record))
    return out


# ---- ranks and the choice ---------------------------------------------------------------------------
def ranks(scores: list[float]) -> list[int]:
    """Competition ranks, 1 for the highest score; ties share the better rank."""
    return [1 + sum(o > s for o in scores) for s in scores]


def summarize_finals(finals: list[Final], baseline_from: str = "candidates") -> FinalsSummary:
    """Ranks by proxy and by final accuracy, Kendall tau between them, and the baseline by final accuracy."""
    both = [i for i, f in enumerate(finals) if f.val_accuracy is not None and f.finalist.proxy_accuracy is not None]
    finals = list(finals)
    if both:
        pr = ranks([finals[i].finalist.proxy_accuracy for i in both])  # type: ignore[misc]
        fr = ranks([finals[i].val_accuracy for i in both])  # type: ignore[misc]
        for i, a, b in zip(both, pr, fr):
            finals[i] = dataclasses.replace(finals[i], proxy_rank=a, final_rank=b)
    tau, rho = rank_correlations([finals[i].finalist.proxy_accuracy for i in both],  # type: ignore[misc]
                                 [finals[i].val_accuracy for i in both])  # type: ignore[misc]
    trained = [f for f in finals if f.val_accuracy is not None]
    cands = [f for f in trained if f.finalist.kind == "candidate"]
    if not cands:
        raise UserError("stage 2 trained no searched candidate successfully (all diverged); lower stage2.lr")
    order = {id(f): i for i, f in enumerate(finals)}

    def key(f: Final) -> tuple[float, float, int]:
        # Ties in final accuracy (common on small validation sets) go to the better proxy, then the search's order.
        return (f.val_accuracy or 0.0, f.finalist.proxy_accuracy or -1.0, -order[id(f)])

    best_cand = max(cands, key=key)
    ref = next((f for f in finals if f.finalist.kind == "reference"), None)
    ref_wins = ref is not None and ref.val_accuracy is not None and ref.val_accuracy > (best_cand.val_accuracy or 0.0)
    chosen = ref if ref_wins and baseline_from == "all" else best_cand
    assert chosen is not None
    reason = _reason(chosen, best_cand, cands, ref if ref_wins else None, baseline_from, finals)
    return FinalsSummary(finals, tau, rho, len(both), chosen, best_cand, ref, ref_wins, baseline_from, reason)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def _reason(chosen: Final, best_cand: Final, cands: list[Final], ref: Final | None, baseline_from: str,
            finals: list[Final]) -> str:
    proxy_pick = next(f for f in finals if f.finalist.kind == "candidate")  # the search's own winner
    lines = []
    if ref is not None:
        lines.append(f"**The reference beats every searched candidate:** {ref.finalist.label} reached "
                     f"{_pct(ref.val_accuracy)} final validation accuracy, the best candidate "
                     f"({best_cand.finalist.label}) {_pct(best_cand.val_accuracy)}. On this budget the search did "
                     f"not find a better network than the hand-designed one.")
        if baseline_from == "all":
            lines.append(f"With `stage2.baseline_from: all` the reference is the baseline: the grid and the family "
                         f"below scale {ref.finalist.label}, not a searched network.")
        else:
            lines.append(f"The baseline is still the best searched candidate, {best_cand.finalist.label} "
                         f"(`stage2.baseline_from: candidates`, the default: the pipeline scales what it found); "
                         f"set `stage2.baseline_from: all` to scale the reference instead.")
    if chosen is best_cand:
        what = (f"Baseline: candidate {best_cand.finalist.label}, the best final validation accuracy "
                f"({_pct(best_cand.val_accuracy)}) of the {len(cands)} trained candidates")
        if best_cand is proxy_pick:
            lines.append(what + "; it is also the search's own pick (best proxy reward).")
        else:
            lines.append(what + f", chosen over the search's own pick (best proxy reward), "
                                f"{proxy_pick.finalist.label} (final {_pct(proxy_pick.val_accuracy)}, final rank "
                                f"{proxy_pick.final_rank or '-'}): the baseline follows final accuracy, not the "
                                f"proxy, as Vertex AI NAS does.")
    return " ".join(lines)


# ---- report ----------------------------------------------------------------------------------------
def markdown(s: FinalsSummary, recipe_line: str, folder: str = "stage2") -> list[str]:
    """The report's section on stage 2: the table, the rank correlation and the choice."""
    lines = ["## Stage 2: the top candidates trained for real", "",
             f"The search's {sum(f.finalist.kind == 'candidate' for f in s.finals)} best distinct candidates (by "
             f"reward, the mean over seeds where re-seeded) and the reference, each trained with the stage-2 recipe "
             f"({recipe_line}) in `{folder}/<name>/`. Final accuracy is the best validation accuracy of the "
             f"stage-2 run (EMA weights when on). Proxy rank is by proxy accuracy (the search ranked by reward, "
             f"which also weighs cost), final rank by final accuracy, both among the models below (1 = best, ties "
             f"share a rank).",
             "",
             "| model | params | MACs | proxy accuracy | proxy rank | final val accuracy | final rank | test accuracy |"
             " genotype |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for f in s.finals:
        fi = f.finalist
        proxy = _pct(fi.proxy_accuracy)
        if fi.proxy_std is not None:
            proxy = f"{100 * (fi.proxy_accuracy or 0.0):.2f} +- {100 * fi.proxy_std:.2f}% ({fi.seeds} seeds)"
        ref = " (reference)" if fi.kind == "reference" and fi.label != "reference" else ""
        name = fi.label + ref + (" **(baseline)**" if f is s.chosen else "")
        params = fi.record.get("params") if f.result is None else f.result["params"]
        macs = fi.record.get("macs") if f.result is None else f.result["macs"]
        final = _pct(f.val_accuracy) if f.result is not None else f"failed: {f.reason}"
        lines.append(f"| {name} | {_num(params, '{:,}')} | {'-' if macs is None else format_macs(macs)} | {proxy} | "
                     f"{f.proxy_rank or '-'} | {final} | {f.final_rank or '-'} | {_pct(f.test_accuracy)} | "
                     f"`{fi.genotype.to_string()}` |")
    lines.append("")
    if s.kendall_tau is None:
        lines.append(f"Kendall tau between proxy and final ranks: undefined ({s.ranked} models with both numbers, or "
                     f"all scores equal on one side).")
    else:
        pairs = s.ranked * (s.ranked - 1) // 2
        lines.append(f"**Kendall tau between proxy and final ranks: {s.kendall_tau:+.2f}** over {s.ranked} models "
                     f"({pairs} pairs; Spearman rho {_num(s.spearman_rho, '{:+.2f}')}). Near +1 the proxy orders "
                     f"networks as full training does; near 0 or below, its order is mostly noise at this budget and "
                     f"the top-k by proxy may miss better networks."
                     + (" With so few models tau takes only a few values: read it as a hint." if s.ranked < 5 else ""))
    lines += ["", s.reason + f" Its trained weights: `{folder}/{s.chosen.finalist.name}/best.pt`.", "",
              "Test accuracy is each stage-2 run's one read of its test split, shown for the record: nothing here is "
              "chosen by it.", ""]
    return lines


def _num(x: Any, spec: str) -> str:
    return "-" if x is None else spec.format(x)


def save_summary(path: Path, s: FinalsSummary) -> None:
    """The outcome as JSON, for tools (e.g. the CIFAR study): per model the ranks and accuracies, tau, the choice."""
    rows = [{"name": f.finalist.name, "kind": f.finalist.kind, "genotype": f.finalist.genotype.to_string(),
             "proxy_accuracy": f.finalist.proxy_accuracy, "proxy_std": f.finalist.proxy_std, "seeds": f.finalist.seeds,
             "proxy_rank": f.proxy_rank, "val_accuracy": f.val_accuracy, "final_rank": f.final_rank,
             "test_accuracy": f.test_accuracy, "reason": f.reason} for f in s.finals]
    atomic_write_text(path, json.dumps({"models": rows, "kendall_tau": s.kendall_tau, "spearman_rho": s.spearman_rho,
                                        "chosen": s.chosen.finalist.name, "reference_wins": s.reference_wins,
                                        "baseline_from": s.baseline_from}, indent=1) + "\n")


__all__ = ["Final", "Finalist", "FinalsSummary", "markdown", "ranks", "reference_finalist", "reference_genotype",
           "save_summary", "summarize_finals", "top_candidates", "train_finalists"]
