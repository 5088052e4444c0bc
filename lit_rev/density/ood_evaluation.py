"""Out-of-distribution evaluation of a density model: one row per test set, metrics, histograms.

Scores are per-image bits/dim (lower = more likely, so higher = more OOD). Each OOD set is
compared with the in-distribution test set by :func:`lit_rev.ood.ood_metrics`, the project's
one convention: ``auroc_bpd`` and ``aupr_out_bpd`` take OOD as the positive class,
``aupr_in_bpd`` the in-distribution set, and ``fpr_at_95_tpr_bpd`` is the fraction of the OOD
set accepted at the bits/dim that accepts 95% of the in-distribution set. An AUROC of 1.0
separates perfectly, 0.5 is chance, and **below 0.5 the model finds the OOD set more likely
than its own test set**: the effect of Nalisnick et al. (2019).

OOD scores beyond bits/dim (:mod:`lit_rev.density.scores`, higher = more OOD) add the same
four columns each (``auroc_<score>``, ``aupr_in_<score>``, ``aupr_out_<score>``,
``fpr_at_95_tpr_<score>``), and a long table ``<stem>_scores`` with one row per (score, OOD
set). The files hold every column; the printed table leaves the AUPR columns out to stay
readable (AUROC and FPR@95 only).

A non-finite score (a diverged or untrained model) is never turned into a result: a metric
over NaN/inf values would rank them anyway and look like a finding. Such a score's four cells
are ``None`` (``null`` in the JSON, ``n/a`` in the tables), the ``no_auroc`` column says why,
the ``reading`` says there is none, the report's metadata holds ``status: failed ...`` and the
printed summary says the run failed.
"""

from __future__ import annotations

from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from lit_rev.callbacks import PolyakAveraging
from lit_rev.density.samples import draws_samples, sample_grid
from lit_rev.inference import evaluating, score_batches
from lit_rev.ood import OOD_METRICS, ood_metrics
from lit_rev.report import format_table, log_dir_of, overlaid_histograms, save_figure, write_report

# Per-image score names a density model may produce, all in bits/dim.
SCORE_LABELS = {
    "bpd": "bits/dim",
    "prior_bpd": "-log p(z) part of bits/dim (density term, incl. n_bits)",
    "logdet_bpd": "-log|det| part of bits/dim (volume term)",
}


# The printed table leaves these metrics out (the files hold them): one line per set stays
# readable with AUROC and FPR@95 of every score.
FILE_ONLY_METRICS = ("aupr_in", "aupr_out")


def auroc(in_scores: torch.Tensor, ood_scores: torch.Tensor) -> float:
    """AUROC of separating ``ood_scores`` (positives) from ``in_scores`` by higher score.

    The ``auroc`` of :func:`lit_rev.ood.ood_metrics` (which raises ``ValueError`` for an empty
    set or a non-finite score).
    """
    return ood_metrics(in_scores, ood_scores)["auroc"]


def nonfinite_count(values: torch.Tensor) -> int:
    """How many entries of ``values`` are NaN or infinite."""
    return int((~torch.isfinite(values)).sum()) if len(values) else 0


def checked_metrics(
    in_scores: torch.Tensor, ood_scores: torch.Tensor, in_name: str, name: str
) -> tuple[dict[str, float | None], str | None]:
    """:func:`lit_rev.ood.ood_metrics` of two sets and ``None``, or all ``None`` and why not.

    There are no metrics where a set has no scores or a non-finite one: then every metric is
    ``None`` and the reason says which set and how many scores.

    Args:
        in_scores: the in-distribution set's scores.
        ood_scores: the OOD set's scores.
        in_name: the in-distribution set's name, for the reason.
        name: the OOD set's name, for the reason.
    """
    if not len(in_scores) or not len(ood_scores):
        empty = [n for n, v in ((name, ood_scores), (in_name, in_scores)) if not len(v)]
        return dict.fromkeys(OOD_METRICS), f"no scores for {' and '.join(empty)}"
    bad_ood, bad_in = nonfinite_count(ood_scores), nonfinite_count(in_scores)
    if bad_ood or bad_in:
        sets = ((name, ood_scores, bad_ood), (in_name, in_scores, bad_in))
        counts = ", ".join(f"{bad} of {len(v)} in {n}" for n, v, bad in sets if bad)
        return dict.fromkeys(OOD_METRICS), f"non-finite scores: {counts}"
    return ood_metrics(in_scores, ood_scores), None


def metric_columns(metrics: dict[str, float | None], score: str) -> dict[str, float | None]:
    """``metrics`` of one score as report columns: ``auroc_<score>``, ``aupr_in_<score>``, ..."""
    return {f"{metric}_{score}": metrics[metric] for metric in OOD_METRICS}


