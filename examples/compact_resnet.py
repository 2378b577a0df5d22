"""Whole-filter annealing on a small residual network, then `compact`.

Trains a two-block residual CNN (BatchNormalization, `x + y` shortcuts) on
MNIST with `AnnealedPruning(granularity="unit")`, which removes whole
filters, then deletes them with `keras_anneal.compact`: channels that the
residual adds couple go only where they are dead on every branch. Prints
the parameter counts, how far the compacted model's outputs are from the
masked one's, its test accuracy and its filters.

    python examples/compact_resnet.py --data ../shared/datasets/mnist.npz
    python examples/compact_resnet.py --train 2000 --epochs 1   # a quick look
"""

import argparse

import keras
import numpy as np
from keras import layers

import keras_anneal


def residual_cnn():
    inputs = keras.Input((28, 28, 1))
    x = layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    x = layers.MaxPooling2D(2)(x)
    for filters in (16, 32):
        shortcut = x if x.shape[-1] == filters else layers.Conv2D(filters, 1)(x)
        y = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        y = layers.Activation("relu")(layers.BatchNormalization()(y))
        y = layers.Conv2D(filters, 3, padding="same", use_bias=False)(y)
        x = layers.Activation("relu")(shortcut + layers.BatchNormalization()(y))
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(10, activation="softmax")(x), name="residual_cnn")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="local mnist.npz; downloads MNIST if omitted")
    parser.add_argument("--train", type=int, default=20000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--units", type=float, default=0.5, help="fraction of filters removed")
    args = parser.parse_args(argv)

    (x, y), (x_test, y_test) = keras_anneal.load_mnist(args.data)
    x = (x[: args.train, ..., None] / 255.0).astype("float32")
    y = y[: args.train]
    x_test = (x_test[..., None] / 255.0).astype("float32")

    keras.utils.set_random_seed(0)
    model = keras_anneal.prune_model(residual_cnn())
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, batch_size=128, epochs=args.epochs, verbose=2, callbacks=[
        keras_anneal.AnnealedPruning(
            keras_anneal.schedules.FSA(args.units, end_fraction=0.5), frequency=10,
            granularity="unit")])

    small = keras_anneal.compact(model)
    plain = keras_anneal.strip(model)
    gap = np.max(np.abs(model.predict(x_test[:256], verbose=0) - small.predict(x_test[:256], verbose=0)))
    small.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    _, accuracy = small.evaluate(x_test, y_test, batch_size=1024, verbose=0)
    print(f"parameters: {plain.count_params():,} stripped, {small.count_params():,} compacted")
    print(f"largest output difference, masked vs compacted: {gap:.2e}")
    print(f"test accuracy of the compacted model: {100 * accuracy:.2f}%")
    for layer in small.layers:
        if isinstance(layer, layers.Conv2D):
            print(f"  {layer.name}: {layer.filters} filters")


if __name__ == "__main__":
    main()
