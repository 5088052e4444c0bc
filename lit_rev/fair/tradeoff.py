"""Accuracy against discrimination: points with intervals, the Pareto front, a method's line.

Reads the ``<name>_numeric.json`` files that ``python -m lit_rev.commands.fair_results``
writes (one row per config: mean, std and the bootstrap 95% interval of every metric) and
places each row in the accuracy / discrimination plane. ``benchmarks/fair_tradeoff.sh`` makes
the files; ``notebooks/grad_tradeoff.ipynb`` and docs/fair.md read them through this module.

A collapsed row (a seed whose test positive rate was 0 or 1) is never on the front and never
dominates another: its discrimination of 0 is no merit.

The discrimination axis is one named quantity for every point (:data:`AxisQuantity`):
``discrimination_soft``, the gap between the groups' mean predicted probability (for
fairlearn's randomised classifiers, their probability of a positive), or
``discrimination_hard``, the gap between the groups' rates of positive output labels (for
the randomised classifiers, their drawn labels). Fronts, lines and plots refuse points of
different quantities, and the plot's axis names the one it shows. Methods whose predictions
read the protected attribute at prediction time (:func:`reads_protected_at_prediction`) are
marked in tables (``reads_s_at_prediction``) and plots.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from lit_rev.fair.results import headline
from lit_rev.options import check_choice
from lit_rev.report import require_finite

#: the quantity on the discrimination axis: the soft gap (of p) or the hard one (of labels)
AxisQuantity = Literal["discrimination_soft", "discrimination_hard"]

#: how the axis reads each quantity
AXIS_LABELS = {
    "discrimination_soft": "discrimination_soft: gap in mean predicted probability",
    "discrimination_hard": "discrimination_hard: gap in positive rate of the output labels",
}


#: config-stem prefixes and the method names the tables and plots use (longest prefix first)
METHODS = (
    ("thresholdopt_logistic", "ThresholdOptimizer (logistic)"),
    ("thresholdopt_mlp", "ThresholdOptimizer (MLP)"),
    ("eg_logistic", "ExponentiatedGradient (logistic)"),
    ("eg_mlp", "ExponentiatedGradient (MLP)"),
    ("grad_pred", "GRAD-pred"),
    ("grad_auto", "GRAD-auto"),
    ("vanilla", "Vanilla"),
    ("alfr", "ALFR"),
    ("lfr", "LFR"),
    ("vfa", "VFA"),
)


#: the module class of each method (its configs' ``class_path``)
METHOD_CLASSES = {
    "ThresholdOptimizer (logistic)": "ThresholdOptimizerModule",
    "ThresholdOptimizer (MLP)": "ThresholdOptimizerModule",
    "ExponentiatedGradient (logistic)": "ExponentiatedGradientModule",
    "ExponentiatedGradient (MLP)": "ExponentiatedGradientModule",
    "GRAD-pred": "GRADModule",
    "GRAD-auto": "FrozenEncoderClassifier",
    "Vanilla": "GRADModule",
    "ALFR": "ALFRModule",
    "LFR": "LFRModule",
    "VFA": "VFAModule",
}


def reads_protected_at_prediction(method: str) -> bool:
    """Whether ``method``'s predictions read the protected attribute ``s`` besides ``x``.

    Read from its module class (``reads_protected_at_prediction``: ThresholdOptimizer's
    per-group thresholds, VFA's encoder ``q(z1 | x, s)``). A method of a curve (``... over
    λ``) is its base method's; an unknown method reads as ``False``.
    """
    name = METHOD_CLASSES.get(method.split(" over ")[0])
    if name is None:
        return False
    import lit_rev.fair as fair

    return bool(getattr(fair, name).reads_protected_at_prediction)


def method_of(config: str) -> str:
    """``"grad_pred_adult, tuned"`` -> ``"GRAD-pred"``; an unknown stem is returned as it is."""
    stem = config.split(",")[0].strip()
    for prefix, name in METHODS:
        if stem.startswith(prefix):
            return name
    return stem


@dataclass(frozen=True)
class TradeoffPoint:
    """One row of a results table in the accuracy / discrimination plane (means over seeds).

    ``discrimination`` is the value of ``quantity`` (an :data:`AxisQuantity`); ``reads_s``
    whether the method reads the protected attribute at prediction time.
    """

    method: str
    label: str
    accuracy: float
    accuracy_interval: tuple[float, float]
    discrimination: float
    discrimination_interval: tuple[float, float]
    collapsed: int = 0
    quantity: str = "discrimination_soft"
    reads_s: bool = False

    @property
    def usable(self) -> bool:
        """Neither collapsed nor missing a number: it may sit on (and shape) the front."""
        return self.collapsed == 0 and math.isfinite(self.accuracy + self.discrimination)


def read_points(
    path: str | Path,
    attribute: str | None = None,
    label: str = "",
    quantity: AxisQuantity = "discrimination_soft",
) -> list:
    """The rows of a ``fair_results`` ``*_numeric.json`` as :class:`TradeoffPoint` s.

    Args:
        path: the ``<name>_numeric.json`` file.
        attribute: whose discrimination (``<quantity>_<attribute>``); default the headline
            ``<quantity>`` (the first protected attribute).
        label: the points' label; default ``"tuned"`` for tuned rows, else empty.
        quantity: the discrimination axis, ``discrimination_soft`` or ``discrimination_hard``.
    """
    check_choice("quantity", quantity, AxisQuantity)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist: make it with benchmarks/fair_tradeoff.sh (or "
            "python -m lit_rev.commands.fair_results ... --out DIR --name NAME)"
        )
    disc = f"{quantity}_{attribute}" if attribute else quantity
    points = []
    for row in json.loads(path.read_text())["rows"]:
        if f"{disc}_mean" not in row:
            hint = (
                "the file predates the soft/hard readings (its 'discrimination' mixed them): "
                "make it again with python -m lit_rev.commands.fair_results"
                if "discrimination_mean" in row and attribute is None
                else "pick another attribute"
            )
            raise KeyError(f"{path}: row {row['config']!r} has no {disc}; {hint}")
        method = method_of(row["config"])
        points.append(
            TradeoffPoint(
                method=method,
                label=label or ("tuned" if row["config"].endswith(", tuned") else ""),
                accuracy=_number(row["accuracy_mean"]),
                accuracy_interval=(
                    _number(row.get("accuracy_ci_low")),
                    _number(row.get("accuracy_ci_high")),
                ),
                discrimination=_number(row[f"{disc}_mean"]),
                discrimination_interval=(
                    _number(row.get(f"{disc}_ci_low")),
                    _number(row.get(f"{disc}_ci_high")),
                ),
                collapsed=int(row.get("collapsed") or 0),
                quantity=quantity,
                reads_s=reads_protected_at_prediction(method),
            )
        )
    return points


def axis_quantity(points: list[TradeoffPoint]) -> str | None:
    """The one quantity on the discrimination axis of ``points`` (``None`` if empty).

    Raises ValueError when the points mix quantities: a front or line across the soft and
    the hard gap compares two different things.
    """
    quantities = list(dict.fromkeys(p.quantity for p in points))
    if len(quantities) > 1:
        raise ValueError(
            f"points mix discrimination quantities {quantities}: read every point with the same "
            "quantity (read_points/load_dataset quantity=...) before comparing them"
        )
    return quantities[0] if quantities else None


def _number(value) -> float:
    return math.nan if value is None else float(value)


def dominates(a: TradeoffPoint, b: TradeoffPoint) -> bool:
    """``a`` is at least as accurate and as fair as ``b``, and strictly better in one.

    Both must measure the same discrimination quantity (ValueError otherwise).
    """
    axis_quantity([a, b])
    if not (a.usable and b.usable):
        return False
    no_worse = a.accuracy >= b.accuracy and a.discrimination <= b.discrimination
    better = a.accuracy > b.accuracy or a.discrimination < b.discrimination
    return no_worse and better


def pareto_front(points: list[TradeoffPoint]) -> list[bool]:
    """For each point, whether no other point dominates it (by the means over seeds).

    The points must share one discrimination quantity (ValueError otherwise).
    """
    axis_quantity(points)
    return [p.usable and not any(dominates(q, p) for q in points) for p in points]


def line_accuracy(line: list[TradeoffPoint], discrimination: float) -> float:
    """The accuracy of the piecewise-linear line through ``line`` at ``discrimination``.

    The line joins the usable points in order of discrimination (a method's points over its
    knob, e.g. ExponentiatedGradient over eps). NaN outside their range: nothing is
    extrapolated. The line's points must share one discrimination quantity.
    """
    axis_quantity(line)
    usable = sorted((p for p in line if p.usable), key=lambda p: p.discrimination)
    if not usable or not usable[0].discrimination <= discrimination <= usable[-1].discrimination:
        return math.nan
    for left, right in itertools.pairwise(usable):
        if left.discrimination <= discrimination <= right.discrimination:
            span = right.discrimination - left.discrimination
            if span == 0:
                return max(left.accuracy, right.accuracy)
            t = (discrimination - left.discrimination) / span
            return left.accuracy + t * (right.accuracy - left.accuracy)
    return usable[0].accuracy  # a single point, at exactly its discrimination


#: one colour per method; a method's curve shares its tuned point's colour
COLORS = {
    "Vanilla": "black",
    "GRAD-pred": "tab:blue",
    "GRAD-auto": "tab:cyan",
    "LFR": "tab:pink",
    "ALFR": "tab:gray",
    "VFA": "tab:green",
    "ExponentiatedGradient (logistic)": "tab:orange",
    "ExponentiatedGradient (MLP)": "tab:brown",
    "ThresholdOptimizer (logistic)": "tab:red",
    "ThresholdOptimizer (MLP)": "tab:purple",
}


def plot_tradeoff(ax, points: list[TradeoffPoint], title: str = "") -> None:
    """Each method's points with their 95% intervals; a method with several points as a line.

    Points on the Pareto front are ringed; collapsed points are drawn hollow and named so. A
    method that reads the protected attribute at prediction time is drawn with square
    markers and ``(reads s)`` in its legend label. The x axis names the points' quantity.
    """
    quantity = axis_quantity(points) or "discrimination_soft"
    front = pareto_front(points)
    methods = list(dict.fromkeys(p.method for p in points))
    for number, method in enumerate(methods):
        mine = sorted(
            (i for i, p in enumerate(points) if p.method == method),
            key=lambda i: points[i].discrimination,
        )
        color = COLORS.get(method.split(" over ")[0], f"C{number % 10}")
        reads_s = any(points[i].reads_s for i in mine)
        x = [points[i].discrimination for i in mine]
        y = [points[i].accuracy for i in mine]
        xerr = [
            [
                max(0.0, p.discrimination - p.discrimination_interval[0])
                for p in map(points.__getitem__, mine)
            ],
            [
                max(0.0, p.discrimination_interval[1] - p.discrimination)
                for p in map(points.__getitem__, mine)
            ],
        ]
        yerr = [
            [max(0.0, p.accuracy - p.accuracy_interval[0]) for p in map(points.__getitem__, mine)],
            [max(0.0, p.accuracy_interval[1] - p.accuracy) for p in map(points.__getitem__, mine)],
        ]
        ax.errorbar(
            x,
            y,
            xerr=xerr,
            yerr=yerr,
            fmt=("s" if reads_s else "o") + "-" if len(mine) > 1 else ("s" if reads_s else "D"),
            color=color,
            ms=4,
            lw=1,
            elinewidth=0.6,
            capsize=2,
            alpha=0.9,
            label=f"{method} (reads s)" if reads_s else method,
        )
        for i in mine:
            p = points[i]
            if not p.usable:
                ax.scatter(
                    p.discrimination,
                    p.accuracy,
                    s=80,
                    facecolors="white",
                    edgecolors=color,
                    zorder=4,
                )
                ax.annotate(
                    "collapsed",
                    (p.discrimination, p.accuracy),
                    fontsize=7,
                    xytext=(4, -9),
                    textcoords="offset points",
                )
            elif front[i]:
                ax.scatter(
                    p.discrimination,
                    p.accuracy,
                    s=110,
                    facecolors="none",
                    edgecolors="black",
                    lw=1.2,
                    zorder=4,
                )
            if p.label and p.label != "tuned" and len(mine) > 1:
                ax.annotate(
                    p.label,
                    (p.discrimination, p.accuracy),
                    fontsize=6,
                    xytext=(3, 3),
                    textcoords="offset points",
                    color=color,
                )
    ax.set_xlabel(f"{AXIS_LABELS.get(quantity, quantity)} (lower is fairer)")
    ax.set_ylabel("test accuracy")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)


#: the file-name parts of the curves that ``benchmarks/fair_tradeoff.sh`` writes, and the
#: method name and knob each curve's points get
CURVES = (
    ("grad_lambda", "GRAD-pred over λ", "λ"),
    ("eg_bound", "ExponentiatedGradient (logistic) over its bound", "bound"),
)


def load_dataset(
    out: str | Path,
    dataset: str,
    attribute: str | None = None,
    quantity: AxisQuantity = "discrimination_soft",
) -> list:
    """Every point of one data set from ``benchmarks/fair_tradeoff.sh``'s files in ``out``.

    ``<dataset>_tuned_numeric.json`` (one point per method, hyper-parameters chosen on
    validation) must exist; a further ``<dataset>_tuned_<part>_numeric.json`` adds its rows,
    replacing in place a row of the same config read before (a method searched again). Then
    each curve file ``<dataset>_grad_lambda<value>_numeric.json`` and
    ``<dataset>_eg_bound<value>_numeric.json`` adds a point labelled with its value, in
    increasing order of the value. Every point's discrimination is ``quantity``.
    """
    out = Path(out)
    tuned: dict[str, TradeoffPoint] = {}
    for path in [
        out / f"{dataset}_tuned_numeric.json",
        *sorted(out.glob(f"{dataset}_tuned_*_numeric.json")),
    ]:
        configs = (
            [row["config"] for row in json.loads(path.read_text())["rows"]]
            if path.is_file()
            else []
        )
        for config, p in zip(configs, read_points(path, attribute, quantity=quantity), strict=True):
            tuned[config] = p
    points = list(tuned.values())
    for part, method, knob in CURVES:
        prefix = f"{dataset}_{part}"
        files = []
        for path in out.glob(f"{prefix}*_numeric.json"):
            value = path.name[len(prefix) : -len("_numeric.json")]
            try:
                files.append((float(value), value, path))
            except ValueError:
                continue
        for _, value, path in sorted(files):
            for p in read_points(path, attribute, label=f"{knob}={value}", quantity=quantity):
                points.append(
                    TradeoffPoint(
                        method,
                        p.label,
                        p.accuracy,
                        p.accuracy_interval,
                        p.discrimination,
                        p.discrimination_interval,
                        p.collapsed,
                        p.quantity,
                        reads_protected_at_prediction(method),
                    )
                )
    return points


def table_rows(points: list[TradeoffPoint], dataset: str = "") -> list[dict]:
    """One table row per point, with its intervals, collapsed seeds and Pareto membership.

    The discrimination columns are named by the points' quantity
    (``discrimination_soft``, ``discrimination_soft_interval``); ``reads_s_at_prediction``
    marks the methods that read the protected attribute to predict.
    """
    front = pareto_front(points)
    quantity = axis_quantity(points) or "discrimination_soft"
    return [
        {
            "data": dataset,
            "method": p.method,
            "setting": p.label,
            "accuracy": p.accuracy,
            "accuracy_interval": _interval(p.accuracy_interval),
            quantity: p.discrimination,
            f"{quantity}_interval": _interval(p.discrimination_interval),
            "reads_s_at_prediction": p.reads_s,
            "collapsed": p.collapsed,
            "pareto": on,
        }
        for p, on in zip(points, front, strict=True)
    ]


def _interval(pair: tuple[float, float]) -> str:
    return f"[{pair[0]:.3f}, {pair[1]:.3f}]"


def line_verdict(point: TradeoffPoint, line: list[TradeoffPoint]) -> str:
    """Whether ``point`` lies on or above ``line`` at its own discrimination, in words."""
    quantity = axis_quantity([point, *line])
    reach = line_accuracy(line, point.discrimination)
    if math.isnan(reach):
        usable = [p.discrimination for p in line if p.usable]
        span = f"{min(usable):.4f} to {max(usable):.4f}" if usable else "no usable point"
        beats = sum(dominates(point, p) for p in line)
        beaten = sum(dominates(p, point) for p in line)
        return (
            f"not comparable on the line: its discrimination {point.discrimination:.4f} lies "
            f"outside the line's ({span}) and nothing is extrapolated; it dominates {beats} "
            f"and is dominated by {beaten} of the line's {len(usable)} points"
        )
    margin = point.accuracy - reach
    where = "on or above" if margin >= 0 else "below"
    return (
        f"{where} the line: accuracy {point.accuracy:.4f} against the line's {reach:.4f} at "
        f"{quantity} {point.discrimination:.4f} ({margin:+.4f})"
    )


# ----------------------------------------------------------------------------- GRAD plane
def grad_plane_rows(runs: dict[str, Sequence[str]], run: Callable[[list[str]], dict]) -> list:
    """Fit and test each fairness run of ``runs`` with ``run``; one row per run.

    Args:
        runs: label -> the run's config chain (one config, or ``A`` then ``B`` for GRAD-auto).
        run: fits and tests a chain, returning its test results (e.g.
            :func:`lit_rev.evaluation.fair_runs.run_once` at a seed).

    Returns:
        Rows with the run's ``model`` label, test ``accuracy`` and ``discrimination`` (of the
        first protected attribute, NaN if it reports none) and the ``seconds`` it took.
    """
    rows = []
    for label, chain in runs.items():
        started = time.time()
        results = headline(run(list(chain)))
        rows.append(
            {
                "model": label,
                "accuracy": results["accuracy"],
                "discrimination": results.get("discrimination", math.nan),
                "seconds": time.time() - started,
            }
        )
        print(
            f"    {label:10s} accuracy {rows[-1]['accuracy']:.3f}  "
            f"discrimination {rows[-1]['discrimination']:.3f}  ({rows[-1]['seconds']:.0f} s)",
            flush=True,
        )
    return rows


def grad_plane_plot(rows: list[dict], title: str = ""):
    """Each run a labelled point: discrimination (x) against test accuracy (y).

    The axes of ``notebooks/grad_tradeoff.ipynb``: the fair and accurate corner is top left.

    Args:
        rows: the rows of :func:`grad_plane_rows`.
        title: the figure's title (default: Adult's, protected attribute sex).

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt

    for r in rows:
        for key in ("accuracy", "discrimination"):
            require_finite("GRAD plane", f"the {key} of {r['model']}", [r[key]])
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    colors = {"Vanilla": "black", "GRAD-pred": "tab:green", "GRAD-auto": "tab:olive"}
    for r in rows:
        grad = r["model"].startswith("GRAD")
        point = (r["discrimination"], r["accuracy"])
        ax.scatter(
            *point,
            s=60,
            zorder=3,
            marker="o" if grad else "s",
            color=colors.get(r["model"], "tab:blue"),
        )
        ax.annotate(r["model"], point, fontsize=9, textcoords="offset points", xytext=(6, 4))
    accuracy = [r["accuracy"] for r in rows]
    discrimination = [r["discrimination"] for r in rows]
    pad = max(0.005, 0.15 * (max(accuracy) - min(accuracy)))
    ax.set_ylim(min(accuracy) - pad, max(accuracy) + pad)
    ax.set_xlim(0, max(discrimination) * 1.25 + 1e-3)
    ax.set_xlabel("discrimination |mean p(s=1) − mean p(s=0)| (lower is fairer)")
    ax.set_ylabel("test accuracy")
    ax.set_title(title or "Adult, protected attribute sex: accuracy vs discrimination", fontsize=10)
    ax.grid(True, alpha=0.3)
    kinds = [
        ax.scatter([], [], marker="o", color="gray", label="GRAD (gradient reversal)"),
        ax.scatter([], [], marker="s", color="gray", label="Vanilla and baselines"),
    ]
    ax.legend(handles=kinds, fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig
