"""An architecture as data: the layer types a network is listed in, and what can be known of a
layer list without compiling anything (its shapes, whether it needs images, a name for it).

:mod:`.network` turns a layer list into the compiled network that trains it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Conv:
    """Valid-padding, stride-1 convolution to ``channels`` maps with a ``kernel`` x ``kernel`` window."""

    channels: int
    kernel: int


@dataclass(frozen=True)
class MaxPool:
    """2x2 max pooling, stride 2 (odd sizes are floored)."""


@dataclass(frozen=True)
class ReLU:
    """max(x, 0), in place."""


@dataclass(frozen=True)
class Dense:
    """Fully connected layer to ``units`` outputs."""

    units: int


Layer = Conv | MaxPool | ReLU | Dense


def mlp_layers(hidden: tuple[int, ...], n_classes: int) -> tuple[Layer, ...]:
    """A multilayer perceptron as a layer list: ``Dense, ReLU`` per hidden layer, then ``Dense``.

    On input shape ``(n_features, 1, 1)`` its parameter layout and initialisation are the
    classic MLP's (per layer ``W`` as fan_in x fan_out, then ``b``).
    """
    return (*(layer for units in hidden for layer in (Dense(units), ReLU())), Dense(n_classes))


def layer_shapes(input_shape: tuple[int, int, int],
                 layers: tuple[Layer, ...]) -> list[tuple[int, int, int]]:
    """The ``(channels, height, width)`` each layer outputs, on ``input_shape``.

    Plain Python (no numba), so a workload's layer list is checked at registration, before
    any data is loaded. Raises ValueError naming the first layer that cannot be built: a
    kernel larger than its input, a pool of a 1-pixel input, a list not ending with Dense.
    """
    if not layers or not isinstance(layers[-1], Dense):
        raise ValueError("a network ends with a Dense layer (its outputs are the logits)")
    c, h, w = input_shape
    shapes = []
    for i, layer in enumerate(layers):
        if isinstance(layer, Conv):
            if layer.kernel > min(h, w):
                raise ValueError(f"layer {i}: a {layer.kernel}x{layer.kernel} kernel does not "
                                 f"fit a {h}x{w} input")
            c, h, w = layer.channels, h - layer.kernel + 1, w - layer.kernel + 1
        elif isinstance(layer, MaxPool):
            if min(h, w) < 2:
                raise ValueError(f"layer {i}: cannot pool a {h}x{w} input")
            h, w = h // 2, w // 2
        elif isinstance(layer, Dense):
            c, h, w = layer.units, 1, 1
        elif not isinstance(layer, ReLU):
            raise TypeError(f"layer {i}: {layer!r} is not a Conv, MaxPool, ReLU or Dense")
        shapes.append((c, h, w))
    return shapes


def spatial(layers: tuple[Layer, ...]) -> bool:
    """Whether the layer list needs an image input: it holds a Conv or a MaxPool."""
    return any(isinstance(layer, (Conv, MaxPool)) for layer in layers)


def architecture_name(layers: tuple[Layer, ...]) -> str:
    """A short name for a layer list: ``conv3x3x4-relu-maxpool-...-dense10``."""
    def name(layer: Layer) -> str:
        if isinstance(layer, Conv):
            return f"conv{layer.kernel}x{layer.kernel}x{layer.channels}"
        if isinstance(layer, Dense):
            return f"dense{layer.units}"
        return type(layer).__name__.lower()
    return "-".join(map(name, layers))
