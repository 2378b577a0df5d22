"""Keras' mnist_cnn example, with its Dropout replaced by annealed pruning.

The model is the classic one (Conv32 -> Conv64 -> MaxPool -> Dropout .25 ->
Flatten -> Dense128 -> Dropout .5 -> Dense10; Adadelta at learning rate 1.0,
batch 128, 12 epochs). With `--regularizer anneal` the two Dropout layers go,
and the two Dense layers they guarded are pruned during `fit` instead:

    python examples/mnist_cnn.py --regularizer dropout     # the original
    python examples/mnist_cnn.py --regularizer anneal      # 90% of the dense weights, DropConnect 0.5
    python examples/mnist_cnn.py --regularizer anneal --schedule constant-rate
    python examples/mnist_cnn.py --regularizer anneal --drop-connect-noise bernoulli  # one draw per batch
    python examples/mnist_cnn.py --regularizer anneal --schedule fsa --drop-connect 0  # pruning alone
    python examples/mnist_cnn.py --regularizer anneal --drop-connect-noise bernoulli --conv-drop-connect 0.25
    python examples/mnist_cnn.py --regularizer hybrid    # Dropout kept, its rate scaled to the connections left
    python examples/mnist_cnn.py --regularizer none

Add `--data path/to/mnist.npz` to read a local copy instead of downloading.
"""

import argparse
import math

import keras

import keras_anneal

BATCH_SIZE = 128
EPOCHS = 12


def build_model(dropout=True):
    """mnist_cnn; `dropout=False` leaves out its two Dropout layers."""
    L = keras.layers
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            L.Conv2D(32, 3, activation="relu"),
            L.Conv2D(64, 3, activation="relu"),
            L.MaxPooling2D(2),
            *([L.Dropout(0.25)] if dropout else []),
            L.Flatten(),
            L.Dense(128, activation="relu"),
            *([L.Dropout(0.5)] if dropout else []),
            L.Dense(10, activation="softmax"),
        ],
        name="mnist_cnn",
    )


