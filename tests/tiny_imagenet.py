"""A tiny 1,000-class CNN wrapped as an ImagenetModel, shared by the ImageNet tests."""

import keras

from tfool import imagenet


def tiny_imagenet_model(size=16, seed=0, name="tiny", preprocess="vgg16", filters=8):
    """Conv 3x3 + ReLU, global average pooling, dense 1,000 logits, behind ``preprocess``."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(filters, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(1000)(x)
    return imagenet.from_keras(keras.Model(inputs, outputs), name, preprocess=preprocess)
