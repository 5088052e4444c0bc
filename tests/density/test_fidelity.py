"""Fidelity to the reference implementations: PixelCNN++'s weight normalisation with
data-dependent init, Polyak averaging of the weights used at evaluation, the VAE's seeded
evaluation draws, and the paper configs that switch them on."""

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import yaml
from lightning.pytorch import Callback
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from lit_rev.callbacks import PolyakAveraging
from lit_rev.density import VAE, DensityModule, Glow, PixelCNNPP
from lit_rev.density.flows import ActNorm
from lit_rev.density.ood_evaluation import evaluate_ood
from lit_rev.density.pixelcnnpp import GatedResnet, WeightNorm
from tests.trainers import quiet_trainer

REPO = Path(__file__).resolve().parents[2]


# ----- PixelCNN++: weight normalisation with data-dependent init --------------------------------


def _wn_pixelcnn(seed=0, channels=3, size=8, dropout=0.5):
    torch.manual_seed(seed)
    return PixelCNNPP(
        channels,
        size,
        8,
        resnets_per_scale=1,
        filters=8,
        num_mixtures=2,
        scales=2,
        dropout=dropout,
        weight_norm=True,
    ).double()


def _weight_norm_outputs(model, k):
    """Run ``model.log_prob(k)`` in training mode; the output of every :class:`WeightNorm`."""
    outputs, hooks = {}, []

    def keep(name):
        return lambda module, inputs, output: outputs.__setitem__(name, output)

    for name, module in model.named_modules():
        if isinstance(module, WeightNorm):
            hooks.append(module.register_forward_hook(keep(name)))
    model.train()
    model.log_prob(k)
    for h in hooks:
        h.remove()
    return outputs


def test_weight_norm_init_gives_each_layer_zero_mean_and_its_init_scale():
    """After the first training batch every normalised layer's output has per-channel mean 0 and
    standard deviation ``init_scale`` on that batch: 0.1 for each gated ResNet's gate convolution,
    1 elsewhere (openai/pixel-cnn). Dropout is on, as in the reference's init pass."""
    model = _wn_pixelcnn()
    gates = {f"{n}.conv_out.conv" for n, m in model.named_modules() if isinstance(m, GatedResnet)}
    outputs = _weight_norm_outputs(model, torch.randint(0, 256, (16, 3, 8, 8)))
    assert len(gates) == 10 and gates <= set(outputs)  # 2 scales x (1 up + 1-2 down) x 2 streams
    assert len(outputs) == sum(isinstance(m, WeightNorm) for m in model.modules())  # each ran once
    kinds = (torch.nn.Conv2d, torch.nn.ConvTranspose2d)
    convolutions = [m for m in model.modules() if isinstance(m, kinds)]
    assert len(convolutions) == len(outputs)  # none left plain
    for name, y in outputs.items():
        dims = [d for d in range(y.dim()) if d != 1]
        scale = 0.1 if name in gates else 1.0
        mean, std = y.mean(dims), y.var(dims, unbiased=False).sqrt()
        assert mean.abs().max().item() < 1e-9 * scale, name
        assert torch.allclose(std, torch.full_like(std, scale), rtol=1e-4), (name, std)


def _norms(weight, out_dim):
    """Per-output-channel norms of a weight, by reshaping (independent of WeightNorm's code)."""
    return weight.transpose(0, out_dim).reshape(weight.shape[out_dim], -1).norm(dim=1)


