"""The benchmark's table, its summary and heat maps, and the files they are written to."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch

from lit_rev.density.ood_evaluation import checked_metrics
from lit_rev.evaluation.ood_benchmark.data import Scores
from lit_rev.ood import OOD_METRICS, OPENOOD_METRICS, openood_metrics
from lit_rev.report import format_table, save_figure, write_report

#: The stem of the table's files (``<out>/ood_benchmark.{json,csv,md}``).
STEM = "ood_benchmark"
#: The label of each detector's row of means over the OOD sets; a group's is ``mean_<group>``.
MEAN = "mean"
#: The table's metric columns: the project's four, then OpenOOD v1.5's forms of three
#: (:func:`lit_rev.ood.metrics.openood_metrics`), side by side.
TABLE_METRICS = (*OOD_METRICS, *OPENOOD_METRICS)
#: Which FPR@95 the summary, heat map and target use: ``in`` measures the TPR on the
#: in-distribution set (the ODIN, energy and KNN papers), ``openood`` on the OOD set (OpenOOD
#: v1.5, OOD positive).
FprConvention = Literal["in", "openood"]
#: The table column of each FPR@95 convention.
FPR_COLUMNS: dict[str, str] = {"in": "fpr_at_95_tpr", "openood": "fpr_at_95_tpr_openood"}
#: A detector "reaches the target" where, on every OOD set, AUROC >= this ...
TARGET_AUROC = 0.95
#: ... and FPR at 95% TPR <= this.
TARGET_FPR = 0.2
#: A verdict drawn from fewer images than this in a set (in-distribution or OOD) says little:
#: the summary marks it "too few images" instead of yes/no.
MIN_IMAGES = 100


def fpr_column(convention: str) -> str:
    """The table column of the FPR@95 ``convention`` (``in`` or ``openood``).

    Raises:
        ValueError: an unknown convention, naming the choices.
    """
    if convention not in FPR_COLUMNS:
        raise ValueError(
            f"fpr_convention {convention!r} is not one of {sorted(FPR_COLUMNS)}: 'in' measures "
            "the TPR on the in-distribution set, 'openood' on the OOD set"
        )
    return FPR_COLUMNS[convention]


def check_groups(groups: dict[str, Sequence[str]] | None, ood_names: Sequence[str]) -> None:
    """Stop where ``groups`` (``{group: [OOD set, ...]}``) does not split ``ood_names`` exactly.

    Every OOD set must be in exactly one group, and every set named must be an OOD set.

    Raises:
        ValueError: naming the group, the set and the fix.
    """
    if not groups:
        return
    seen: dict[str, str] = {}
    for group, names in groups.items():
        if not group or not str(group).isidentifier():
            raise ValueError(
                f"ood_groups: group name {group!r} must be a word (letters, digits, _), e.g. "
                "near or far: it names the column mean_<group>"
            )
        if not names:
            raise ValueError(f"ood_groups.{group}: give at least one OOD set, or drop the group")
        for name in names:
            if name not in ood_names:
                raise ValueError(
                    f"ood_groups.{group}: {name!r} is not an OOD set of the data; the OOD sets "
                    f"are {list(ood_names)}"
                )
            if name in seen:
                raise ValueError(
                    f"ood_groups: {name!r} is in both {seen[name]} and {group}; put each OOD "
                    "set in one group"
                )
            seen[name] = group
    ungrouped = [name for name in ood_names if name not in seen]
    if ungrouped:
        raise ValueError(
            f"ood_groups: the OOD sets {ungrouped} are in no group; put each OOD set in one "
            f"group (groups: {list(groups)})"
        )


def group_columns(groups: dict[str, Sequence[str]] | None) -> list[str]:
    """The labels of the group means' rows (``mean_<group>``), in the order of ``groups``."""
    return [f"{MEAN}_{group}" for group in groups or {}]


def cell_metrics(
    in_scores: torch.Tensor, ood_scores: torch.Tensor, in_name: str, name: str
) -> tuple[dict[str, float | None], str | None]:
    """Every metric of :data:`TABLE_METRICS` of two sets and ``None``, or all ``None`` and why."""
    metrics, why = checked_metrics(in_scores, ood_scores, in_name, name)
    if why is not None:
        return dict.fromkeys(TABLE_METRICS), why
    return {**metrics, **openood_metrics(in_scores, ood_scores)}, None


