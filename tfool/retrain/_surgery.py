"""Model surgery: independent copies of a classifier, and one grown by output classes."""

from __future__ import annotations

import keras


def num_outputs(model: keras.Model) -> int:
    return int(model.outputs[0].shape[-1])


def copy_model(model: keras.Model, fresh: bool = False) -> keras.Model:
    """An independent copy of a Keras model (same architecture and names).

    Args:
        model: The model to copy.
        fresh: Re-initialise every weight with its layer's initialiser instead of copying.
    """
    clone = keras.models.clone_model(model)
    if not fresh:
        clone.set_weights(model.get_weights())
    return clone


def grow_output_layer(model: keras.Model, extra: int = 1) -> keras.Model:
    """A copy of a classifier with ``extra`` more output classes.

    Every layer's weights are copied; the last (``Dense``) layer gets ``extra`` new output
    units initialised by its own kernel and bias initialisers, while the old units keep
    their weights, so the old classes' logits are unchanged. The model is not modified.

    Args:
        model: A classifier whose last layer is a ``Dense`` layer producing its one output.
        extra: Classes to add, >= 1.

    Returns:
        A new ``keras.Model`` with ``C + extra`` outputs.

    Raises:
        ValueError: ``extra < 1``, several outputs, or a last layer that is not ``Dense``.
    """
    if int(extra) != extra or extra < 1:
        raise ValueError(f"extra={extra} must be an integer >= 1")
    last = model.layers[-1]
    if len(model.outputs) != 1 or not isinstance(last, keras.layers.Dense):
        raise ValueError(
            f"model {model.name!r} must have one output made by a Dense last layer to grow it; "
            f"its last layer {last.name!r} is a {type(last).__name__}"
        )
    old_units = int(last.units)

    def clone_layer(layer):
        config = layer.get_config()
        if layer is last:
            config["units"] = old_units + int(extra)
        return layer.__class__.from_config(config)

    grown = keras.models.clone_model(model, clone_function=clone_layer)
    for old, new in zip(model.layers, grown.layers):
        if old is last:
            weights = [w.copy() for w in new.get_weights()]
            for w_new, w_old in zip(weights, old.get_weights()):
                w_new[..., :old_units] = w_old
            new.set_weights(weights)
        else:
            new.set_weights(old.get_weights())
    return grown


def next_model(current, num_classes, mode, from_scratch, strategy) -> keras.Model:
    """The model a round trains: a copy of ``current``, grown by one class in extra_class
    mode if it has none yet, re-initialised when ``from_scratch``."""
    with strategy.scope():
        if mode == "extra_class" and num_outputs(current) == num_classes:
            grown = grow_output_layer(current)
            return copy_model(grown, fresh=True) if from_scratch else grown
        return copy_model(current, fresh=from_scratch)