def test_weight_norm_layer_is_g_v_over_norm_v():
    """The layer computes ``conv(x, g v / ||v||) + b`` with the norm over everything but the
    output channel (dim 1 of a transposed convolution's weight). Before init ``g`` is the norm of
    PyTorch's default weights (a plain layer's scale), ``v ~ N(0, 0.05^2)`` as openai/pixel-cnn."""
    torch.manual_seed(0)
    nn = torch.nn
    layers = (nn.Conv2d(3, 5, 3), nn.ConvTranspose2d(3, 5, (2, 3), 2), nn.Linear(40, 5))
    for layer in layers:
        out_dim = 1 if isinstance(layer, torch.nn.ConvTranspose2d) else 0
        default_norms = _norms(layer.weight.detach().double(), out_dim)
        wn = WeightNorm(layer.double(), init_scale=0.5)
        v = layer.weight.detach()
        assert torch.allclose(wn.g.detach(), default_norms) and abs(v.std().item() - 0.05) < 0.015
        x = (
            torch.randn(7, 40, dtype=torch.float64)
            if isinstance(layer, torch.nn.Linear)
            else torch.randn(7, 3, 6, 6, dtype=torch.float64)
        )
        shape = [1] * v.dim()
        shape[out_dim] = -1
        for mode in ("eval", "train"):  # before init, then the init pass
            y = getattr(wn, mode)()(x)
            w = v * (wn.g.detach() / _norms(v, out_dim)).view(shape)
            state = {"weight": w, "bias": layer.bias.detach()}
            expected = torch.func.functional_call(layer, state, (x,))
            assert torch.allclose(y, expected, atol=1e-12), mode
        dims = [d for d in range(y.dim()) if d != 1]
        std = y.var(dims, unbiased=False).sqrt()
        assert torch.allclose(std, torch.full((5,), 0.5, dtype=torch.float64), rtol=1e-4)
    with pytest.raises(ValueError, match="init_scale must be positive, got 0"):
        WeightNorm(torch.nn.Conv2d(1, 1, 1), init_scale=0)


def test_weight_norm_initialises_once_and_not_again_after_loading():
    """The ``initialized`` buffers travel in the state_dict: a second batch, or a model loaded
    from a state_dict, keeps ``g`` and the biases; loaded, it scores as the original."""
    model = _wn_pixelcnn()
    k1, k2 = torch.randint(0, 256, (8, 3, 8, 8)), torch.randint(0, 128, (8, 3, 8, 8))
    _weight_norm_outputs(model, k1)
    state = {key: v.clone() for key, v in model.state_dict().items()}
    layers = sum(isinstance(m, WeightNorm) for m in model.modules())
    assert sum(key.endswith("initialized") for key in state) == layers
    _weight_norm_outputs(model, k2)  # a different batch: must not re-initialise
    for key, v in model.state_dict().items():
        assert torch.equal(v, state[key]), key

    fresh = _wn_pixelcnn(seed=1)
    fresh.load_state_dict(state)
    _weight_norm_outputs(fresh, k2)  # training mode on new data right after loading
    for key, v in fresh.state_dict().items():
        assert torch.equal(v, state[key]), key
    model.eval(), fresh.eval()
    assert torch.equal(model.log_prob(k2), fresh.log_prob(k2))

    # and the other way: an uninitialised state loaded into an initialised model is initialised
    # by its next training batch (the flag is read from the loaded buffer, not remembered)
    blank = _wn_pixelcnn(seed=2)
    model.load_state_dict(blank.state_dict())
    outputs = _weight_norm_outputs(model, k2)
    assert all(bool(m.initialized) for m in model.modules() if isinstance(m, WeightNorm))
    y = outputs["out"]
    assert y.mean((0, 2, 3)).abs().max().item() < 1e-9  # initialised on k2


