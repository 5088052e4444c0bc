"""The density figures' plots (lit_rev.density.plots): AUROC titles, and no plot of numbers that
are not finite."""

import math

import pytest
import torch

from lit_rev.density import plots
from lit_rev.report import NonFiniteResult, save_figure
from tests.pngs import assert_png


def test_bpd_histograms_plot_shows_each_sets_auroc(tmp_path):
    g = torch.Generator().manual_seed(0)
    bpd = {
        "in": torch.randn(200, generator=g) + 5,
        "far": torch.randn(200, generator=g) + 50,  # every OOD image less likely: AUROC 1
        "same": torch.randn(200, generator=g) + 5,
    }
    fig = plots.bpd_histograms_plot(bpd, "in")
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert titles[0] == "far: AUROC 1.00" and titles[1].startswith("same: AUROC 0.")
    assert_png(save_figure(fig, tmp_path, "hist"))


def test_bpd_rows_give_each_sets_count_mean_and_std():
    rows = plots.bpd_rows({"in": torch.tensor([1.0, 3.0]), "ood": torch.tensor([2.0, 2.0, 2.0])})
    assert rows == [
        {"set": "in", "n": 2, "bpd_mean": 2.0, "bpd_std": pytest.approx(math.sqrt(2))},
        {"set": "ood", "n": 3, "bpd_mean": 2.0, "bpd_std": 0.0},
    ]


def nan_plots():
    nan = math.nan
    values = {
        "in": {"log_pz": torch.ones(4), "log_det": torch.ones(4)},
        "ood": {"log_pz": torch.tensor([1.0, nan, 2.0, 3.0]), "log_det": torch.ones(4)},
    }
    return {
        "histograms": (
            lambda: plots.bpd_histograms_plot(
                {"in": torch.ones(4), "ood": torch.tensor([1.0, math.inf, 2, 3])}, "in"
            ),
            "the bits/dim of ood",
        ),
        "decomposition": (lambda: plots.decomposition_plot(values, "in"), "log_pz of ood"),
        "graying": (
            lambda: plots.graying_plot(
                [{"factor": 1.0, "bpd": 4.0}, {"factor": 0.5, "bpd": nan}], "in"
            ),
            "bits/dim",
        ),
    }


@pytest.mark.parametrize("figure", sorted(nan_plots()))
def test_non_finite_numbers_are_an_error_not_a_plot(figure):
    draw, what = nan_plots()[figure]
    with pytest.raises(NonFiniteResult, match="1 of .* values of " + what):
        draw()
