import os

import keras
import numpy as np
import pytest

import keras_anneal

# The shared MNIST file of this project's machines, if present.
MNIST_PATH = os.path.join(
    os.path.dirname(__file__), os.pardir, os.pardir, "shared", "datasets", "mnist.npz"
)


class Scale(keras.layers.Layer):
    """A custom layer that opts into pruning with `get_prunable_weights`."""

    def build(self, input_shape):
        self.scale = self.add_weight(shape=input_shape[-1:], initializer="ones")

    def call(self, x):
        return x * self.scale

    def get_prunable_weights(self):
        return [self.scale]


class DenseBlock(keras.layers.Layer):
    """A custom layer holding one Dense: `prune_model` wraps the block whole."""

    def __init__(self, units, inner_name="inner", **kwargs):
        super().__init__(**kwargs)
        self.inner = keras.layers.Dense(units, name=inner_name)

    def call(self, x):
        return self.inner(x)


def small_mlp(inputs=8, hidden=16, outputs=4):
    return keras.Sequential(
        [
            keras.Input((inputs,)),
            keras.layers.Dense(hidden, activation="relu", name="hidden"),
            keras.layers.Dense(outputs, name="out"),
        ]
    )


def regression_data(n=64, inputs=8, outputs=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, inputs)).astype("float32")
    y = rng.normal(size=(n, outputs)).astype("float32")
    return x, y


@pytest.fixture(scope="session")
def mnist_file(tmp_path_factory):
    """The shared MNIST file if present, else a small random stand-in."""
    if os.path.exists(MNIST_PATH):
        return MNIST_PATH
    rng = np.random.default_rng(0)
    path = str(tmp_path_factory.mktemp("data") / "mnist.npz")
    np.savez(path, x_train=rng.integers(0, 255, (600, 28, 28), dtype=np.uint8),
             y_train=rng.integers(0, 10, 600, dtype=np.uint8),
             x_test=rng.integers(0, 255, (100, 28, 28), dtype=np.uint8),
             y_test=rng.integers(0, 10, 100, dtype=np.uint8))
    return path
