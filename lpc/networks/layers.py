"""Small building blocks shared by the encoders and decoders."""

from __future__ import annotations

from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "silu": nn.SiLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "softplus": nn.Softplus,
    "identity": nn.Identity,
}
NORMS = ("none", "group", "layer")


def activation(name: str) -> nn.Module:
    """An activation module by name (see ``ACTIVATIONS``)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]()


def norm2d(name: str, channels: int) -> nn.Module:
    """A per-example normalisation of a (B, C, H, W) feature map.

    BatchNorm is deliberately absent: in training mode it couples the examples of a batch, so the
    energy of one chain would depend on the other chains and the inner loop would not sample each
    example's posterior.
    """
    if name == "none":
        return nn.Identity()
    if name == "group":
        return nn.GroupNorm(min(32, channels // 4) or 1, channels)
    if name == "layer":
        return nn.GroupNorm(1, channels)
    raise ValueError(f"norm must be one of {list(NORMS)}, got {name!r}")
