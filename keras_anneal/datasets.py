"""MNIST from a local `.npz` file, or from the usual Keras download."""

import numpy as np


def load_mnist(path=None):
    """MNIST as `(x_train, y_train), (x_test, y_test)`: uint8 images, uint8 labels.

    Args:
        path: a local `.npz` file with the keys `x_train`, `y_train`,
            `x_test`, `y_test` (the layout `keras.datasets.mnist` uses).
            `None` downloads through `keras.datasets.mnist.load_data()`.
            Defaults to `None`.

    Returns:
        `(x_train, y_train), (x_test, y_test)`, NumPy arrays.

    Example:

    >>> (x_train, y_train), (x_test, y_test) = load_mnist("mnist.npz")  # doctest: +SKIP
    """
    if path is None:
        import keras

        return keras.datasets.mnist.load_data()
    with np.load(path) as data:
        return (data["x_train"], data["y_train"]), (data["x_test"], data["y_test"])
