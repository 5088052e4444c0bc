"""Activation memory against depth, RevNets beside ResNets of equal size: the rows and the plot.

One forward and backward of each preset of :data:`REVNET_PAIRS` on a random CIFAR-shaped
batch, with the reversible backward (per-unit checkpointing for a ResNet) and with plain
autograd; :class:`lit_rev.revnet.memory.SavedTensorMeter` counts what autograd saves. The
figure ``revnet_memory`` of ``python -m lit_rev.commands.figures``. matplotlib is imported
when the plot is drawn.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from lit_rev.report import require_finite
from lit_rev.revnet.memory import MIB, SavedTensorMeter
from lit_rev.revnet.networks import build

#: ResNet and RevNet presets of (nearly) equal parameter count, by RevNet depth.
REVNET_PAIRS: dict[int, tuple[str, str]] = {
    38: ("resnet32", "revnet38"),
    110: ("resnet110", "revnet110"),
    164: ("resnet164", "revnet164"),
}


def saved_activation_mib(
    name: str, memory_saving: bool, batch_size: int, image_size: int, seed: int = 0
) -> float:
    """MiB autograd saves for the backward in one forward of preset ``name`` (then its backward).

    Counted by :class:`lit_rev.revnet.memory.SavedTensorMeter` (each storage once, parameters
    excluded) on random CIFAR-shaped inputs, train mode.

    Args:
        name: a preset of :func:`lit_rev.revnet.networks.build`.
        memory_saving: the reversible (or checkpointed) backward instead of plain autograd.
        batch_size: images in the batch.
        image_size: their height and width.
        seed: seeds the weights and the batch.

    Returns:
        The saved activations in MiB.
    """
    torch.manual_seed(seed)
    net = build(name, memory_saving=memory_saving).train()
    x = torch.randn(batch_size, 3, image_size, image_size)
    y = torch.randint(0, 10, (batch_size,))
    with SavedTensorMeter(net) as meter:
        loss = F.cross_entropy(net(x), y)
    loss.backward()
    return meter.bytes / MIB


def revnet_memory_rows(
    depths: Sequence[int] = (38, 110, 164), batch_size: int = 32, image_size: int = 32
) -> list[dict]:
    """One row per (network, backward) of :data:`REVNET_PAIRS` at ``depths``: saved MiB.

    Args:
        depths: RevNet depths, keys of :data:`REVNET_PAIRS`.
        batch_size: images in the batch.
        image_size: their height and width.

    Returns:
        Rows with ``net``, ``depth``, ``backward``, ``saved_mib`` and ``seconds``.
    """
    rows = []
    for depth in depths:
        if depth not in REVNET_PAIRS:
            raise ValueError(f"depths: {depth} is not one of {sorted(REVNET_PAIRS)}")
        for name in REVNET_PAIRS[depth]:
            for saving in (True, False):
                started = time.time()
                mib = saved_activation_mib(name, saving, batch_size, image_size)
                rows.append(
                    {
                        "net": name,
                        "depth": int("".join(c for c in name if c.isdigit())),
                        "backward": "memory-saving" if saving else "plain",
                        "saved_mib": mib,
                        "seconds": time.time() - started,
                    }
                )
                print(f"    {name:10s} {rows[-1]['backward']:13s} {mib:8.1f} MiB", flush=True)
    return rows


def revnet_memory_plot(rows: list[dict], batch_size: int, image_size: int):
    """Saved-activation MiB against depth (log y), one line per family and kind of backward.

    Args:
        rows: the rows of :func:`revnet_memory_rows`.
        batch_size: their batch size, for the title.
        image_size: their image size, for the title.

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    require_finite("RevNet memory", "saved MiB", [r["saved_mib"] for r in rows])
    styles = {
        ("revnet", "memory-saving"): ("RevNet, reversible backward", "tab:green", "-o"),
        ("revnet", "plain"): ("RevNet, plain autograd", "tab:green", ":o"),
        ("resnet", "plain"): ("ResNet, plain autograd", "tab:red", "-s"),
        ("resnet", "memory-saving"): ("ResNet, per-unit checkpointing", "tab:red", ":s"),
    }
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for (family, backward), (label, color, style) in styles.items():
        rs = sorted(
            (r for r in rows if r["net"].startswith(family) and r["backward"] == backward),
            key=lambda r: r["depth"],
        )
        if not rs:
            continue
        ax.plot(
            [r["depth"] for r in rs], [r["saved_mib"] for r in rs], style, color=color, label=label
        )
        for r in rs:
            ax.annotate(
                f"{r['saved_mib']:.0f}",
                (r["depth"], r["saved_mib"]),
                fontsize=7,
                textcoords="offset points",
                xytext=(4, 3),
            )
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks(sorted({r["depth"] for r in rows}))
    ax.set_xlabel("depth (layers; ResNet-32/110/164 beside RevNet-38/110/164)")
    ax.set_ylabel("activations saved for backward (MiB, log scale)")
    ax.set_title(
        f"Activation memory vs depth (batch {batch_size}, {image_size}x{image_size}, "
        "one training step)",
        fontsize=10,
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
