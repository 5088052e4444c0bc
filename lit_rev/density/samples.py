"""The grid of samples a density model shows during training and beside its OOD report."""

from __future__ import annotations

import torch

from lit_rev.inference import evaluating


def draws_samples(module) -> bool:
    """Whether ``module`` draws a sample grid: its network samples and ``num_samples > 0``.

    Networks that sample one pixel at a time (``sequential_sampling``) skip it under
    ``fast_dev_run``, a smoke test.
    """
    if not hasattr(module.network, "sample") or module.hparams.num_samples <= 0:
        return False
    fast = module._trainer is not None and bool(module.trainer.fast_dev_run)
    return not (fast and getattr(module.network, "sequential_sampling", False))


def sample_grid(module, seed: int = 0) -> torch.Tensor:
    """A grid of the module's ``num_samples`` samples in ``[0, 1]``, ``(C, H, W)``, from ``seed``.

    Drawn at the module's ``temperature`` with the network in eval mode; the global random
    state is left as it was.
    """
    from torchvision.utils import make_grid

    n, device = module.hparams.num_samples, module.device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        with evaluating(module.network):
            x = module.network.sample(n, temperature=module.hparams.temperature)
    if module.likelihood == "mass":
        images = x.float() / (2**module.n_bits - 1)
    else:
        images = x.float() + 0.5
    return make_grid(images.clamp(0, 1).cpu(), nrow=int(n**0.5))
