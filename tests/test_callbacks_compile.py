"""``CompileNetwork``: torch.compile as a switch for DensityModule, ImageClassifier and GRAD.

On CPU (inductor) the compiled network gives the eager loss and gradients, a memory-saving
RevNet keeps its reconstructing backward (bytes saved for backward measured with
``SavedTensorMeter``), and the callback works from a YAML's ``trainer.callbacks``.
"""

import copy

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch._dynamo.utils import counters
from torch.utils.data import DataLoader, TensorDataset

from lit_rev.callbacks import CompileNetwork
from lit_rev.config import instantiate_with_trainer
from lit_rev.density import DensityModule
from lit_rev.density.glow import Glow
from lit_rev.fair import GRADModule
from lit_rev.revnet import ImageClassifier, SavedTensorMeter
from lit_rev.revnet.networks import revnet38
from tests.test_cli import tiny_config
from tests.trainers import quiet_trainer


def graphs_compiled() -> int:
    return int(counters["stats"]["unique_graphs"])


def gradients(module: torch.nn.Module) -> torch.Tensor:
    grads = [p.grad.flatten() for p in module.parameters() if p.grad is not None]
    module.zero_grad(set_to_none=True)
    return torch.cat(grads)


def assert_same_loss_and_gradients(loss_fn, eager, compiled) -> None:
    expected = loss_fn(eager)
    expected.backward()
    before = graphs_compiled()
    got = loss_fn(compiled)
    got.backward()
    assert graphs_compiled() > before, "nothing was compiled"
    assert torch.isclose(got, expected, rtol=1e-4, atol=0), (got.item(), expected.item())
    torch.testing.assert_close(gradients(compiled), gradients(eager), rtol=1e-3, atol=1e-5)


def tiny_glow_module() -> DensityModule:
    torch.manual_seed(0)
    return DensityModule(Glow(in_channels=1, image_size=8, levels=2, steps=2, hidden_channels=8))


def test_glow_compiled_gives_the_eager_loss_and_gradients():
    eager = tiny_glow_module()
    compiled = copy.deepcopy(eager)
    k = torch.randint(0, 256, (4, 1, 8, 8))
    callback = CompileNetwork()
    callback.compile(compiled)
    assert callback.compiled == ["network", "network.log_prob_parts", "network.log_prob"]
    assert isinstance(compiled.network, Glow)
    assert_same_loss_and_gradients(lambda m: m.scores(k)["bpd"].mean(), eager, compiled)


def test_compiled_methods_serve_copies_and_nested_calls_and_are_undone():
    """Through dynamo alone (``backend="eager"``: no inductor, seconds): Glow's ``log_prob``
    calls the compiled ``log_prob_parts``; a deep copy (a score's background model) runs its
    own weights, not the original's; ``restore`` gives the eager methods back."""
    module = tiny_glow_module()
    callback = CompileNetwork(backend="eager")
    callback.compile(module)
    # the class stays Glow itself: a config naming ``Glow`` still resolves to one class
    assert type(module.network) is Glow and Glow.__subclasses__() == []
    x = module.model_input(torch.randint(0, 256, (4, 1, 8, 8)), noise=False)
    twin = copy.deepcopy(module.network)
    with torch.no_grad():
        twin.top_mean.add_(1.0)
        mine, its = module.network.log_prob(x), twin.log_prob(x)
    assert not torch.allclose(mine, its)
    callback.restore()
    assert type(module.network) is Glow
    assert module.network._compiled_call_impl is None
    assert callback.compiled == []
    with torch.no_grad():
        torch.testing.assert_close(module.network.log_prob(x), mine)


@pytest.mark.slow
def test_revnet38_compiled_keeps_the_loss_and_the_memory_saving_backward(caplog):
    torch.manual_seed(0)
    eager = ImageClassifier(revnet38(memory_saving=True))
    compiled = copy.deepcopy(eager)
    x = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    y = torch.tensor([3, 7])

    def saved_bytes(module):
        with SavedTensorMeter(module) as meter:
            loss = F.cross_entropy(module(x), y)
        loss.backward()
        module.zero_grad(set_to_none=True)
        return meter.bytes

    with caplog.at_level("INFO"):
        callback = CompileNetwork()
        callback.compile(compiled)
    assert "memory-saving reversible stack" in caplog.text
    assert "backbone.body.blocks.0.f" in callback.compiled
    assert "backbone.body" not in callback.compiled  # the reconstructing Function stays eager
    assert_same_loss_and_gradients(lambda m: F.cross_entropy(m(x), y), eager, compiled)

    eager.backbone.memory_saving = False
    plain = saved_bytes(eager)
    eager.backbone.memory_saving = True
    saving = saved_bytes(eager)
    compiled_saving = saved_bytes(compiled)
    assert saving < plain / 3, (saving, plain)
    assert compiled_saving <= 1.1 * saving, (compiled_saving, saving, plain)


@pytest.mark.slow
def test_grad_module_compiles_its_encoder_target_and_heads_once_built():
    class Recording(CompileNetwork):
        def on_train_batch_end(self, trainer, pl_module, *args, **kwargs):
            self.seen = list(self.compiled)

    torch.manual_seed(0)
    x, y, s = torch.randn(32, 3), torch.randint(0, 2, (32,)).float(), torch.randint(0, 2, (32, 1))
    model = GRADModule(input_dim=3, protected_classes=[2], hidden=[8, 4], head_hidden=[4])
    callback = Recording()
    before = graphs_compiled()
    trainer = quiet_trainer(max_steps=2, callbacks=[callback], num_sanity_val_steps=0)
    trainer.fit(model, DataLoader(TensorDataset(x, y, s), batch_size=16))
    assert callback.seen == ["encoder", "target", "heads", "heads.losses"]
    assert graphs_compiled() > before
    assert callback.compiled == []  # undone at teardown
    assert model.encoder._compiled_call_impl is None


def test_a_module_without_known_network_attributes_is_refused_naming_the_fix():
    with pytest.raises(ValueError, match=r"set init_args\.attributes"):
        CompileNetwork().compile(LightningModule())
    with pytest.raises(ValueError, match=r"attributes=\['nope'\]"):
        CompileNetwork(attributes=["nope"]).compile(LightningModule())


@pytest.mark.slow
def test_compile_network_from_yaml_trains(tmp_path):
    config = tiny_config(
        tmp_path, callbacks="[{class_path: CompileNetwork, init_args: {mode: default}}]"
    )
    trainer, model, data = instantiate_with_trainer(
        config, ["--trainer.max_steps=2", "--trainer.limit_val_batches=0"]
    )
    callback = next(c for c in trainer.callbacks if isinstance(c, CompileNetwork))
    assert callback.options["mode"] == "default"
    before = graphs_compiled()
    trainer.fit(model, data)
    assert trainer.global_step == 2
    assert graphs_compiled() > before
    assert torch.isfinite(trainer.callback_metrics["train/bpd"])


def test_restore_puts_dynamos_recompile_limit_back(monkeypatch):
    """compile() raises the limit for its many compiled parts; restore() must not leak it."""
    monkeypatch.setattr(torch._dynamo.config, "recompile_limit", 8)
    model = GRADModule(input_dim=3, protected_classes=[2], hidden=[8, 4], head_hidden=[4])
    callback = CompileNetwork()
    callback.compile(model)
    assert torch._dynamo.config.recompile_limit > 8
    callback.compile(model)  # a second call (validate within fit) does nothing
    callback.restore()
    assert torch._dynamo.config.recompile_limit == 8
    assert callback.compiled == []
