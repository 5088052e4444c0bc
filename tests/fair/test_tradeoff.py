"""The accuracy / discrimination plane (lit_rev.fair.tradeoff): front, line, reading, plot."""

import json
import math

import pytest

from lit_rev.fair.tradeoff import (
    TradeoffPoint,
    dominates,
    line_accuracy,
    method_of,
    pareto_front,
    plot_tradeoff,
    read_points,
)


def point(accuracy, discrimination, method="m", collapsed=0, label="", quantity=None):
    return TradeoffPoint(
        method,
        label,
        accuracy,
        (accuracy - 0.01, accuracy + 0.01),
        discrimination,
        (max(0.0, discrimination - 0.01), discrimination + 0.01),
        collapsed,
        **({"quantity": quantity} if quantity else {}),
    )


def test_method_names_follow_the_config_stems():
    assert method_of("grad_pred_adult, tuned") == "GRAD-pred"
    assert method_of("alfr_german") == "ALFR"
    assert method_of("lfr_german") == "LFR"
    assert method_of("eg_logistic_compas") == "ExponentiatedGradient (logistic)"
    assert method_of("thresholdopt_mlp_adult") == "ThresholdOptimizer (MLP)"
    assert method_of("my_own_adult") == "my_own_adult"


def test_the_front_keeps_exactly_the_points_no_other_point_beats_in_both():
    points = [
        point(0.85, 0.18),  # most accurate: front
        point(0.83, 0.02),  # front
        point(0.82, 0.03),  # dominated by the one above
        point(0.83, 0.02),  # equal to a front point: neither dominates, both on the front
        point(0.80, 0.01),  # fairest: front
        point(0.84, 0.10),  # front (between)
        point(0.84, 0.12),  # dominated by (0.84, 0.10)
    ]
    assert pareto_front(points) == [True, True, False, True, True, True, False]


def test_a_collapsed_point_is_never_on_the_front_and_dominates_nothing():
    fair_for_nothing = point(0.90, 0.0, collapsed=1)
    honest = point(0.80, 0.05)
    assert not dominates(fair_for_nothing, honest)
    assert pareto_front([fair_for_nothing, honest]) == [False, True]
    assert pareto_front([point(0.8, math.nan), honest]) == [False, True]


def test_the_line_interpolates_between_the_points_around_a_discrimination():
    line = [point(0.84, 0.05), point(0.82, 0.01), point(0.83, 0.03), point(0.99, 0.02, collapsed=2)]
    assert line_accuracy(line, 0.02) == pytest.approx(0.825)  # between 0.01 and 0.03
    assert line_accuracy(line, 0.04) == pytest.approx(0.835)
    assert line_accuracy(line, 0.05) == pytest.approx(0.84)
    assert math.isnan(line_accuracy(line, 0.06))  # no extrapolation
    assert math.isnan(line_accuracy(line, 0.005))
    assert line_accuracy([point(0.8, 0.02)], 0.02) == pytest.approx(0.8)


def test_points_are_read_from_a_fair_results_numeric_file(tmp_path):
    rows = [
        {
            "config": "grad_pred_adult, tuned",
            "collapsed": 0,
            "accuracy_mean": 0.83,
            "accuracy_ci_low": 0.82,
            "accuracy_ci_high": 0.84,
            "discrimination_soft_mean": 0.02,
            "discrimination_soft_ci_low": 0.01,
            "discrimination_soft_ci_high": 0.03,
            "discrimination_soft_race_mean": 0.09,
            "discrimination_soft_race_ci_low": 0.06,
            "discrimination_soft_race_ci_high": 0.14,
            "discrimination_hard_mean": 0.05,
        },
        {
            "config": "vanilla_german",
            "collapsed": 2,
            "accuracy_mean": 0.7,
            "accuracy_ci_low": 0.6,
            "accuracy_ci_high": 0.8,
            "discrimination_soft_mean": None,
            "discrimination_soft_race_mean": None,
            "discrimination_hard_mean": None,
        },
    ]
    path = tmp_path / "x_numeric.json"
    path.write_text(json.dumps({"meta": {}, "rows": rows}))
    first, second = read_points(path)
    assert (first.method, first.label, first.accuracy, first.discrimination) == (
        "GRAD-pred",
        "tuned",
        0.83,
        0.02,
    )
    assert first.discrimination_interval == (0.01, 0.03)
    assert second.collapsed == 2 and math.isnan(second.discrimination) and not second.usable
    assert read_points(path, attribute="race")[0].discrimination_interval == (0.06, 0.14)
    assert read_points(path, label="λ=3")[0].label == "λ=3"
    hard = read_points(path, quantity="discrimination_hard")[0]
    assert hard.discrimination == 0.05 and hard.quantity == "discrimination_hard"
    assert first.quantity == "discrimination_soft"
    with pytest.raises(ValueError, match="quantity must be one of"):
        read_points(path, quantity="discrimination")
    # a file of the mixed 'discrimination' column is refused, saying why
    rows[0]["discrimination_mean"] = rows[0].pop("discrimination_soft_mean")
    path.write_text(json.dumps({"meta": {}, "rows": rows}))
    with pytest.raises(KeyError, match="predates the soft/hard readings"):
        read_points(path)
    with pytest.raises(KeyError, match="no discrimination_soft_age"):
        read_points(path, attribute="age")
    with pytest.raises(FileNotFoundError, match=r"fair_tradeoff\.sh"):
        read_points(tmp_path / "missing_numeric.json")