def compile_model(model):
    model.compile(
        optimizer=keras.optimizers.Adadelta(learning_rate=1.0),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def load_data(path=None, subset=None):
    """MNIST scaled to [0, 1] with a channel axis; `subset` keeps the first
    `subset` training and `subset // 6` test images (for quick runs)."""
    (x_train, y_train), (x_test, y_test) = keras_anneal.load_mnist(path)
    if subset:
        x_train, y_train = x_train[:subset], y_train[:subset]
        x_test, y_test = x_test[: max(1, subset // 6)], y_test[: max(1, subset // 6)]
    scale = lambda x: (x[..., None] / 255.0).astype("float32")  # noqa: E731
    return (scale(x_train), y_train), (scale(x_test), y_test)


def make_schedule(name="fsa", final_sparsity=0.9, mu=None):
    """The annealing plans compared in benchmarks/dropout_vs_anneal.py."""
    if name == "fsa":
        kwargs = {} if mu is None else {"mu": mu}
        return keras_anneal.schedules.FSA(final_sparsity, end_fraction=0.5, **kwargs)
    if name == "constant-rate":  # Seed 001: 0.5% of the original count every 50 updates.
        return keras_anneal.schedules.ConstantRate(rate=0.005, interval=50)
    if name == "polynomial":
        return keras_anneal.schedules.PolynomialDecay(final_sparsity=final_sparsity, end_fraction=0.5)
    if name == "recommended":  # What `AnnealedPruning(final_sparsity)` runs.
        return keras_anneal.schedules.recommended(final_sparsity)
    raise ValueError(
        "Argument `name` must be one of 'fsa', 'constant-rate', 'polynomial', 'recommended'. "
        f"Received: name={name!r}"
    )


def prepare(regularizer="anneal", schedule="fsa", final_sparsity=0.9, mu=None, frequency=50,
            criterion="magnitude", temporary=None, regrowth=None, regrowth_data=None,
            drop_connect=0.0, allocation="lamp", conv_drop_connect=0.0, drop_connect_groups=1,
            drop_connect_noise="bernoulli"):
    """The model to train and the callbacks it needs, for one regularizer.

    `drop_connect` is the DropConnect rate of the pruned Dense layers
    (`prune_model(drop_connect=...)`: at each training step that fraction
    of their kept weights is left out), drawn `drop_connect_groups` times
    per batch (`Masked(drop_connect_groups=...)`), or per example and
    weight as normal noise of the same variance with
    `drop_connect_noise="gaussian"`. `conv_drop_connect > 0` also wraps
    the second convolution, where Dropout(0.25) acted, for DropConnect at
    that rate; it stays dense (`PerLayer({conv: None}, rest=allocation)`)
    and the Dense layers still lose `final_sparsity` of their weights.
    `criterion`, `allocation`,
    `temporary`, `regrowth` and `regrowth_data` are passed to
    `AnnealedPruning` (`temporary` and `regrowth` as dicts of
    `TemporaryRemoval` and `Regrowth` arguments; `regrowth_data`, the
    training data, for `Regrowth(grow="gradient")`).
    """
    if regularizer == "dropout":
        return compile_model(build_model(dropout=True)), []
    model = build_model(dropout=regularizer == "hybrid")
    if regularizer == "none":
        return compile_model(model), []
    # Annealing: prune the two Dense layers that the Dropout layers guarded
    # (with "hybrid", the Dropout layers stay, their rates scaled down as
    # the Dense layers lose connections, Han et al. 2015).
    selected, rates = [keras.layers.Dense], {keras.layers.Dense: drop_connect}
    overall = final_sparsity
    if conv_drop_connect:
        conv = model.layers[1]  # Conv64, before the pooling and the first Dropout.
        selected.append(conv.name)
        rates[conv.name] = conv_drop_connect
        allocation = keras_anneal.allocation.PerLayer({f"masked_{conv.name}": None}, rest=allocation)
        dense = sum(math.prod(layer.kernel.shape) for layer in model.layers if isinstance(layer, keras.layers.Dense))
        overall = final_sparsity * dense / (dense + math.prod(conv.kernel.shape))
    model = keras_anneal.prune_model(
        model, layers=selected, drop_connect=rates, drop_connect_groups=drop_connect_groups,
        drop_connect_noise=drop_connect_noise)
    pruning = keras_anneal.AnnealedPruning(
        make_schedule(schedule, overall, mu),
        frequency,
        criterion=criterion,
        allocation=allocation,
        temporary=keras_anneal.TemporaryRemoval(**temporary) if temporary else None,
        regrowth=keras_anneal.Regrowth(**regrowth) if regrowth else None,
        regrowth_data=regrowth_data,
    )
    callbacks = [pruning]
    if regularizer == "hybrid":
        callbacks.append(keras_anneal.DropoutScaling(frequency=frequency))
    return compile_model(model), callbacks


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--regularizer", choices=["dropout", "anneal", "hybrid", "none"], default="anneal")
    parser.add_argument("--schedule", choices=["fsa", "constant-rate", "polynomial", "recommended"],
                        default="recommended")
    parser.add_argument("--final-sparsity", type=float, default=0.9)
    parser.add_argument("--mu", type=float, default=None, help="FSA's mu; the schedule's default if omitted")
    parser.add_argument("--frequency", type=int, default=50, help="optimizer steps between mask updates")
    parser.add_argument("--drop-connect", type=float, default=0.5,
                        help="DropConnect rate of the pruned Dense layers' kept weights in training")
    parser.add_argument("--drop-connect-groups", type=int, default=1,
                        help="independent DropConnect draws per batch (example i gets draw i mod g)")
    parser.add_argument("--drop-connect-noise", choices=["bernoulli", "gaussian"], default="gaussian",
                        help="weights left out (bernoulli) or scaled by normal noise per example (gaussian)")
    parser.add_argument("--conv-drop-connect", type=float, default=0.0,
                        help="DropConnect rate of the second convolution (wrapped, left dense; Bernoulli noise only)")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--data", help="local mnist.npz; downloads MNIST if omitted")
    parser.add_argument("--subset", type=int, help="train on the first N images only")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    keras.utils.set_random_seed(args.seed)
    (x_train, y_train), (x_test, y_test) = load_data(args.data, args.subset)
    model, callbacks = prepare(
        args.regularizer, args.schedule, args.final_sparsity, args.mu, args.frequency,
        drop_connect=args.drop_connect, conv_drop_connect=args.conv_drop_connect,
        drop_connect_groups=args.drop_connect_groups, drop_connect_noise=args.drop_connect_noise,
    )
    model.fit(x_train, y_train, batch_size=BATCH_SIZE, epochs=args.epochs,
              validation_data=(x_test, y_test), callbacks=callbacks, verbose=2)
    if args.regularizer in ("anneal", "hybrid"):
        print(keras_anneal.sparsity_report(model))
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    print(f"Test loss {loss:.4f}, test accuracy {accuracy:.4f}")
    return model


if __name__ == "__main__":
    main()