def reading(value: float | None, why: str | None = None) -> str:
    """A few words on an AUROC; for a missing one (``None``), the first words of ``why``."""
    if value is None:
        return f"no AUROC: {why.split(':')[0]}" if why else "no AUROC"
    if value < 0.5:
        return "OOD looks MORE likely"
    if value < 0.9:
        return "weakly separated"
    return "separated"


def derived_scores(
    scores: dict[str, dict[str, torch.Tensor]], scorers
) -> dict[str, dict[str, torch.Tensor]]:
    """Per set, every OOD score the ``scorers`` compute from its gathered columns."""
    out: dict[str, dict[str, torch.Tensor]] = {}
    for name, columns in scores.items():
        out[name] = {}
        for scorer in scorers or []:
            out[name].update(scorer.compute(columns))
    return out


def ood_rows(scores: dict[str, dict[str, torch.Tensor]], in_name: str, scorers=None) -> list[dict]:
    """One summary row per set: size, bits/dim and its parts, and OOD metrics against ``in_name``.

    Each row holds the mean and std of bits/dim, the means of its parts, and for bits/dim and
    every score of ``scorers`` the four columns of :data:`lit_rev.ood.OOD_METRICS`:
    ``auroc_<score>``, ``aupr_in_<score>``, ``aupr_out_<score>``, ``fpr_at_95_tpr_<score>``.

    Metrics that cannot be given (a non-finite score in either set, or no scores) are ``None``
    and the row's ``no_auroc`` column says why (``<score>: <reason>``, joined by ``; ``); when
    any set has a non-finite bits/dim, every row gets its count in ``nonfinite_bpd``.
    """
    rows = []
    derived = derived_scores(scores, scorers)
    ref = scores[in_name]["bpd"]
    any_bad = any(nonfinite_count(s["bpd"]) for s in scores.values())
    for name, s in scores.items():
        bpd = s["bpd"].double()
        row = {
            "set": name,
            "role": "in-dist" if name == in_name else "OOD",
            "n": len(bpd),
            "bpd_mean": bpd.mean().item(),
            "bpd_std": bpd.std().item() if len(bpd) > 1 else 0.0,
        }
        if any_bad:
            row["nonfinite_bpd"] = nonfinite_count(bpd)
        for part in ("prior_bpd", "logdet_bpd"):
            if part in s:
                row[part] = s[part].double().mean().item()
        if name != in_name:
            why = {}
            metrics, why["bpd"] = checked_metrics(ref, s["bpd"], in_name, name)
            row.update(metric_columns(metrics, "bpd"))
            for key, values in derived[name].items():
                ref_values = derived[in_name].get(key, values[:0])
                metrics, why[key] = checked_metrics(ref_values, values, in_name, name)
                row.update(metric_columns(metrics, key))
            row["reading"] = reading(row["auroc_bpd"], why["bpd"])
            missing = "; ".join(f"{key}: {text}" for key, text in why.items() if text)
            if missing:
                row["no_auroc"] = missing
        rows.append(row)
    return rows