def test_the_plot_rings_the_front_and_draws_the_intervals():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [
        point(0.85, 0.18, "Vanilla"),
        point(0.83, 0.02, "GRAD-pred", label="λ=10"),
        point(0.84, 0.06, "GRAD-pred", label="λ=3"),
        point(0.82, 0.03, "LFR"),
    ]
    fig, ax = plt.subplots()
    plot_tradeoff(ax, points, "t")
    sizes = [list(c.get_sizes()) for c in ax.collections if hasattr(c, "get_sizes")]
    rings = [s for s in sizes if s == [110]]
    assert len(rings) == sum(pareto_front(points)) == 3
    assert [t.get_text() for t in ax.texts] == ["λ=10", "λ=3"]  # in order of discrimination
    plt.close(fig)


def numeric_file(path, rows):
    path.write_text(json.dumps({"meta": {}, "rows": rows}))


def row(config, accuracy, discrimination, collapsed=0):
    return {
        "config": config,
        "collapsed": collapsed,
        "accuracy_mean": accuracy,
        "accuracy_ci_low": accuracy - 0.01,
        "accuracy_ci_high": accuracy + 0.01,
        "discrimination_soft_mean": discrimination,
        "discrimination_soft_ci_low": discrimination / 2,
        "discrimination_soft_ci_high": discrimination * 2,
    }


def test_a_data_set_is_loaded_from_the_benchmark_file_names_curves_in_order(tmp_path):
    from lit_rev.fair.tradeoff import load_dataset, table_rows

    numeric_file(
        tmp_path / "german_tuned_numeric.json",
        [row("vanilla_german, tuned", 0.75, 0.08), row("vfa_german", 0.79, 0.03)],
    )
    for lam, acc in (("10", 0.74), ("0.3", 0.76), ("1", 0.755)):
        numeric_file(
            tmp_path / f"german_grad_lambda{lam}_numeric.json",
            [row("grad_pred_german", acc, 0.1 / float(lam))],
        )
    numeric_file(
        tmp_path / "german_eg_bound0.02_numeric.json", [row("eg_logistic_german", 0.7, 0.01)]
    )
    numeric_file(
        tmp_path / "german_eg_boundfoo_numeric.json", [row("eg_logistic_german", 0.1, 0.0)]
    )
    numeric_file(tmp_path / "compas_grad_lambda1_numeric.json", [row("grad_pred_compas", 0.6, 0.1)])
    points = load_dataset(tmp_path, "german")
    assert [(p.method, p.label) for p in points] == [
        ("Vanilla", "tuned"),
        ("VFA", ""),
        ("GRAD-pred over λ", "λ=0.3"),
        ("GRAD-pred over λ", "λ=1"),
        ("GRAD-pred over λ", "λ=10"),
        ("ExponentiatedGradient (logistic) over its bound", "bound=0.02"),
    ]
    rows = table_rows(points, "german")
    assert [r["reads_s_at_prediction"] for r in rows] == [False, True, False, False, False, False]
    assert rows[1]["discrimination_soft"] == 0.03
    # eg (0.70, 0.01) is beaten by λ=10 (0.74, 0.01); λ=0.3 and λ=1 by VFA (0.79, 0.03)
    assert [r["pareto"] for r in rows] == [False, True, False, False, True, False]
    assert rows[1]["accuracy_interval"] == "[0.780, 0.800]"
    with pytest.raises(FileNotFoundError):
        load_dataset(tmp_path, "compas")  # no tuned file


def test_the_line_verdict_says_above_below_or_not_comparable():
    from lit_rev.fair.tradeoff import line_verdict

    line = [point(0.82, 0.01), point(0.84, 0.05)]
    assert line_verdict(point(0.83, 0.03), line).startswith(
        "on or above the line: accuracy 0.8300 against the line's 0.8300"
    )
    assert "(-0.0025)" in line_verdict(point(0.8275, 0.03), line)
    assert line_verdict(point(0.8275, 0.03), line).startswith("below")
    assert line_verdict(point(0.9, 0.2), line).startswith("not comparable")
    assert line_verdict(point(0.83, 0.005), line).endswith(
        "it dominates 1 and is dominated by 0 of the line's 2 points"
    )
    assert line_verdict(point(0.81, 0.06), line).endswith(
        "dominates 0 and is dominated by 2 of the line's 2 points"
    )


