"""Fairness runs as the commands build them (lit_rev.evaluation.fair_runs): stage-scoped
overrides and the config check before any fit."""

from pathlib import Path

import pytest

import lit_rev.evaluation.fair_runs as fair_runs
from lit_rev.evaluation.fair_runs import stage_extra

CONFIGS = Path(__file__).parents[2] / "configs" / "fair"


def test_a_stage_scoped_override_reaches_its_stage_of_a_chain_only():
    extra = ["--trainer.max_epochs=3", "--stage1:model.init_args.lambda_=4", "--stage2:a.b=c"]
    assert stage_extra(extra, 0, 2) == ["--trainer.max_epochs=3", "--model.init_args.lambda_=4"]
    assert stage_extra(extra, 1, 2) == ["--trainer.max_epochs=3", "--a.b=c"]
    with pytest.raises(SystemExit, match="stage2 does not exist"):
        stage_extra(extra, 0, 1)


def test_fit_chain_hands_each_stage_its_own_scoped_overrides(tmp_path, monkeypatch):
    """GRAD-auto's lambda_ goes to the auto-encoder; the classifier (no lambda_) never sees it."""
    seen = []

    class FakeTrainer:
        def fit(self, model, datamodule=None):
            pass

        def save_checkpoint(self, path):
            pass

    def fake_instantiate(config, overrides):
        seen.append((Path(config).stem, overrides))
        return FakeTrainer(), None, None

    monkeypatch.setattr(fair_runs, "instantiate_with_trainer", fake_instantiate)
    chain = [
        str(CONFIGS / "grad_auto_german.yaml"),
        str(CONFIGS / "grad_auto_german_classifier.yaml"),
    ]
    fair_runs.fit_chain(
        chain,
        0,
        ["--stage1:model.init_args.lambda_=2.5", "--trainer.max_epochs=2"],
        tmp_path,
        lambda *args: None,
    )
    (first, first_args), (_, second_args) = seen
    assert first == "grad_auto_german" and "--model.init_args.lambda_=2.5" in first_args
    assert not any("lambda_" in a for a in second_args)
    assert "--trainer.max_epochs=2" in first_args and "--trainer.max_epochs=2" in second_args


def test_a_chain_checks_with_a_stage_scoped_key_the_second_stage_lacks(tmp_path):
    chain = f"{CONFIGS / 'grad_auto_german.yaml'}+{CONFIGS / 'grad_auto_german_classifier.yaml'}"
    fair_runs.check_configs([chain], ["--stage1:model.init_args.lambda_=2.5"], tmp_path)
    with pytest.raises(SystemExit, match="does not parse"):
        fair_runs.check_configs([chain], ["--model.init_args.lambda_=2.5"], tmp_path)


def test_namesakes_get_the_shortest_labels_that_tell_them_apart():
    from lit_rev.evaluation.fair_runs import distinct_labels, label_forms

    entries = ["/x/a/vanilla.yaml", "/x/b/vanilla.yaml", "/x/grad.yaml"]
    assert distinct_labels([label_forms(e) for e in entries]) == ["a/vanilla", "b/vanilla", "grad"]
    # chains that differ in their first stage only
    chains = ["/x/auto1.yaml+/x/cls.yaml", "/x/auto2.yaml+/x/cls.yaml"]
    assert distinct_labels([label_forms(e) for e in chains]) == ["auto1+cls", "auto2+cls"]
    with pytest.raises(ValueError, match="vanilla is given 2 times"):
        distinct_labels([label_forms("/x/vanilla.yaml"), label_forms("/x/./vanilla.yaml")])
