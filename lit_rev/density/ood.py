"""Out-of-distribution evaluation of a density model: one row per test set, AUROC, histograms.

Scores are per-image bits/dim (lower = more likely). The AUROC of an OOD set is computed
against the in-distribution test set with OOD as the positive class and bits/dim as the
score, so 1.0 separates perfectly, 0.5 is chance, and **below 0.5 the model finds the OOD
set more likely than its own test set**: the effect of Nalisnick et al. (2019).

OOD scores beyond bits/dim (:mod:`lit_rev.density.scores`, higher = more OOD) add one
``auroc_<score>`` column each, computed the same way, and a long table
``<stem>_scores`` with one row per (score, OOD set).
"""

from __future__ import annotations

from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info
from torchmetrics.classification import BinaryAUROC

from lit_rev.report import format_table, overlaid_histograms, save_figure, write_report

# Per-image score names a density model may produce, all in bits/dim.
SCORE_LABELS = {
    "bpd": "bits/dim",
    "prior_bpd": "-log p(z) part of bits/dim (density term, incl. n_bits)",
    "logdet_bpd": "-log|det| part of bits/dim (volume term)",
}


def auroc(in_scores: torch.Tensor, ood_scores: torch.Tensor) -> float:
    """AUROC of separating ``ood_scores`` (positives) from ``in_scores`` by higher score."""
    metric = BinaryAUROC()
    scores = torch.cat([in_scores, ood_scores]).double()
    target = torch.cat([torch.zeros(len(in_scores)), torch.ones(len(ood_scores))]).long()
    return float(metric(scores, target))


def reading(value: float) -> str:
    if value < 0.5:
        return "OOD looks MORE likely"
    if value < 0.9:
        return "weakly separated"
    return "separated"


def derived_scores(scores: dict[str, dict[str, torch.Tensor]], scorers) -> dict[str, dict[str, torch.Tensor]]:
    """Per set, every OOD score the ``scorers`` compute from its gathered columns."""
    out: dict[str, dict[str, torch.Tensor]] = {}
    for name, columns in scores.items():
        out[name] = {}
        for scorer in scorers or []:
            out[name].update(scorer.compute(columns))
    return out


def ood_rows(scores: dict[str, dict[str, torch.Tensor]], in_name: str, scorers=None) -> list[dict]:
    """One summary row per set: size, mean/std of bits/dim and its parts, AUROC against ``in_name``
    of bits/dim and of every score of ``scorers``."""
    rows = []
    derived = derived_scores(scores, scorers)
    ref = scores[in_name]["bpd"]
    for name, s in scores.items():
        bpd = s["bpd"].double()
        row = {"set": name, "role": "in-dist" if name == in_name else "OOD", "n": len(bpd), "bpd_mean": bpd.mean().item(), "bpd_std": bpd.std().item() if len(bpd) > 1 else 0.0}
        for part in ("prior_bpd", "logdet_bpd"):
            if part in s:
                row[part] = s[part].double().mean().item()
        if name != in_name:
            row["auroc_bpd"] = auroc(ref, s["bpd"])
            for key, values in derived[name].items():
                ref_values = derived[in_name][key]
                row[f"auroc_{key}"] = auroc(ref_values, values) if len(values) and len(ref_values) else float("nan")
            row["reading"] = reading(row["auroc_bpd"])
        rows.append(row)
    return rows


def write_ood_report(
    scores: dict[str, dict[str, torch.Tensor]],
    in_name: str,
    out_dir: str | Path,
    logger=None,
    step: int = 0,
    meta: dict | None = None,
    stem: str = "ood_report",
    scorers=None,
) -> list[dict]:
    """Write the table (JSON/CSV/Markdown), overlaid histograms (PNG + TensorBoard), print the table."""
    rows = ood_rows(scores, in_name, scorers)
    out_dir = Path(out_dir)
    write_report(rows, out_dir, stem, meta)
    long_rows = score_rows(rows)
    if scorers:
        write_report(long_rows, out_dir, f"{stem}_scores", meta)
        derived = derived_scores(scores, scorers)
        for key in derived[in_name]:
            present = {name: d[key].float() for name, d in derived.items() if len(d.get(key, []))}
            if len(present) == len(scores):
                fig = overlaid_histograms(present, xlabel=f"{key} (higher = more OOD)", title=f"{key} (trained on {in_name})")
                save_figure(fig, out_dir, f"hist_{key}", logger, step)
    for key, label in SCORE_LABELS.items():
        present = {name: s[key].float().cpu() for name, s in scores.items() if key in s}
        if len(present) == len(scores):
            fig = overlaid_histograms(present, xlabel=label, title=f"{label} (trained on {in_name})")
            save_figure(fig, out_dir, f"hist_{key}", logger, step)
    table = format_table(rows)
    fooled = [r["set"] for r in rows if r.get("auroc_bpd", 1.0) < 0.5]
    summary = (
        f"The model gives {', '.join(fooled)} a higher likelihood than its own test set "
        "(AUROC < 0.5): the effect of Nalisnick et al. 2019."
        if fooled
        else "No OOD set is found more likely than the in-distribution test set."
    )
    if scorers:
        best = []
        for r in rows:
            aurocs = {k[len("auroc_"):]: v for k, v in r.items() if k.startswith("auroc_") and k != "auroc_bpd" and v == v}
            if aurocs:
                key = max(aurocs, key=aurocs.get)
                best.append(f"{r['set']}: {key} {aurocs[key]:.3f} (bits/dim {r['auroc_bpd']:.3f})")
        summary += "\nBest OOD score per set: " + "; ".join(best)
    rank_zero_info(f"\nOOD evaluation (score = bits/dim, OOD = positive class; lower bits/dim = more likely)\n{table}\n{summary}\nReport: {out_dir / (stem + '.md')}\n")
    return rows


def score_rows(rows: list[dict]) -> list[dict]:
    """The AUROC columns of ``rows`` in long form: one row per (score, OOD set)."""
    out = []
    for r in rows:
        for key, value in r.items():
            if key.startswith("auroc_"):
                out.append({"score": key[len("auroc_"):], "set": r["set"], "auroc": value})
    return out


class OODEvaluation(Callback):
    """Runs the OOD evaluation on every test set of the DataModule when ``fit`` ends.

    The same scores and report as ``python -m lit_rev test``, so one ``fit`` command trains
    and evaluates. Runs on global rank 0 only (no collective calls).
    """

    def __init__(self, max_batches: int | None = None):
        self.max_batches = max_batches

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero or trainer.datamodule is None:
            return
        dm = trainer.datamodule
        dm.setup("test")
        limit = self.max_batches
        if limit is None and isinstance(trainer.limit_test_batches, int):
            limit = trainer.limit_test_batches
        pl_module.evaluate_ood(dm.test_dataloader(), dm.test_names, max_batches=limit)