def benchmark_rows(
    scores: Scores,
    in_name: str,
    ood_names: Sequence[str],
    failed: dict[str, str] | None = None,
    order: Sequence[str] | None = None,
    groups: dict[str, Sequence[str]] | None = None,
) -> list[dict]:
    """The table: one row per (detector, OOD set) and rows of means over the sets per detector.

    Each row holds ``detector``, ``set`` and the metrics of :data:`TABLE_METRICS` in that
    order. After a detector's sets comes its mean over all of them (set ``mean``), then, for
    each of ``groups`` (``{group: [OOD set, ...]}``, e.g. near and far), the mean over the
    group's sets (set ``mean_<group>``). A metric that cannot be given (non-finite or no
    scores, or a detector that failed, see ``failed``: ``{label: reason}``) is ``None`` and
    ``missing`` says why; a mean over sets of which one is missing is ``None`` too. Rows of
    ``failed`` labels with no scores are included. Detectors come in the order of ``order``
    (default: those of ``scores``, then ``failed``).

    Raises:
        ValueError: ``groups`` does not put each OOD set in exactly one group.
    """
    check_groups(groups, ood_names)
    rows = []
    failed = failed or {}
    if order is None:
        order = [*scores, *failed]
    for label in dict.fromkeys(label for label in order if label in scores or label in failed):
        sets = scores.get(label, {})
        per_set = []
        for name in ood_names:
            row: dict[str, Any] = {"detector": label, "set": name}
            why = failed.get(label)
            if why is None:
                empty = torch.zeros(0)
                metrics, why = cell_metrics(
                    sets.get(in_name, empty), sets.get(name, empty), in_name, name
                )
                row.update(metrics)
            else:
                row.update(dict.fromkeys(TABLE_METRICS))
            if why is not None:
                row["missing"] = why
            per_set.append(row)
        means = [mean_row(label, MEAN, per_set)]
        for group, names in (groups or {}).items():
            members = [r for r in per_set if r["set"] in names]
            means.append(mean_row(label, f"{MEAN}_{group}", members))
        rows.extend([*per_set, *means])
    return rows


def mean_row(label: str, name: str, per_set: Sequence[dict]) -> dict[str, Any]:
    """The row ``name`` of ``label``: each metric's mean over ``per_set``, or ``None``."""
    mean: dict[str, Any] = {"detector": label, "set": name}
    lacking = [r["set"] for r in per_set if "missing" in r]
    for metric in TABLE_METRICS:
        values = [r[metric] for r in per_set]
        mean[metric] = None if lacking else sum(values) / len(values)
    if lacking:
        mean["missing"] = f"no mean: no metrics for {', '.join(lacking)}"
    return mean


def failure_lines(rows: Sequence[dict]) -> list[str]:
    """Every missing cell of the table, grouped: ``<detectors>: <reason> (<sets>)`` per line."""
    reasons: dict[str, dict[str, list[str]]] = {}
    for r in rows:
        if r.get("missing") and r["set"] != MEAN:
            reasons.setdefault(r["missing"], {}).setdefault(r["detector"], []).append(r["set"])
    lines = []
    for reason, by_label in reasons.items():
        groups: dict[tuple[str, ...], list[str]] = {}
        for label, sets in by_label.items():
            groups.setdefault(tuple(sets), []).append(label)
        for sets, labels in groups.items():
            lines.append(f"{', '.join(labels)} on {', '.join(sets)}: {reason}")
    return lines


def reaches_target(
    rows: Sequence[dict], label: str, ood_names: Sequence[str], fpr: str = "fpr_at_95_tpr"
) -> str:
    """``yes`` where ``label`` has AUROC >= 0.95 and FPR@95 <= 0.2 on every OOD set.

    ``no`` where a set misses either, ``n/a`` where a set has no metrics (and none fails).
    ``fpr`` is the FPR@95 column (:data:`FPR_COLUMNS`).
    """
    verdicts = []
    for r in rows:
        if r["detector"] == label and r["set"] in ood_names:
            if r["auroc"] is None or r.get(fpr) is None:
                verdicts.append(None)
            else:
                verdicts.append(r["auroc"] >= TARGET_AUROC and r[fpr] <= TARGET_FPR)
    if any(v is False for v in verdicts):
        return "no"
    return "n/a" if any(v is None for v in verdicts) or not verdicts else "yes"