def test_a_later_tuned_file_replaces_the_rows_of_the_configs_it_holds(tmp_path):
    from lit_rev.fair.tradeoff import load_dataset

    numeric_file(
        tmp_path / "adult_tuned_numeric.json",
        [row("vanilla_adult, tuned", 0.85, 0.18), row("eg_mlp_adult, tuned", 0.83, 0.01)],
    )
    numeric_file(
        tmp_path / "adult_tuned_eg_numeric.json",
        [row("eg_mlp_adult, tuned", 0.84, 0.03), row("eg_logistic_adult, tuned", 0.82, 0.02)],
    )
    points = load_dataset(tmp_path, "adult")
    assert [(p.method, p.accuracy) for p in points] == [
        ("Vanilla", 0.85),
        ("ExponentiatedGradient (MLP)", 0.84),
        ("ExponentiatedGradient (logistic)", 0.82),
    ]


def test_grad_plane_rows_run_each_chain_and_plot_them(tmp_path):
    from lit_rev.fair.tradeoff import grad_plane_plot, grad_plane_rows
    from lit_rev.report import save_figure
    from tests.pngs import assert_png

    ran = []

    def run(configs):
        ran.append(configs)
        if len(configs) == 2:  # a chain reports no discrimination here: the row says NaN
            return {"accuracy": 0.8}
        return {"accuracy": 0.85, "discrimination_sex": 0.18, "delta_sex": 0.67}

    rows = grad_plane_rows({"Vanilla": ("a.yaml",), "GRAD-auto": ("b.yaml", "c.yaml")}, run)
    assert ran == [["a.yaml"], ["b.yaml", "c.yaml"]]
    assert [(r["model"], r["accuracy"]) for r in rows] == [("Vanilla", 0.85), ("GRAD-auto", 0.8)]
    assert rows[0]["discrimination"] == 0.18 and math.isnan(rows[1]["discrimination"])
    rows = [
        {"model": "Vanilla", "accuracy": 0.85, "discrimination": 0.18},
        {"model": "GRAD-pred", "accuracy": 0.83, "discrimination": 0.03},
    ]
    fig = grad_plane_plot(rows)
    assert [t.get_text() for t in fig.axes[0].texts] == ["Vanilla", "GRAD-pred"]
    assert_png(save_figure(fig, tmp_path, "plane"))


def test_a_non_finite_point_is_an_error_not_a_plot():
    from lit_rev.fair.tradeoff import grad_plane_plot
    from lit_rev.report import NonFiniteResult

    with pytest.raises(NonFiniteResult, match="1 of 1 values of the accuracy of GRAD-pred"):
        grad_plane_plot([{"model": "GRAD-pred", "accuracy": math.nan, "discrimination": 0.1}])


def test_fronts_lines_and_tables_refuse_points_of_different_quantities():
    soft = point(0.83, 0.02, quantity="discrimination_soft")
    hard = point(0.80, 0.05, quantity="discrimination_hard")
    from lit_rev.fair.tradeoff import line_verdict, table_rows

    for compare in (
        lambda: pareto_front([soft, hard]),
        lambda: dominates(soft, hard),
        lambda: line_accuracy([soft, hard], 0.03),
        lambda: line_verdict(soft, [hard, point(0.9, 0.1, quantity="discrimination_hard")]),
        lambda: table_rows([hard, soft]),
    ):
        with pytest.raises(ValueError, match="mix discrimination quantities"):
            compare()
    assert table_rows([hard])[0]["discrimination_hard"] == 0.05


def test_only_the_methods_that_read_s_to_predict_are_marked():
    from lit_rev.fair.tradeoff import METHOD_CLASSES, METHODS, reads_protected_at_prediction

    assert set(METHOD_CLASSES) == {name for _, name in METHODS}
    marked = {name for _, name in METHODS if reads_protected_at_prediction(name)}
    assert marked == {"ThresholdOptimizer (logistic)", "ThresholdOptimizer (MLP)", "VFA"}
    assert reads_protected_at_prediction("ThresholdOptimizer (MLP) over its grid")
    assert not reads_protected_at_prediction("my_own_adult")


def test_the_plot_names_its_quantity_and_marks_the_methods_that_read_s():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [
        point(0.85, 0.18, "Vanilla", quantity="discrimination_hard"),
        TradeoffPoint(
            "VFA",
            "",
            0.8,
            (0.79, 0.81),
            0.02,
            (0.01, 0.03),
            quantity="discrimination_hard",
            reads_s=True,
        ),
    ]
    fig, ax = plt.subplots()
    plot_tradeoff(ax, points)
    assert ax.get_xlabel().startswith("discrimination_hard: gap in positive rate")
    labels = ax.get_legend_handles_labels()[1]
    assert labels == ["Vanilla", "VFA (reads s)"]
    plt.close(fig)