def failures(scores: dict[str, dict[str, torch.Tensor]], in_name: str, scorers=None) -> list[str]:
    """What makes the evaluation a failed run: every (score, set) with non-finite values."""
    out = []
    derived = derived_scores(scores, scorers)
    for name, s in scores.items():
        for key, values in {"bpd": s["bpd"], **derived[name]}.items():
            bad = nonfinite_count(values)
            if bad:
                label = "bits/dim" if key == "bpd" else key
                out.append(f"{bad} of {len(values)} {label} scores of {name} are non-finite")
    return out


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
    """Write the OOD table (JSON/CSV/Markdown) and overlaid histograms, and print the table.

    The files hold every column of :func:`ood_rows`; the printed table leaves out the AUPR
    columns (:data:`FILE_ONLY_METRICS`) so that it stays readable: it shows AUROC and FPR@95
    of every score. The histograms go to PNG files and, given a ``logger``, to TensorBoard at
    ``step``.

    ``meta["status"]`` in the JSON is ``"ok"``, or ``"failed: ..."`` listing every non-finite
    score (see :func:`failures`); then the printed summary says the run failed and a warning
    is raised.
    """
    rows = ood_rows(scores, in_name, scorers)
    failed = failures(scores, in_name, scorers)
    meta = {**(meta or {}), "status": f"failed: {'; '.join(failed)}" if failed else "ok"}
    out_dir = Path(out_dir)
    write_report(rows, out_dir, stem, meta)
    long_rows = score_rows(rows)
    if scorers:
        write_report(long_rows, out_dir, f"{stem}_scores", meta)
        derived = derived_scores(scores, scorers)
        for key in derived[in_name]:
            present = {name: d[key].float() for name, d in derived.items() if len(d.get(key, []))}
            if len(present) == len(scores):
                fig = overlaid_histograms(
                    present,
                    xlabel=f"{key} (higher = more OOD)",
                    title=f"{key} (trained on {in_name})",
                )
                save_figure(fig, out_dir, f"hist_{key}", logger, step)
    for key, label in SCORE_LABELS.items():
        present = {name: s[key].float().cpu() for name, s in scores.items() if key in s}
        if len(present) == len(scores):
            fig = overlaid_histograms(
                present, xlabel=label, title=f"{label} (trained on {in_name})"
            )
            save_figure(fig, out_dir, f"hist_{key}", logger, step)
    table = format_table(console_rows(rows))
    fooled = [r["set"] for r in rows if r.get("auroc_bpd") is not None and r["auroc_bpd"] < 0.5]
    summary = (
        f"The model gives {', '.join(fooled)} a higher likelihood than its own test set "
        "(AUROC < 0.5): the effect of Nalisnick et al. 2019."
        if fooled
        else "No OOD set is found more likely than the in-distribution test set."
    )
    if failed:
        summary = (
            "THE RUN FAILED: " + "; ".join(failed) + ". An AUROC over such scores means nothing, "
            "so none is given for them (n/a) and no conclusion can be drawn. The model diverged "
            "or is untrained: check the training log for skipped steps (nonfinite='skip'), lower "
            "the learning rate, lengthen warmup_steps or set trainer.gradient_clip_val."
            + (f"\nOf the sets with an AUROC: {summary}" if fooled else "")
        )
        report = out_dir / f"{stem}.md"
        rank_zero_warn(f"OOD evaluation failed: {'; '.join(failed)}; see {report}")
    if scorers:
        best = []
        for r in rows:
            aurocs = {
                k[len("auroc_") :]: v
                for k, v in r.items()
                if k.startswith("auroc_") and k != "auroc_bpd" and v is not None
            }
            if aurocs:
                key = max(aurocs, key=aurocs.get)
                raw = "n/a" if r["auroc_bpd"] is None else f"{r['auroc_bpd']:.3f}"
                fpr = r[f"fpr_at_95_tpr_{key}"]
                best.append(
                    f"{r['set']}: {key} {aurocs[key]:.3f} (FPR@95 {fpr:.3f}; bits/dim {raw})"
                )
        best_text = "; ".join(best) or "none (no AUROC could be given)"
        summary += f"\nBest OOD score per set: {best_text}"
    rank_zero_info(
        "\nOOD evaluation (score = bits/dim, lower = more likely; AUROC: OOD = positive class; "
        f"FPR@95: share of OOD accepted at the threshold accepting 95% of {in_name}; "
        "AUPR-in/out in the files)"
        f"\n{table}\n{summary}\nReport: {out_dir / (stem + '.md')}\n"
    )
    return rows


def console_rows(rows: list[dict]) -> list[dict]:
    """``rows`` without their :data:`FILE_ONLY_METRICS` columns, for the printed table."""
    scores = [k[len("auroc_") :] for r in rows for k in r if k.startswith("auroc_")]
    hidden = {f"{metric}_{score}" for metric in FILE_ONLY_METRICS for score in scores}
    return [{k: v for k, v in r.items() if k not in hidden} for r in rows]


def score_rows(rows: list[dict]) -> list[dict]:
    """The metric columns of ``rows`` in long form: one row per (score, OOD set).

    Each row holds the four metrics of :data:`lit_rev.ood.OOD_METRICS` under their plain
    names (``auroc``, ``aupr_in``, ...). Missing metrics (``None``) carry their reason from
    the row's ``no_auroc`` in ``no_auroc``.
    """
    out = []
    for r in rows:
        notes = r["no_auroc"].split("; ") if r.get("no_auroc") else []
        why = dict(item.split(": ", 1) for item in notes)
        for key in r:
            if key.startswith("auroc_"):
                score = key[len("auroc_") :]
                row = {"score": score, "set": r["set"]}
                row.update({metric: r[f"{metric}_{score}"] for metric in OOD_METRICS})
                if row["auroc"] is None:
                    row["no_auroc"] = why.get(score, "")
                out.append(row)
    return out


def report_meta(module, trainer: Trainer | None = None) -> dict:
    """The OOD report's metadata: how ``module`` scored (network, depth, weights, scores)."""
    network = module.network
    meta = {
        "network": type(network).__name__,
        "likelihood": module.likelihood,
        "n_bits": module.n_bits,
        "dequantisation_at_eval": "uniform noise" if module.hparams.eval_noise else "cell centre",
        "global_step": module.global_step,
        "skipped_steps": int(module.skipped_steps),
    }
    if getattr(network, "importance_samples", None):
        meta["log_prob"] = f"importance-weighted lower bound, {network.importance_samples} samples"
        seed = getattr(network, "eval_seed", None)
        meta["log_prob"] += (
            f"; draws seeded per image by eval_seed={seed}"
            if seed is not None
            else "; draws from the global random stream (eval_seed=None): scores vary by run"
        )
    callbacks = trainer.callbacks if trainer is not None else []
    averaging = [c for c in callbacks if isinstance(c, PolyakAveraging)]
    meta["weights"] = f"Polyak average, decay {averaging[0].decay}" if averaging else "as trained"
    for scorer in module.ood_scores:
        meta.update(scorer.describe())
    return meta


def write_density_report(
    module, scores: dict[str, dict[str, torch.Tensor]], trainer: Trainer | None = None
) -> tuple[list[dict], list[str]]:
    """Write the OOD report of a density ``module``'s ``scores`` and its sample grid.

    Args:
        module: the :class:`~lit_rev.density.DensityModule` that scored.
        scores: ``{set: {column: (N,)}}``, in-distribution first.
        trainer: the run's Trainer: the files go to its log directory (else ``.``) and its
            logger, and its callbacks say which weights were scored.

    Returns:
        The report's rows and what makes the evaluation a failed run (non-finite scores; empty
        when every score is finite), for a caller that should exit non-zero.
    """
    if trainer is None:
        trainer = getattr(module, "_trainer", None)
    out_dir = log_dir_of(trainer) if trainer is not None else Path(".")
    logger = trainer.logger if trainer is not None else None
    meta = report_meta(module, trainer)
    in_name = next(iter(scores))
    scorers = module.ood_scores
    rows = write_ood_report(
        scores, in_name, out_dir, logger, module.global_step, meta, scorers=scorers
    )
    if draws_samples(module):
        from torchvision.utils import save_image

        save_image(sample_grid(module), f"{out_dir}/samples.png")
    kind = "probability mass" if module.likelihood == "mass" else "density"
    rank_zero_info(f"{meta['network']} log_prob is a log-{kind}; n_bits={module.n_bits}")
    return rows, failures(scores, in_name, scorers)


def evaluate_ood(
    module,
    loaders,
    names: list[str],
    max_batches: int | None = None,
    reference_loader=None,
    trainer: Trainer | None = None,
) -> tuple[list[dict], list[str]]:
    """Score every loader with a density ``module`` outside a Trainer loop; write the OOD report.

    Args:
        module: a :class:`~lit_rev.density.DensityModule`.
        loaders: one loader of integer images per set, in-distribution first.
        names: the sets' names, one per loader (``names[0]`` is in-distribution).
        max_batches: score at most this many batches per set.
        reference_loader: in-distribution data for OOD scores that need it (default: the
            DataModule's validation split).
        trainer: the run's Trainer, where there is one (see :func:`write_density_report`).

    Returns:
        The report's rows, one per set, and the failures of :func:`write_density_report`.
    """
    from rich.progress import track

    scores = {}
    with evaluating(module):
        module.prepare_ood_scores(reference_loader, max_batches)
        for name, loader in zip(names, loaders, strict=True):
            total = len(loader) if max_batches is None else min(len(loader), max_batches)
            batches = track(loader, total=total, description=f"OOD eval: {name}", transient=True)
            scores[name] = score_batches(
                lambda batch: module.test_scores(batch[0].to(module.device)), batches, max_batches
            )
    return write_density_report(module, scores, trainer)


class OODEvaluation(Callback):
    """Runs the OOD evaluation on every test set of the DataModule when ``fit`` ends.

    The same scores and report as ``python -m lit_rev test``, so one ``fit`` command trains
    and evaluates. Runs on global rank 0 only (no collective calls). ``ood_failures`` lists
    what made the evaluation a failed run (non-finite scores), for the exit code.
    """

    def __init__(self, max_batches: int | None = None):
        self.max_batches = max_batches
        self.ood_failures: list[str] = []

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Score every test set of the DataModule and write the OOD report (rank 0)."""
        if not trainer.is_global_zero or trainer.datamodule is None:
            return
        dm = trainer.datamodule
        dm.setup("test")
        limit = self.max_batches
        if limit is None and isinstance(trainer.limit_test_batches, int):
            limit = trainer.limit_test_batches
        _, self.ood_failures = evaluate_ood(
            pl_module, dm.test_dataloader(), dm.test_names, max_batches=limit, trainer=trainer
        )
