"""A network that does not fit its data stops in ``DensityModule.setup``, naming the key.

Before these checks a Glow built for 4x4 images trained on 8x8 (or 28x28) ones by
broadcasting its top prior, ``in_channels`` off by one gave a raw tensor-size error deep in
the first step, and ``n_bits`` that disagreed with the data's skewed bits/dim silently.
"""

from pathlib import Path

import pytest
import torch

import lit_rev.density
from lit_rev.cli import main
from lit_rev.config import ConfigError, fit_mismatch_message
from lit_rev.data.datamodule import ImageDataModule
from lit_rev.data.images import Digits
from lit_rev.density import VAE, DensityModule, Glow, PixelCNNPP
from lit_rev.fit_checks import CheckpointMismatch, FitMismatch
from tests.trainers import quiet_trainer

NET = "model.init_args.network.init_args"


def digits(**kwargs):
    """scikit-learn's 8x8 gray digits (1x8x8 images), a few batches of them."""
    return ImageDataModule(
        Digits(), batch_size=8, max_train=16, max_test=8, val_fraction=0.0, **kwargs
    )


def fit(module, dm, tmp_path):
    """Fit as ``python -m lit_rev fit`` reports a misfit: naming the config keys."""
    trainer = quiet_trainer(tmp_path, fast_dev_run=1)
    try:
        trainer.fit(module, dm)
    except FitMismatch as error:
        raise ValueError(fit_mismatch_message(error)) from error
    return trainer


def glow(in_channels=1, image_size=8):
    return Glow(
        in_channels=in_channels, image_size=image_size, levels=2, steps=1, hidden_channels=4
    )


def vae(n_bits=8):
    return VAE(1, 8, n_bits=n_bits, latent_dim=2, hidden_channels=4, importance_samples=2)


def pixelcnnpp(n_bits=8):
    return PixelCNNPP(
        1, 8, n_bits=n_bits, resnets_per_scale=1, filters=4, num_mixtures=1, scales=2, dropout=0.0
    )


def test_glow_for_smaller_images_stops_before_training(tmp_path):
    """The issue's case: Glow image_size=4 on larger images broadcast its prior and trained."""
    module = DensityModule(glow(image_size=4), num_samples=0)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    message = (
        rf"{NET}.image_size = 4 but data.init_args.image_size = 8 \(the images are 8x8; where "
        rf"unset, the in-distribution set's own\): "
        rf"set {NET}.image_size: 8, or data.init_args.image_size: 4 to resize the images"
    )
    with pytest.raises(ValueError, match=message):
        fit(module, digits(), tmp_path)
    after = module.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())  # no step was taken


def test_image_size_named_when_the_data_set_it(tmp_path):
    with pytest.raises(
        ValueError,
        match=rf"{NET}.image_size = 8 but data.init_args.image_size = 16 \(the images are 16x16",
    ):
        fit(DensityModule(glow(image_size=8), num_samples=0), digits(image_size=16), tmp_path)


def test_channels_checked(tmp_path):
    """A colour Glow on gray data (a raw tensor-size error in the first step before)."""
    message = rf"{NET}.in_channels = 3 but data.init_args.channels = 1 \(the images have 1 chan"
    with pytest.raises(ValueError, match=message):
        fit(DensityModule(glow(in_channels=3), num_samples=0), digits(), tmp_path)
    message = rf"{NET}.in_channels = 1 but data.init_args.channels = 3 .*set {NET}.in_channels: 3"
    with pytest.raises(ValueError, match=message):
        fit(DensityModule(glow(in_channels=1), num_samples=0), digits(channels=3), tmp_path)


def test_module_n_bits_must_match_the_data(tmp_path):
    """DensityModule(n_bits=5) on 8-bit data ran, with bits/dim 3 bits too low for a flow."""
    message = (
        r"model.init_args.n_bits = 5 but data.init_args.n_bits = 8: "
        r"set model.init_args.n_bits: 8 \(or null, to take the data's\), "
        r"or data.init_args.n_bits: 5"
    )
    with pytest.raises(ValueError, match=message):
        fit(DensityModule(glow(), n_bits=5, num_samples=0), digits(), tmp_path)


@pytest.mark.parametrize("make", [vae, pixelcnnpp], ids=["vae", "pixelcnnpp"])
def test_network_n_bits_must_match_the_data(make, tmp_path):
    """The discrete models' own n_bits: a 5-bit likelihood of 8-bit pixels (or the reverse)."""
    message = rf"{NET}.n_bits = 5 but data.init_args.n_bits = 8 \(the images have 8 bits\): "
    message += rf"set {NET}.n_bits: 8, or data.init_args.n_bits: 5"
    with pytest.raises(ValueError, match=message):
        fit(DensityModule(make(n_bits=5), num_samples=0), digits(), tmp_path)
    message = rf"{NET}.n_bits = 8 but data.init_args.n_bits = 5 \(the images have 5 bits\)"
    with pytest.raises(ValueError, match=message):
        fit(DensityModule(make(n_bits=8), num_samples=0), digits(n_bits=5), tmp_path)


