"""Whether a density network fits the images of a DataModule, checked before any step."""

from __future__ import annotations

from lit_rev.fit_checks import CheckpointMismatch, FitMismatch


def check_fit(module, dm) -> None:
    """Raise :class:`~lit_rev.fit_checks.FitMismatch` where the network does not fit ``dm``.

    Checked: the network's ``in_channels`` and ``image_size`` (where it has them) against the
    DataModule's shape (a Glow built for 4x4 images would otherwise train on 28x28 ones by
    broadcasting its prior), the module's own ``n_bits`` (where given) against the
    DataModule's (5-bit bits/dim of 8-bit images skew the density/volume split), and the
    network's own ``n_bits`` (VAE, PixelCNN++) against the depth of the images it is given.

    Args:
        module: a :class:`~lit_rev.density.DensityModule`.
        dm: the DataModule: its ``n_bits`` and ``shape`` ``(C, H, W)``, where it has them.
    """
    given_bits, network = module.n_bits_given, module.network
    data_bits = getattr(dm, "n_bits", None)
    if given_bits is not None and data_bits is not None and given_bits != data_bits:
        either = "or null, to take the data's"
        raise FitMismatch("n_bits", given_bits, "n_bits", data_bits, model_alternative=either)
    bits = given_bits if given_bits is not None else data_bits
    net_bits = getattr(network, "n_bits", None)
    if net_bits is not None and bits is not None and net_bits != bits:
        images = f"the images have {bits} bits"
        raise FitMismatch("network.n_bits", net_bits, "n_bits", data_bits, images, bits)
    shape = getattr(dm, "shape", None)  # (C, H, W); the in-distribution set's where not given
    if shape is None:
        return
    own = "where unset, the in-distribution set's own"
    channels, height, width = shape
    net_channels = getattr(network, "in_channels", None)
    if net_channels is not None and net_channels != channels:
        images = f"the images have {channels} channel(s); {own}"
        convert = "to convert the images"
        raise FitMismatch(
            "network.in_channels", net_channels, "channels", channels, images, data_effect=convert
        )
    net_size = getattr(network, "image_size", None)
    if net_size is not None and (net_size, net_size) != (height, width):
        images = f"the images are {height}x{width}; {own}"
        resize = "to resize the images"
        raise FitMismatch(
            "network.image_size", net_size, "image_size", height, images, data_effect=resize
        )


def trained_on(module, dm) -> dict:
    """What ``module`` is trained on, for its checkpoints: ``n_bits``, ``shape``, ``dataset``."""
    shape = getattr(dm, "shape", None)
    names = getattr(dm, "test_names", None)
    return {
        "n_bits": module.n_bits,
        "shape": list(shape) if shape is not None else None,
        "dataset": names[0] if names else None,
    }


def check_checkpoint_fit(recorded: dict | None, dm) -> None:
    """Raise :class:`~lit_rev.fit_checks.CheckpointMismatch` where ``dm`` differs from ``recorded``.

    ``recorded`` is a checkpoint's :func:`trained_on`: its bit depth and image shape must be the
    data's. A checkpoint without the record (written before it was kept) is not checked.
    """
    if not recorded or dm is None:
        return
    now = trained_on_data(dm)
    bits, data_bits = recorded.get("n_bits"), now["n_bits"]
    if bits is not None and data_bits is not None and bits != data_bits:
        detail = f"bits/dim of {data_bits}-bit images under a model of {bits}-bit ones mean nothing"
        raise CheckpointMismatch("n_bits", bits, "n_bits", data_bits, detail)
    shape, data_shape = recorded.get("shape"), now["shape"]
    if shape is not None and data_shape is not None and list(shape) != list(data_shape):
        channels, size = shape[0], shape[1]
        if channels != data_shape[0]:
            raise CheckpointMismatch("channels", channels, "channels", data_shape[0])
        raise CheckpointMismatch("image_size", size, "image_size", data_shape[1])


def trained_on_data(dm) -> dict:
    """The data's side of :func:`trained_on`: ``n_bits`` and ``shape`` of ``dm``."""
    shape = getattr(dm, "shape", None)
    return {"n_bits": getattr(dm, "n_bits", None), "shape": list(shape) if shape else None}
