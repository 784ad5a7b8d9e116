"""A user's Keras classifier read from its graph: one output, logits, its exposed layers.

tfool works on logits. A classifier whose graph ends in a softmax (a ``Softmax`` layer, an
``Activation("softmax")`` layer or a layer built with ``activation="softmax"``, possibly
followed by layers that do nothing at inference such as ``Dropout``) is read through a
model that stops before that softmax, sharing every weight, so the probabilities tfool
reports are the model's own. ``from_logits`` overrides the reading: ``None`` (auto) reads
the graph, ``True`` says the output is logits (refused when the graph ends in a softmax,
which would be applied twice), ``False`` says it is probabilities (the softmax is stripped
when the graph shows one; otherwise the outputs are checked to be probabilities).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from tfool import _tf

logger = logging.getLogger(__name__)

#: Names that stand for the class probabilities as the last exposed layer.
PROBABILITY_NAMES = ("probabilities", "softmax")
#: Layers that pass their input through unchanged at inference.
_PASS_THROUGH = (
    keras.layers.Dropout,
    keras.layers.SpatialDropout1D,
    keras.layers.SpatialDropout2D,
    keras.layers.SpatialDropout3D,
    keras.layers.GaussianDropout,
    keras.layers.GaussianNoise,
    keras.layers.AlphaDropout,
    keras.layers.ActivityRegularization,
    keras.layers.Identity,
)
_CONV = (
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
    keras.layers.Conv1DTranspose,
    keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose,
    keras.layers.SeparableConv1D,
    keras.layers.SeparableConv2D,
    keras.layers.DepthwiseConv1D,
    keras.layers.DepthwiseConv2D,
)
_ACTIVATION_LAYERS = (
    keras.layers.Activation,
    keras.layers.ReLU,
    keras.layers.LeakyReLU,
    keras.layers.ELU,
    keras.layers.PReLU,
)
_NORMALISATION = (keras.layers.BatchNormalization, keras.layers.LayerNormalization)
_WRAP = (
    "wrap it as a functional model: inputs = keras.Input(shape=IMAGE_SHAPE); "
    "model = keras.Model(inputs, your_model(inputs))"
)


def _activation_name(layer: Any) -> str:
    activation = getattr(layer, "activation", None)
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    return getattr(activation, "__name__", "") if activation is not None else ""


def check_graph(model: Any, what: str = "model") -> None:
    """Refuses, in one line, a model tfool cannot read: not a Keras model, subclassed
    (no graph of layers), unbuilt, several inputs or outputs, or an output that is not
    ``[batch, classes]``.

    Raises:
        ValueError: the message says what is supported and how to wrap the model.
    """
    name = getattr(model, "name", type(model).__name__)
    if not isinstance(model, keras.Model):
        raise ValueError(
            f"{what} is a {type(model).__name__}, expected a keras.Model (functional or "
            "Sequential) returning class scores"
        )
    if not isinstance(model, keras.Sequential) and not hasattr(model, "_operations"):
        raise ValueError(
            f"{what} {name!r} is a subclassed keras.Model ({type(model).__name__}): tfool "
            f"reads a functional or Sequential model's layers; {_WRAP}"
        )
    try:
        inputs, outputs = model.inputs, model.outputs
    except (AttributeError, ValueError) as err:
        raise ValueError(
            f"{what} {name!r} has no defined inputs: build it on keras.Input(shape=...) "
            f"first ({err})"
        ) from err
    if len(inputs) != 1:
        raise ValueError(
            f"{what} {name!r} has {len(inputs)} inputs; tfool supports one image input"
        )
    if len(outputs) != 1:
        raise ValueError(
            f"{what} {name!r} has {len(outputs)} outputs; tfool supports one output of class "
            f"scores: wrap the one you want as keras.Model(model.inputs, model.outputs[i])"
        )
    shape = tuple(outputs[0].shape)
    if len(shape) != 2 or not shape[-1]:
        raise ValueError(
            f"{what} {name!r} outputs shape {shape}; expected [batch, classes] class scores"
        )


def _producer(tensor) -> tuple[keras.layers.Layer, Any]:
    """The layer that made a graph tensor, and the tensor it was called on."""
    layer, node_index, _ = tensor._keras_history
    node = layer._inbound_nodes[node_index]
    inputs = node.input_tensors
    return layer, inputs[0] if len(inputs) == 1 else None


class _Graph:
    """The layers of a model's own graph, found by walking back from its output: each
    layer's output tensor in this graph, how often the graph calls it, and which layers
    consume it. (A layer's node lists may hold calls from other graphs: Keras keeps them
    when a Sequential model is rebuilt or loaded.)"""

    def __init__(self, model: keras.Model):
        self.output: dict[str, Any] = {}
        self.calls: dict[str, int] = {}
        self.consumers: dict[str, list] = {}
        seen: set[int] = set()
        stack = [model.outputs[0]]
        while stack:
            tensor = stack.pop()
            layer, node_index, tensor_index = tensor._keras_history
            node = layer._inbound_nodes[node_index]
            if id(node) in seen:
                continue
            seen.add(id(node))
            self.calls[layer.name] = self.calls.get(layer.name, 0) + 1
            self.output[layer.name] = tensor
            for inp in node.input_tensors:
                producer = inp._keras_history[0]
                self.consumers.setdefault(producer.name, []).append(layer)
                stack.append(inp)

    def single_output(self, name: str):
        """The output of a layer the graph calls once (``None`` otherwise)."""
        return self.output.get(name) if self.calls.get(name) == 1 else None


def _output_end(model: keras.Model) -> tuple[keras.layers.Layer, Any]:
    """The layer that makes the model's output, past pass-through layers such as
    ``Dropout``, and the tensor it was called on."""
    layer, inp = _producer(model.outputs[0])
    while isinstance(layer, _PASS_THROUGH) and inp is not None:
        layer, inp = _producer(inp)
    return layer, inp


def output_layer(model: keras.Model) -> keras.layers.Layer:
    """The layer that makes the model's output (past pass-through layers such as
    ``Dropout``)."""
    return _output_end(model)[0]


def final_softmax(model: keras.Model) -> str | None:
    """The name of the layer whose softmax ends the model's graph, or ``None``.

    A nested model that makes the output is looked into. ``log_softmax`` counts as
    logits (its softmax is the model's probabilities).

    Raises:
        ValueError: the graph ends in another squashing activation (``sigmoid``), whose
            outputs are no one distribution over the classes.
    """
    layer = output_layer(model)
    if isinstance(layer, keras.Model) and hasattr(layer, "outputs"):
        return final_softmax(layer)
    kind = _activation_name(layer)
    if kind == "softmax":
        return layer.name
    if kind in ("sigmoid", "hard_sigmoid"):
        raise ValueError(
            f"model {model.name!r} ends in a {kind} (layer {layer.name!r}): independent "
            "per-class probabilities, not one distribution over the classes; tfool needs a "
            "classifier that returns logits or a softmax"
        )
    return None


class _WithoutActivation(keras.layers.Layer):
    """Calls a layer with its activation switched off; the weights stay the layer's."""

    def __init__(self, layer: keras.layers.Layer, **kwargs):
        super().__init__(name=f"{layer.name}_logits", **kwargs)
        self.inner = layer

    def call(self, x):
        activation = self.inner.activation
        self.inner.activation = keras.activations.linear
        try:
            return self.inner.call(x)
        finally:
            self.inner.activation = activation

    def compute_output_shape(self, input_shape):
        return self.inner.compute_output_shape(input_shape)


def _strip(model: keras.Model) -> keras.Model:
    layer, inp = _output_end(model)
    if inp is None:
        raise ValueError(
            f"model {model.name!r}: the layer {layer.name!r} that ends in a softmax takes "
            "several inputs; pass a model that returns logits"
        )
    if isinstance(layer, keras.Model):
        inner = logits_model(layer, None)[0]
        out = inner(inp)
    elif isinstance(layer, (keras.layers.Softmax, keras.layers.Activation)):
        out = inp
    else:
        out = _WithoutActivation(layer)(inp)
    return keras.Model(model.inputs[0], out, name=model.name)


def logits_model(model: Any, from_logits: bool | None = None) -> tuple[Any, bool]:
    """The model to compute with, and whether its output is logits.

    Args:
        model: A Keras classifier, or any callable from images to class scores.
        from_logits: ``None`` reads the graph; ``True`` or ``False`` state what the model
            returns (see the module docstring).

    Returns:
        ``(model, True)`` for a model returning logits, ``(logits_model, True)`` for one
        whose final softmax was stripped (made once per model, sharing its weights), or
        ``(model, False)`` when ``from_logits=False`` and the graph shows no softmax.

    Raises:
        ValueError: ``from_logits=True`` on a model ending in a softmax, a sigmoid output,
            several outputs.
    """
    if from_logits is not None and not isinstance(from_logits, (bool, np.bool_)):
        raise ValueError(f"from_logits={from_logits!r} must be True, False or None (auto)")
    if not (isinstance(model, keras.Model) and has_graph(model)):
        return model, from_logits is not False
    check_graph(model)
    softmax = final_softmax(model)
    if softmax is None:
        return model, from_logits is not False
    if from_logits:
        raise ValueError(
            f"from_logits=True but model {model.name!r} ends in a softmax (layer "
            f"{softmax!r}): it would be applied twice; leave from_logits unset to read "
            "logits before that softmax"
        )
    stripped = _tf.cached(model, ("logits_model",), lambda: _strip(model))
    logger.debug("model %r: read before its final softmax (layer %r)", model.name, softmax)
    return stripped, True


def logits_copy(model: keras.Model) -> keras.Model:
    """An independent copy of a classifier that returns logits, to train: the model itself
    (copied) when its graph ends in no softmax, else the copy without that softmax.

    Raises:
        ValueError: a model tfool cannot read, or one whose softmax sits in a nested model.
    """
    check_graph(model)
    name = final_softmax(model)
    if name is None:
        clone = keras.models.clone_model(model)
        clone.set_weights(model.get_weights())
        return clone
    last = output_layer(model)
    if isinstance(last, keras.Model):
        raise ValueError(
            f"model {model.name!r}: its final softmax is inside the nested model "
            f"{last.name!r}; pass a model that returns logits to train"
        )
    if isinstance(last, (keras.layers.Softmax, keras.layers.Activation)):
        trunk = keras.Model(model.inputs[0], last.input, name=model.name)
        clone = keras.models.clone_model(trunk)
        clone.set_weights(trunk.get_weights())
        return clone

    def clone_layer(layer):
        config = layer.get_config()
        if layer is last:
            config["activation"] = "linear"
        return layer.__class__.from_config(config)

    clone = keras.models.clone_model(model, clone_function=clone_layer)
    clone.set_weights(model.get_weights())
    return clone


def has_graph(model: Any) -> bool:
    """Whether ``model`` is a Keras model with a graph of layers (functional or a built
    Sequential)."""
    if not isinstance(model, keras.Model):
        return False
    try:
        return bool(model.inputs) and bool(model.outputs)
    except (AttributeError, ValueError):
        return False


def check_outputs(outputs: Any, is_logits: bool, from_logits: bool | None, name: str) -> None:
    """Checks class scores against what they are taken for.

    Auto-read logits that look like probabilities (every value in [0, 1], every row
    summing to 1) are refused: the graph shows no softmax but the output is one, so
    ``from_logits`` must say which. Outputs taken for probabilities must be them.

    Raises:
        ValueError: naming the model, what was found and what to pass.
    """
    out = np.asarray(outputs, np.float64)
    if out.ndim != 2 or out.size == 0:
        return
    sums = out.sum(axis=-1)
    looks_like_probs = bool(
        out.min() >= 0.0 and out.max() <= 1.0 and np.allclose(sums, 1.0, atol=1e-3)
    )
    if is_logits and from_logits is None and looks_like_probs and out.shape[-1] > 1:
        raise ValueError(
            f"model {name!r} returns rows of values in [0, 1] summing to 1, probabilities by "
            "the look of them, but its graph ends in no softmax layer: pass "
            "from_logits=False if they are probabilities, from_logits=True if logits"
        )
    if not is_logits and not looks_like_probs:
        raise ValueError(
            f"from_logits=False but model {name!r} does not return probabilities: values "
            f"{out.min():.3g}..{out.max():.3g}, row sums {sums.min():.3g}..{sums.max():.3g}"
        )


def probe(model: Any, x: np.ndarray, from_logits: bool | None = None) -> None:
    """Runs ``check_outputs`` on the model's scores for up to 16 images of ``x``.

    Raises:
        ValueError: as ``check_outputs``.
    """
    scores, is_logits = logits_model(model, from_logits)
    batch = np.asarray(x[:16], np.float32)
    if not len(batch):
        return
    out = scores(batch, training=False) if isinstance(scores, keras.Model) else scores(batch)
    check_outputs(np.asarray(out), is_logits, from_logits, getattr(model, "name", "model_fn"))


def input_name(model: keras.Model) -> str:
    """The name that stands for the model's input among its exposed layers."""
    layers = getattr(model, "_layers", None) or model.layers
    first = layers[0] if layers else None
    if isinstance(first, keras.layers.InputLayer):
        return first.name
    return "input"


def _is_reference_cnn(model: keras.Model) -> bool:
    names = {layer.name for layer in model.layers}
    return "fc" in names and "conv0" in names and "inputs" in names


def _reference_cnn_names(model: keras.Model) -> tuple[str, ...]:
    names = {layer.name for layer in model.layers}
    conv = sorted(
        (n for n in names if n.startswith("conv") and n[4:].isdigit()), key=lambda n: int(n[4:])
    )
    return ("inputs", *conv, "fc", "softmax")


def _after_activation(layer: keras.layers.Layer, graph: _Graph) -> keras.layers.Layer:
    """The layer whose output is ``layer``'s after its activation: itself when it has a
    non-linear activation, else the first activation layer reached through single
    consumers and normalisation layers (itself when there is none)."""
    if _activation_name(layer) not in ("", "linear"):
        return layer
    current = layer
    while True:
        consumers = graph.consumers.get(current.name, [])
        nxt = consumers[0] if len(consumers) == 1 else None
        if nxt is None:
            return layer
        if isinstance(nxt, _ACTIVATION_LAYERS) and _activation_name(nxt) != "softmax":
            return nxt
        if not isinstance(nxt, _NORMALISATION):
            return layer
        current = nxt


def default_layer_names(model: keras.Model) -> tuple[str, ...]:
    """The layers backworking exposes when ``layer_names`` is not given.

    The rule, for any functional or Sequential classifier: the input, then the output of
    every convolution and of every hidden ``Dense`` layer, each after its activation (the
    layer itself when it has one, else the activation layer that follows it, past any
    batch or layer normalisation), in graph order, then ``probabilities``, the class
    probabilities. The class layer (the one making the logits) is not a hidden layer.
    tfool's reference CNN (layers ``inputs``, ``conv<i>``, ``fc``) keeps the post's
    choice: ``inputs, conv0, conv1, fc, softmax`` (``conv<i>`` after pooling, ``fc``
    before its ReLU). Layers called more than once and layers inside nested models are
    not exposed.

    Raises:
        ValueError: a model tfool cannot read (see ``check_graph``).
    """
    check_graph(model)
    if _is_reference_cnn(model):
        return _reference_cnn_names(model)
    class_layers = _class_layers(model)
    graph = _Graph(model)
    names = [input_name(model)]
    for layer in model.layers:
        if layer.name in class_layers:
            continue
        if not isinstance(layer, (*_CONV, keras.layers.Dense)):
            continue
        if graph.single_output(layer.name) is None:
            continue
        exposed = _after_activation(layer, graph).name
        if exposed not in names:
            names.append(exposed)
    return (*names, "probabilities")


def _class_layers(model: keras.Model) -> set[str]:
    """The layers whose output is the class scores (the output layer, the logits layer
    before a final softmax, pass-through layers between)."""
    names = set()
    layer, inp = _producer(model.outputs[0])
    while True:
        names.add(layer.name)
        if isinstance(layer, _PASS_THROUGH) or (
            isinstance(layer, (keras.layers.Softmax, keras.layers.Activation))
            and _activation_name(layer) == "softmax"
        ):
            if inp is None:
                break
            layer, inp = _producer(inp)
            continue
        break
    return names


def _check_last_name(model: keras.Model, graph: _Graph, known: list[str], last: str) -> None:
    """Refuses a last entry of ``layer_names`` that is not the class probabilities."""
    if last in known and last not in _class_layers(model):
        tensor = graph.output.get(last)
        shape = (
            tuple(tensor.shape) if tensor is not None else tuple(model.get_layer(last).output.shape)
        )
        num = int(model.outputs[0].shape[-1])
        what = (
            f"a hidden layer with {shape[-1]} units"
            if len(shape) == 2
            else f"a layer of {len(shape) - 1}-D activations {shape}"
        )
        raise ValueError(
            f"the last of layer_names must be the class probabilities ('probabilities', or "
            f"the output layer {output_layer(model).name!r}); {last!r} is {what} and the "
            f"model has {num} classes"
        )
    if last not in known and last not in PROBABILITY_NAMES:
        raise ValueError(
            f"layer {last!r} is not in model {model.name!r}; the last of layer_names must "
            f"be the class probabilities: 'probabilities' or the output layer "
            f"{output_layer(model).name!r}"
        )


def activation_model(
    model: keras.Model, layer_names: Sequence[str] | None = None, from_logits: bool | None = None
) -> keras.Model:
    """A model from the classifier's input to its named activations, in order.

    The wrapped model is shared, never copied, mutated or retrained.

    Args:
        model: A functional or Sequential Keras classifier (one input, one output).
        layer_names: Layers whose outputs are exposed, in order; ``None``:
            ``default_layer_names(model)``. The model's input is named by its input layer
            (``input`` when it has none). The last entry is always the class probabilities:
            ``probabilities`` (or ``softmax``), or the name of the layer that makes the
            class scores; any other layer there is refused.
        from_logits: What the model returns (``None``: read from its graph; see
            ``logits_model``).

    Returns:
        A ``keras.Model`` whose output is a dict ``{name: activation}``; the attribute
        ``layer_names`` holds the order.

    Raises:
        ValueError: an unknown layer name (the message lists the model's layers), a last
            entry that is not the class probabilities, a model tfool cannot read.
    """
    check_graph(model)
    names = tuple(layer_names) if layer_names is not None else default_layer_names(model)
    if not names:
        raise ValueError("layer_names is empty; expected at least the probabilities layer")
    if len(set(names)) != len(names):
        raise ValueError(f"layer_names={list(names)} has duplicates")
    scores, is_logits = logits_model(model, from_logits)
    graph = _Graph(model)
    known = [layer.name for layer in model.layers]
    in_name = input_name(model)
    outputs = {}
    for name in names[:-1]:
        if name == in_name:
            outputs[name] = model.inputs[0]
            continue
        if name not in known:
            raise ValueError(
                f"layer {name!r} is not in model {model.name!r}; its layers: "
                f"{[in_name, *(k for k in known if k != in_name)]}"
            )
        tensor = graph.single_output(name)
        if tensor is None:
            why = "is called more than once" if graph.calls.get(name) else "is not on the path"
            raise ValueError(
                f"layer {name!r} of model {model.name!r} {why} from the input to the class "
                "scores; its output is ambiguous: expose another layer"
            )
        outputs[name] = tensor
    last = names[-1]
    _check_last_name(model, graph, known, last)
    probs = scores.outputs[0] if scores is not model else model.outputs[0]
    if is_logits:
        probs = keras.layers.Softmax(name=f"{last}_probabilities")(probs)
    outputs[last] = probs
    act = keras.Model(model.inputs[0], outputs, name=f"{model.name}_activations")
    act.layer_names = names
    return act


def image_shape(model: keras.Model, data_shape: Sequence[int] | None = None) -> tuple[int, ...]:
    """The shape of one input image: the model's, with unknown dimensions taken from the
    data's images when they fit.

    Raises:
        ValueError: the data's images do not fit the model's input, or a dimension is
            unknown and there is no data to fix it.
    """
    expected = tuple(model.inputs[0].shape[1:])
    shown = "(" + ", ".join("None" if e is None else str(e) for e in expected) + ")"
    if data_shape is None:
        if None in expected:
            raise ValueError(
                f"model {model.name!r} takes inputs of shape {shown} with unknown "
                "dimensions; give training images (data) to fix them"
            )
        return tuple(int(e) for e in expected)
    data_shape = tuple(int(s) for s in data_shape)
    if len(expected) != len(data_shape) or any(
        e is not None and e != d for e, d in zip(expected, data_shape)
    ):
        raise ValueError(
            f"the images have shape {data_shape} but model {model.name!r} takes {shown}"
        )
    return data_shape
