"""Annealed pruning on MNIST in a minute: the README's quickstart, end to end.

A 784-300-100-10 network trains for a few epochs while `AnnealedPruning`
removes 90% of its connections on the recommended plan (a linear ramp from
20% to 80% of training); then the masks are baked into
a plain Keras model and saved.

    python examples/quickstart.py                       # downloads MNIST
    python examples/quickstart.py --data mnist.npz      # or reads a local copy
    KERAS_BACKEND=jax python examples/quickstart.py     # any Keras 3 backend
"""

import argparse

import keras

import keras_anneal


def build_model():
    return keras.Sequential(
        [
            keras.Input((28, 28)),
            keras.layers.Flatten(),
            keras.layers.Dense(300, activation="relu"),
            keras.layers.Dense(100, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="local mnist.npz; downloads MNIST if omitted")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--final-sparsity", type=float, default=0.9)
    parser.add_argument("--output", default="quickstart_stripped.keras")
    args = parser.parse_args()

    keras.utils.set_random_seed(0)
    (x_train, y_train), (x_test, y_test) = keras_anneal.load_mnist(args.data)
    x_train, x_test = x_train / 255.0, x_test / 255.0

    model = keras_anneal.prune_model(build_model())
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(
        x_train,
        y_train,
        batch_size=128,
        epochs=args.epochs,
        validation_split=0.1,
        verbose=2,
        # A sparsity alone: the recommended plan, a linear ramp from 20% to
        # 80% of training (keras_anneal.schedules.recommended).
        callbacks=[keras_anneal.AnnealedPruning(args.final_sparsity)],
    )

    print(keras_anneal.sparsity_report(model))
    stripped = keras_anneal.strip(model)
    stripped.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    _, accuracy = stripped.evaluate(x_test, y_test, verbose=0)
    print(f"Test accuracy of the stripped model: {accuracy:.4f}")
    stripped.save(args.output)
    print(f"Saved the plain Keras model to {args.output}")


if __name__ == "__main__":
    main()