def test_weight_norm_keeps_pixelcnn_causal():
    torch.manual_seed(0)
    model = _wn_pixelcnn(channels=1, size=4, dropout=0.0)
    _weight_norm_outputs(model, torch.randint(0, 256, (8, 1, 4, 4)))
    x = torch.rand(1, 1, 4, 4, dtype=torch.float64, requires_grad=True)
    out = model.eval()(x)
    for i in range(16):
        (grad,) = torch.autograd.grad(out[0, :, i // 4, i % 4].sum(), x, retain_graph=True)
        assert grad.flatten()[i:].abs().max().item() == 0.0
        assert i == 0 or grad.flatten()[:i].abs().max().item() > 0.0


def test_untrained_weight_normalised_pixelcnn_scores_finitely():
    """Evaluated before any training batch (``test`` without a checkpoint), the paper-size
    network's log-probabilities stay finite (with ``g = ||v||`` they were -inf)."""
    torch.manual_seed(0)
    model = PixelCNNPP(
        3, 16, 8, resnets_per_scale=5, filters=160, num_mixtures=10, scales=3, weight_norm=True
    ).eval()
    with torch.no_grad():
        assert torch.isfinite(model.log_prob(torch.randint(0, 256, (1, 3, 16, 16)))).all()


def test_pixelcnn_without_weight_norm_is_unchanged():
    """``weight_norm=False`` (the default) keeps plain convolutions and their state_dict keys."""
    model = PixelCNNPP(1, 4, 8, resnets_per_scale=1, filters=8, num_mixtures=2, scales=2)
    assert not any(isinstance(m, WeightNorm) for m in model.modules())
    keys = model.state_dict()
    assert "out.weight" in keys and not any(k.endswith("initialized") for k in keys)


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wn_batch():
    g = torch.Generator().manual_seed(3)
    return torch.randn(8, 3, 5, 5, generator=g, dtype=torch.float64) * 2 + 1


def _wn_layer():
    torch.manual_seed(0)
    return WeightNorm(torch.nn.Conv2d(3, 4, 3).double(), init_scale=0.1)


def _init_on_half(rank, world, port, path):
    address = f"tcp://127.0.0.1:{port}"
    dist.init_process_group("gloo", init_method=address, rank=rank, world_size=world)
    layer = _wn_layer()
    layer(_wn_batch()[rank * 4 : (rank + 1) * 4])  # each rank sees half the batch
    state = {k: v.clone() for k, v in layer.state_dict().items()}
    torch.save(state, os.path.join(path, f"rank{rank}.pt"))
    dist.destroy_process_group()


@pytest.mark.slow
def test_weight_norm_init_averages_moments_over_ranks(tmp_path):
    """Two gloo ranks, each with half the batch, end with the parameters of one process that
    saw the whole batch (the moments are averaged over ranks before ``g`` and ``b`` are set)."""
    single = _wn_layer()
    single(_wn_batch())
    mp.spawn(_init_on_half, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        for key, want in single.state_dict().items():
            assert torch.allclose(got[key], want, rtol=1e-12, atol=1e-12), (rank, key)


# ----- Polyak averaging ------------------------------------------------------------------------


def _images(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    k = torch.randint(0, 256, (n, 1, 4, 4), generator=g, dtype=torch.uint8)
    return DataLoader(TensorDataset(k, torch.zeros(n)), batch_size=2)


def _glow_module(seed=0):
    torch.manual_seed(seed)
    glow = Glow(in_channels=1, image_size=4, levels=1, steps=2, hidden_channels=4)
    return DensityModule(glow, n_bits=8, lr=0.05, warmup_steps=1, num_samples=0)


def _params(module):
    return {name: p.detach().double().clone() for name, p in module.named_parameters()}


def _trainer(tmp_path, callbacks, **kwargs):
    checkpoints = any(isinstance(c, ModelCheckpoint) for c in callbacks)
    kwargs.setdefault("enable_checkpointing", checkpoints)
    return quiet_trainer(tmp_path, callbacks=callbacks, num_sanity_val_steps=0, **kwargs)


def _ema(steps, decay):
    """By hand, in float64: the first step's weights, then ``decay * avg + (1 - decay) * theta``."""
    avg = {k: v.clone() for k, v in steps[0].items()}
    for theta in steps[1:]:
        for k in avg:
            avg[k] = decay * avg[k] + (1 - decay) * theta[k]
    return avg


def _assert_params(got, want, atol=1e-6):
    assert set(got) == set(want)
    for k in want:
        error = (got[k].double() - want[k]).abs().max().item()
        assert error <= atol, (k, error)


class Recorder(Callback):
    """The parameters the model holds after each optimizer step, when each validation and the
    next training batch start, at ``on_fit_end`` (where OODEvaluation scores) and on ``test``;
    saves a checkpoint once in validation and once at ``on_fit_end`` (as a signal or an
    exception there would)."""

    def __init__(self, ckpt_dir=None):
        self.steps, self.validation, self.after_validation, self.validation_end = [], [], [], []
        self.fit_end = self.test = self.buffers_at_fit_end = None
        self.ckpt_dir, self._after_val = ckpt_dir, False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.steps.append(_params(pl_module))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self._after_val:
            self.after_validation.append(_params(pl_module))
            self._after_val = False

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if batch_idx == 0:
            self.validation.append((len(self.steps), _params(pl_module)))
            self._after_val = True
            if self.ckpt_dir and len(self.validation) == 1:
                trainer.save_checkpoint(Path(self.ckpt_dir) / "in_validation.ckpt")

    def on_validation_epoch_end(self, trainer, pl_module):
        self.validation_end.append(_params(pl_module))

    def on_fit_end(self, trainer, pl_module):
        self.fit_end = _params(pl_module)
        self.buffers_at_fit_end = {k: b.clone() for k, b in pl_module.named_buffers()}
        if self.ckpt_dir:
            trainer.save_checkpoint(Path(self.ckpt_dir) / "at_fit_end.ckpt")

    def on_test_start(self, trainer, pl_module):
        self.test = _params(pl_module)


def test_polyak_evaluation_after_fit_uses_the_averaged_weights(tmp_path):
    """Validation, ``on_fit_end`` (OODEvaluation), the checkpoints and ``test --ckpt_path`` all see
    the exponential moving average of the weights, computed here by hand; training goes on
    from the training weights after each validation; ActNorm's flags stay set."""
    decay = 0.6
    record = Recorder(ckpt_dir=tmp_path)  # before the averaging callback: the order must not matter
    later = Recorder()  # after it, as the module's own hooks (the sample grid at validation end)
    ckpt = ModelCheckpoint(dirpath=tmp_path, save_last=True)
    trainer = _trainer(
        tmp_path,
        [record, PolyakAveraging(decay), later, ckpt],
        max_epochs=2,
        val_check_interval=3,
        limit_val_batches=1,
    )
    module = _glow_module()
    trainer.fit(module, _images(12), _images(4, seed=1))
    steps = record.steps
    assert len(steps) == 12
    average = _ema(steps, decay)
    assert max((average[k] - steps[-1][k]).abs().max().item() for k in average) > 1e-3  # not void

    _assert_params(record.fit_end, average)  # what OODEvaluation scores
    assert [n for n, _ in record.validation] == [3, 6, 9, 12]
    for (n_steps, seen), seen_at_end in zip(record.validation, later.validation_end, strict=True):
        _assert_params(seen, _ema(steps[:n_steps], decay))
        _assert_params(seen_at_end, _ema(steps[:n_steps], decay))
    # the last validation ends training: no training batch follows it
    assert len(record.after_validation) == len(record.validation) - 1
    for (n_steps, _), resumed in zip(record.validation, record.after_validation, strict=False):
        _assert_params(resumed, steps[n_steps - 1], atol=0)  # training resumes from its own weights
    actnorms = [k for k in record.buffers_at_fit_end if k.endswith("initialized")]
    assert actnorms and all(bool(record.buffers_at_fit_end[k]) for k in actnorms)

    for name, n_steps in (("last.ckpt", 12), ("in_validation.ckpt", 3), ("at_fit_end.ckpt", 12)):
        state = torch.load(tmp_path / name, weights_only=True)
        params = {k: v for k, v in state["state_dict"].items() if k in average}
        _assert_params(params, _ema(steps[:n_steps], decay))
        current = {k: v for k, v in state["current_model_state"].items() if k in average}
        _assert_params(current, steps[n_steps - 1], atol=0)
        assert int(state["averaging_state"]["n_averaged"]) == n_steps
        for k in actnorms:
            assert bool(state["state_dict"][k]) and bool(state["current_model_state"][k]), (name, k)

    # `python -m lit_rev test --ckpt_path last.ckpt`: a fresh module and trainer, same callbacks
    tester = Recorder()
    with _no_warning_about("WeightAveraging"):
        _trainer(tmp_path, [tester, PolyakAveraging(decay)]).test(
            _glow_module(seed=5), _images(4, seed=1), ckpt_path=tmp_path / "last.ckpt"
        )
    _assert_params(tester.test, average)
    meta = json.loads((tmp_path / "ood_report.json").read_text())["meta"]
    assert meta["weights"] == f"Polyak average, decay {decay}"  # the report says which weights


class _no_warning_about:
    def __init__(self, text):
        self.text = text

    def __enter__(self):
        import warnings

        self._catch = warnings.catch_warnings(record=True)
        self._caught = self._catch.__enter__()
        warnings.simplefilter("always")

    def __exit__(self, *exc):
        self._catch.__exit__(*exc)
        messages = [str(w.message) for w in self._caught]
        assert not [m for m in messages if self.text in m], messages


def test_polyak_average_continues_across_a_resume(tmp_path):
    """Three steps, a checkpoint, three more steps resumed from it: the average over all six
    steps, as if the run had not stopped; the resumed run trains on from the training weights."""
    decay = 0.5
    first, second = Recorder(), Recorder()

    def last():
        return ModelCheckpoint(dirpath=tmp_path, save_last=True)

    trainer = _trainer(tmp_path, [first, PolyakAveraging(decay), last()], max_epochs=1)
    trainer.fit(_glow_module(), _images(6))

    class FirstBatch(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.start = getattr(self, "start", None) or _params(pl_module)

    start = FirstBatch()
    _trainer(tmp_path, [start, second, PolyakAveraging(decay), last()], max_epochs=2).fit(
        _glow_module(seed=7), _images(6), ckpt_path=tmp_path / "last.ckpt"
    )
    assert len(first.steps) == len(second.steps) == 3
    _assert_params(start.start, first.steps[-1], atol=0)
    _assert_params(second.fit_end, _ema(first.steps + second.steps, decay))


def test_polyak_copies_buffers_instead_of_averaging_them(tmp_path):
    """A count kept in a buffer (as the skipped-step counter) and fixed buffers are the training
    model's own at ``on_fit_end`` and in the checkpoint, not their moving average."""

    class CountSteps(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            pl_module.count += 1  # an integer buffer, like the skipped-step counter

    record, module = Recorder(ckpt_dir=tmp_path), _glow_module()
    module.register_buffer("count", torch.tensor(0))
    trainer = _trainer(tmp_path, [CountSteps(), record, PolyakAveraging(0.9)], max_steps=6)
    trainer.fit(module, _images(12))
    assert int(record.buffers_at_fit_end["count"]) == 6
    state = torch.load(tmp_path / "at_fit_end.ckpt", weights_only=True)
    assert int(state["state_dict"]["count"]) == int(state["current_model_state"]["count"]) == 6
    glow = _glow_module().network
    constant = {
        f"network.{k}": v
        for k, v in glow.state_dict().items()
        if k.endswith(("perm", "sign_s", "eye"))
    }
    assert constant and all(torch.equal(state["state_dict"][k], v) for k, v in constant.items())


def test_polyak_decay_is_checked():
    for bad in (1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match=f"decay must be in \\[0, 1\\).*got {bad}"):
            PolyakAveraging(bad)


def test_actnorm_init_is_in_the_average(tmp_path):
    """The average starts from the weights after the first step, so it holds ActNorm's
    data-dependent init (done on the first batch) rather than blending in the untrained zeros:
    the first ActNorm's ``log_scale`` is ``-0.5 log var`` of the first batch, to within the
    two Adam steps of size <= lr = 0.05 (untrained: 0)."""
    record, module = Recorder(), _glow_module()
    loader = _images(4)
    _trainer(tmp_path, [record, PolyakAveraging(0.99)], max_steps=2).fit(module, loader)
    first = module.model_input(next(iter(loader))[0], noise=False)
    x, _ = module.network.squeeze(first)
    expected = -0.5 * torch.log(x.double().var(dim=(0, 2, 3), unbiased=False))
    got = record.fit_end["network.levels.0.0.layers.0.log_scale"].flatten()
    assert isinstance(module.network.levels[0][0].layers[0], ActNorm)
    assert expected.min() > 0.8  # far from the untrained 0
    assert torch.allclose(got, expected, atol=0.12), (got, expected)


# ----- the VAE's evaluation draws are seeded per image -----------------------------------------


def _vae(**kwargs):
    torch.manual_seed(0)
    vae = VAE(
        1,
        4,
        n_bits=3,
        latent_dim=4,
        hidden_channels=8,
        importance_samples=12,
        chunk_size=5,
        **kwargs,
    )
    with torch.no_grad():
        for p in vae.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return vae.double().eval()


def test_vae_test_scores_do_not_depend_on_run_batch_or_position():
    """The importance-weighted bound of an image is the same whether it is scored twice, in
    another order, next to other images, or alone, whatever the global random state."""
    vae = _vae()
    k = torch.randint(0, 8, (10, 1, 4, 4), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.manual_seed(0)
        scores = vae.log_prob(k)
        torch.manual_seed(1)
        again = vae.log_prob(k)
        shuffled = vae.log_prob(k.flip(0)).flip(0)
        alone = torch.cat([vae.log_prob(k[i : i + 1]) for i in range(len(k))])
        mixed = vae.log_prob(torch.cat([torch.randint(0, 8, (3, 1, 4, 4)), k[:4]]))[3:]
    assert torch.equal(scores, again)
    assert torch.allclose(shuffled, scores, rtol=0, atol=1e-10)
    assert torch.allclose(alone, scores, rtol=0, atol=1e-10)
    assert torch.allclose(mixed, scores[:4], rtol=0, atol=1e-10)
    module = DensityModule(vae, n_bits=3)  # the test scores of the DensityModule
    assert torch.equal(module.scores(k)["bpd"], module.scores(k)["bpd"])


def test_vae_eval_seed_sets_the_draws():
    """A different ``eval_seed`` gives other draws (and so other scores); ``eval_seed=None`` draws
    from the global stream; the seeded draws are standard normal; training keeps the ELBO."""
    k = torch.randint(0, 8, (10, 1, 4, 4), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        s0, s1 = _vae(eval_seed=0).log_prob(k), _vae(eval_seed=1).log_prob(k)
        assert not torch.allclose(s0, s1)
        free = _vae(eval_seed=None)
        assert not torch.equal(free.log_prob(k), free.log_prob(k))
        assert torch.equal(_vae().log_prob(k), s0)  # eval_seed=0 is the default
    noise = _vae().seeded_noise(torch.randint(0, 8, (50, 1, 4, 4)), 400, seed=0)
    assert noise.shape == (400, 50, 4)
    assert abs(noise.mean().item()) < 0.02 and abs(noise.std().item() - 1) < 0.02
    assert not torch.allclose(noise[:, 0], noise[:, 1])  # images draw independently
    message = "eval_seed must be None or an integer in \\[0, 2\\*\\*63\\), got -1"
    with pytest.raises(ValueError, match=message):
        VAE(eval_seed=-1)


# ----- the paper configs switch it all on; the quick ones keep their numbers ---------------------


def _config(name):
    return yaml.safe_load((REPO / "configs" / "density" / name).read_text())


def _callbacks(config):
    out = {}
    for cb in (config.get("trainer") or {}).get("callbacks") or []:
        cb = {"class_path": cb} if isinstance(cb, str) else cb
        out[cb["class_path"].rsplit(".", 1)[-1]] = cb.get("init_args") or {}
    return out


@pytest.mark.parametrize(
    "name,decay",
    [
        ("glow_cifar10.yaml", 0.999),
        ("glow_fashionmnist.yaml", 0.999),
        ("glow_celeba.yaml", 0.999),
        ("glow_imagenet32.yaml", 0.999),
        ("cvglow_cifar10.yaml", 0.999),
        ("cvglow_fashionmnist.yaml", 0.999),
        ("pixelcnnpp_cifar10.yaml", 0.9995),
        ("pixelcnnpp_fashionmnist.yaml", 0.9995),
    ],
)
def test_paper_configs_average_weights_and_evaluate_ood(name, decay):
    callbacks = _callbacks(_config(name))
    assert callbacks["PolyakAveraging"] == {"decay": decay}
    assert "OODEvaluation" in callbacks
    if name.startswith("pixelcnnpp"):  # openai/pixel-cnn: weight norm, lr decay 0.999995 per step
        model = _config(name)["model"]["init_args"]
        assert model["network"]["init_args"]["weight_norm"] is True
        assert model["lr_decay"] == 0.999995


def test_quick_configs_keep_their_documented_setup():
    for path in sorted((REPO / "configs" / "density").glob("quick_*.yaml")):
        config = yaml.safe_load(path.read_text())
        assert "PolyakAveraging" not in _callbacks(config), path.name
        model = config["model"]["init_args"]
        assert not (model["network"].get("init_args") or {}).get("weight_norm"), path.name
        assert model.get("lr_decay", 1.0) == 1.0, path.name


@pytest.mark.parametrize(
    "seed, says", [(3, "seeded per image by eval_seed=3"), (None, "global random stream")]
)
def test_vae_report_says_how_its_draws_were_seeded(tmp_path, monkeypatch, seed, says):
    monkeypatch.chdir(tmp_path)  # outside a Trainer the report goes to the working directory
    module = DensityModule(_vae(eval_seed=seed).float(), n_bits=3, num_samples=0)
    k = torch.randint(0, 8, (6, 1, 4, 4), generator=torch.Generator().manual_seed(1))
    loaders = [DataLoader(TensorDataset(k, torch.zeros(6)), batch_size=3) for _ in range(2)]
    evaluate_ood(module, loaders, ["in", "ood"])
    meta = json.loads((tmp_path / "ood_report.json").read_text())["meta"]
    assert "importance-weighted lower bound, 12 samples" in meta["log_prob"]
    assert says in meta["log_prob"] and meta["weights"] == "as trained"