@pytest.mark.parametrize(
    "make,n_bits",
    [(glow, 8), (glow, 5), (vae, 5), (pixelcnnpp, 3)],
    ids=["glow8", "glow5", "vae5", "pixelcnnpp3"],
)
def test_networks_that_fit_train(make, n_bits, tmp_path):
    network = make() if make is glow else make(n_bits=n_bits)
    module = DensityModule(network, n_bits=n_bits if make is glow else None, num_samples=0)
    trainer = fit(module, digits(n_bits=n_bits), tmp_path)
    assert trainer.global_step == 1 and module.n_bits == n_bits


@pytest.mark.parametrize("bad", [0, 9, 16, -1, 2.5])
def test_n_bits_range(bad):
    message = rf"n_bits must be an integer in 1..8 \(images are uint8\) or None, got {bad}"
    with pytest.raises(ValueError, match=message):
        DensityModule(glow(), n_bits=bad)
    module = DensityModule(glow(), n_bits=None)
    with pytest.raises(ValueError, match=r"n_bits must be an integer in 1\.\.8"):
        module.n_bits = bad
    module.n_bits = 3
    assert module.n_bits == 3


def test_n_bits_outside_a_trainer_falls_back_to_the_network_s():
    """Without a DataModule or an explicit n_bits, a discrete model's own depth (was 8)."""
    assert DensityModule(vae(n_bits=5)).n_bits == 5
    assert DensityModule(vae(n_bits=5), n_bits=5).n_bits == 5
    assert DensityModule(glow()).n_bits == 8


def test_the_module_raises_a_structured_mismatch_naming_its_own_arguments(tmp_path):
    """The module names its arguments and both values; no config key (no YAML in the slice)."""
    trainer = quiet_trainer(tmp_path, fast_dev_run=1)
    with pytest.raises(FitMismatch) as caught:
        trainer.fit(DensityModule(glow(image_size=4), num_samples=0), digits())
    error = caught.value
    assert (error.model_key, error.model_value) == ("network.image_size", 4)
    assert (error.data_key, error.data_value) == ("image_size", 8)
    assert error.data_effect == "to resize the images" and "init_args" not in str(error)
    assert str(error).startswith("network.image_size = 4 but the DataModule's image_size = 8")


def test_no_config_keys_in_the_density_slice():
    """Config keys are the config layer's: the density code names arguments only."""
    package = Path(lit_rev.density.__file__).parent
    found = [p.name for p in package.rglob("*.py") if "init_args" in p.read_text()]
    assert found == []


def test_the_command_line_names_the_yaml_keys(tmp_path, monkeypatch):
    """``python -m lit_rev fit`` with a misfit network: the message names the YAML keys."""
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "misfit.yaml"
    config.write_text(
        "trainer: {fast_dev_run: 1, logger: false, enable_progress_bar: false}\n"
        "model:\n  class_path: DensityModule\n  init_args:\n    num_samples: 0\n"
        "    network:\n      class_path: Glow\n      init_args: {in_channels: 1, image_size: 4, "
        "levels: 2, steps: 1, hidden_channels: 4}\n"
        "data:\n  class_path: ImageDataModule\n  init_args: {dataset: Digits, batch_size: 8, "
        "max_train: 16, max_test: 8, val_fraction: 0.0}\n"
    )
    with pytest.raises(ConfigError, match=rf"^{NET}.image_size = 4 but data.init_args.image_size"):
        main(["fit", "--config", str(config)])


def trained_checkpoint(tmp_path):
    """A Glow fitted one step on 8-bit digits, saved with what it was trained on."""
    module = DensityModule(glow(), num_samples=0)
    trainer = quiet_trainer(tmp_path, max_steps=1, limit_val_batches=0)
    trainer.fit(module, digits())
    path = tmp_path / "trained.ckpt"
    trainer.save_checkpoint(path)
    return path


def test_a_checkpoint_records_what_it_was_trained_on(tmp_path):
    checkpoint = torch.load(trained_checkpoint(tmp_path), weights_only=False)
    assert checkpoint["trained_on"] == {"n_bits": 8, "shape": [1, 8, 8], "dataset": "digits"}


def test_testing_a_checkpoint_on_other_bit_depths_stops(tmp_path):
    """The issue's case: an 8-bit model tested with n_bits=5 gave bits/dim 3 bits too low."""
    path = trained_checkpoint(tmp_path)
    trainer = quiet_trainer(tmp_path)
    message = (
        r"the checkpoint was trained with n_bits = 8 but the DataModule's n_bits = 5 .*: "
        r"set the DataModule's n_bits: 8, or pass a checkpoint trained on data with n_bits = 5"
    )
    with pytest.raises(CheckpointMismatch, match=message) as caught:
        trainer.test(DensityModule(glow(), num_samples=0), digits(n_bits=5), ckpt_path=path)
    assert fit_mismatch_message(caught.value).startswith(
        "the checkpoint was trained with n_bits = 8 but data.init_args.n_bits = 5"
    )
    results = trainer.test(DensityModule(glow(), num_samples=0), digits(), ckpt_path=path)
    assert results  # the data it was trained on: tested