def summary_rows(
    rows: Sequence[dict],
    ood_names: Sequence[str],
    sizes: dict[str, int] | None = None,
    fpr_convention: FprConvention = "in",
) -> list[dict]:
    """One row per detector: ``AUROC / FPR@95`` per OOD set and their means, and the target.

    ``metrics`` names the two columns each cell shows: ``auroc / fpr_at_95_tpr`` (the
    ``fpr_convention`` ``in``) or ``auroc / fpr_at_95_tpr_openood`` (``openood``). The means
    are every mean row of ``rows`` (``mean``, and ``mean_<group>`` per group).
    ``target`` is :func:`reaches_target` (AUROC >= 0.95 and FPR@95 <= 0.2 on every set); where
    ``sizes`` (images per set, the in-distribution set's included) has a set of fewer than
    :data:`MIN_IMAGES`, a yes or no verdict reads ``too few images (<n> < MIN_IMAGES)``.
    """
    fpr = fpr_column(fpr_convention)
    smallest = min(sizes.values()) if sizes else None
    out = []
    labels = list(dict.fromkeys(r["detector"] for r in rows))
    for label in labels:
        row: dict[str, Any] = {"detector": label, "metrics": f"auroc / {fpr}"}
        for r in rows:
            if r["detector"] == label:
                missing = r["auroc"] is None or r.get(fpr) is None
                row[r["set"]] = "n/a" if missing else f"{r['auroc']:.3f} / {r[fpr]:.3f}"
        row["target"] = reaches_target(rows, label, ood_names, fpr)
        if smallest is not None and smallest < MIN_IMAGES and row["target"] in ("yes", "no"):
            row["target"] = f"too few images ({smallest} < {MIN_IMAGES})"
        out.append(row)
    return out


def heatmap(rows: Sequence[dict], metric: str, columns: Sequence[str], in_name: str = ""):
    """A detectors x sets heat map of ``metric``, every cell annotated (``n/a`` where missing).

    ``in_name`` (the in-distribution set) goes into the title.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    labels = list(dict.fromkeys(r["detector"] for r in rows))
    values = np.full((len(labels), len(columns)), np.nan)
    for r in rows:
        if r["set"] in columns and r[metric] is not None:
            values[labels.index(r["detector"]), list(columns).index(r["set"])] = r[metric]
    lower_is_better = metric in FPR_COLUMNS.values()
    cmap = plt.get_cmap("viridis_r" if lower_is_better else "viridis").with_extremes(
        bad="lightgrey"
    )
    width = 1.6 + 1.1 * len(columns)
    fig, ax = plt.subplots(figsize=(width, 1.2 + 0.38 * len(labels)))
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(columns)), labels=list(columns), rotation=30, ha="right")
    ax.set_yticks(range(len(labels)), labels=labels)
    for i in range(len(labels)):
        for j in range(len(columns)):
            v = values[i, j]
            text = "n/a" if np.isnan(v) else f"{v:.2f}"
            dark = not np.isnan(v) and (v > 0.6 if lower_is_better else v < 0.4)
            ax.text(j, i, text, ha="center", va="center", fontsize=7, color="w" if dark else "k")
    names = {
        "auroc": "AUROC (higher is better)",
        "fpr_at_95_tpr": "FPR at 95% TPR on in-dist. (lower is better)",
        "fpr_at_95_tpr_openood": "FPR at 95% TPR on OOD, OpenOOD (lower is better)",
    }
    against = f"in-distribution {in_name}, " if in_name else ""
    ax.set_title(f"{names.get(metric, metric)}; {against}OOD = positive class")
    fig.colorbar(image, ax=ax, fraction=0.03)
    return fig


def write_tables(
    rows: list[dict],
    ood_names: Sequence[str],
    out: Path,
    meta: dict,
    logger=None,
    sizes: dict[str, int] | None = None,
    fpr_convention: FprConvention = "in",
) -> dict[str, Path]:
    """Write the table, the summary and the two heat maps; log the figures to TensorBoard.

    ``meta`` goes into both JSON files (its ``in_distribution``, if any, into the figures'
    titles); the summary and figures also go to TensorBoard when a ``logger`` is given.
    ``sizes`` (images per set) marks verdicts from too few images (:func:`summary_rows`).
    ``fpr_convention`` picks the FPR@95 of the summary and of the second heat map
    (``heatmap_fpr_at_95_tpr.png`` or ``heatmap_fpr_at_95_tpr_openood.png``).
    """
    fpr = fpr_column(fpr_convention)
    paths = write_report(rows, out, STEM, meta)
    summary = summary_rows(rows, ood_names, sizes, fpr_convention)
    write_report(summary, out, f"{STEM}_summary", meta)
    paths["summary"] = out / f"{STEM}_summary.md"
    if rows:
        means = list(dict.fromkeys(r["set"] for r in rows if r["set"] not in ood_names))
        columns = [*ood_names, *means]
        for metric in ("auroc", fpr):
            fig = heatmap(rows, metric, columns, str(meta.get("in_distribution") or ""))
            paths[f"heatmap_{metric}"] = save_figure(fig, out, f"heatmap_{metric}", logger)
        experiment = getattr(logger, "experiment", None)
        if experiment is not None:
            experiment.add_text(STEM, format_table(summary, markdown=True))
            experiment.flush()
    return paths
