"""LeNet-5 on MNIST, pruned after training by simulated annealing and a genetic algorithm.

Seed 002's setting: LeNet-5 (6 and 16 filters of 5x5, sigmoid, average pooling,
Dense 120 -> 84 -> 10) trained on MNIST, then its masks searched layer by
layer. Unlike the seed, the masks are chosen on a validation split (the last
5,000 training images), and the test set is only used for the final figures:

    python examples/lenet_search.py --data ../shared/datasets/mnist.npz
    python examples/lenet_search.py --strategy genetic --loss-cap 0.02

Add `--data path/to/mnist.npz` to read a local copy instead of downloading.
"""

import argparse

import keras
import numpy as np

import keras_anneal

VALIDATION = 5000


def build_lenet():
    """LeNet-5 as in seed 002: sigmoid activations and average pooling."""
    L = keras.layers
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            L.Conv2D(6, 5, activation="sigmoid"),
            L.AveragePooling2D(2),
            L.Conv2D(16, 5, activation="sigmoid"),
            L.AveragePooling2D(2),
            L.Flatten(),
            L.Dense(120, activation="sigmoid"),
            L.Dense(84, activation="sigmoid"),
            L.Dense(10, activation="softmax"),
        ],
        name="lenet5",
    )


def compile_model(model, learning_rate=1e-3):
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def load_data(path=None, subset=None):
    """`(train, validation, test)` pairs, images in [0, 1] with a channel axis.

    The validation split (the last 5,000 training images, or a sixth of
    `subset`) is the calibration data of the searches.
    """
    (x_train, y_train), (x_test, y_test) = keras_anneal.load_mnist(path)
    x_train = (x_train[..., None] / 255.0).astype("float32")
    x_test = (x_test[..., None] / 255.0).astype("float32")
    if subset:
        x_train, y_train = x_train[:subset], y_train[:subset]
        x_test, y_test = x_test[: max(1, subset // 6)], y_test[: max(1, subset // 6)]
    held_out = min(VALIDATION, len(x_train) // 6)
    return (
        (x_train[:-held_out], y_train[:-held_out]),
        (x_train[-held_out:], y_train[-held_out:]),
        (x_test, y_test),
    )


def train_lenet(train, validation, epochs=10, batch_size=128, verbose=2):
    """A trained LeNet-5, wrapped for pruning (all masks still ones)."""
    model = compile_model(keras_anneal.prune_model(build_lenet()))
    model.fit(*train, batch_size=batch_size, epochs=epochs, validation_data=validation, verbose=verbose)
    return model


def search(model, strategy, validation, **kwargs):
    """Runs one search on the validation split; returns its `SearchResult`."""
    function = {
        "annealing": keras_anneal.search.simulated_annealing,
        "genetic": keras_anneal.search.genetic_algorithm,
    }[strategy]
    return function(model, *validation, **kwargs)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="local mnist.npz; downloads MNIST if omitted")
    parser.add_argument("--strategy", choices=["annealing", "genetic", "both"], default="both")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--loss-cap", type=float, default=keras_anneal.search.costs.DEFAULT_LOSS_INCREASE,
                        help="validation loss increase allowed by the last layer")
    parser.add_argument("--iterations", type=int, default=200, help="simulated annealing: candidates per layer")
    parser.add_argument("--generations", type=int, default=20, help="genetic algorithm: generations per layer")
    parser.add_argument("--subset", type=int, help="first N training images (for quick runs)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    keras.utils.set_random_seed(args.seed)
    train, validation, test = load_data(args.data, args.subset)
    model = train_lenet(train, validation, epochs=args.epochs)
    _, base_accuracy = model.evaluate(*test, verbose=0)
    print(f"LeNet-5: test accuracy {base_accuracy:.2%}")
    trained = [layer.get_masks() for layer in keras_anneal.masked_layers(model)]
    strategies = ["annealing", "genetic"] if args.strategy == "both" else [args.strategy]
    results = {}
    for strategy in strategies:
        for layer, masks in zip(keras_anneal.masked_layers(model), trained):
            layer.set_masks(masks)  # Every search starts from the trained model.
        budget = {"iterations": args.iterations} if strategy == "annealing" else {"generations": args.generations}
        result = search(model, strategy, validation, loss_cap=args.loss_cap, seed=args.seed, **budget)
        _, accuracy = model.evaluate(*test, verbose=0)
        results[strategy] = result
        print(f"{strategy}: {result.sparsity:.1%} of the weights pruned "
              f"(layer mean {result.mean_layer_sparsity:.1%}), test accuracy {accuracy:.2%} "
              f"({accuracy - base_accuracy:+.2%}), {result.seconds:.0f} s, "
              f"{result.evaluations_per_second:.0f} evaluations/s")
        print(keras_anneal.sparsity_report(model))
    return model, results


if __name__ == "__main__":
    main()
