"""Next-value prediction of a time series, pruned with a fixed budget (seed 000).

Seed 000 predicted an exchange rate from a sliding window with a small dense
network, then chose by simulated annealing which weights to remove. Its data
is not public, so this example generates the Mackey-Glass series (delay 17),
a classic chaotic benchmark of time-series prediction:

    dx/dt = 0.2 x(t - 17) / (1 + x(t - 17)^10) - 0.1 x(t)

The network sees 16 past values and predicts the next one. The series is
split in time: the first 70% trains, the next 15% is the calibration set of
the search, the last 15% is the test set. The search removes exactly
`--budget` of the weights, starting from the smallest, and is compared with
removing the same number by magnitude alone:

    python examples/timeseries_pruning.py
    python examples/timeseries_pruning.py --budget 0.5 --iterations 1000
"""

import argparse

import keras
import numpy as np

import keras_anneal

WINDOW = 16


def mackey_glass(length=6000, tau=17, dt=1.0, warmup=500, seed=0):
    """The Mackey-Glass series, integrated with Euler steps of `dt`."""
    rng = np.random.default_rng(seed)
    delay = int(tau / dt)
    x = np.empty(warmup + length + delay)
    x[: delay + 1] = 1.2 + 0.01 * rng.standard_normal(delay + 1)
    for t in range(delay, len(x) - 1):
        lagged = x[t - delay]
        x[t + 1] = x[t] + dt * (0.2 * lagged / (1 + lagged**10) - 0.1 * x[t])
    return x[warmup + delay:].astype("float32")


def windows(series, window=WINDOW):
    """`(x, y)`: every run of `window` values and the value after it."""
    x = np.lib.stride_tricks.sliding_window_view(series[:-1], window)
    return x.copy(), series[window:, None].copy()


def split(series, window=WINDOW):
    """Standardised with the training part's statistics, then windowed by part."""
    train_end, calibration_end = int(0.7 * len(series)), int(0.85 * len(series))
    mean, std = series[:train_end].mean(), series[:train_end].std()
    series = (series - mean) / std
    return (
        windows(series[:train_end], window),
        windows(series[train_end:calibration_end], window),
        windows(series[calibration_end:], window),
    )


def build_model(window=WINDOW):
    """A five-layer dense network, as in seed 000."""
    L = keras.layers
    return keras.Sequential(
        [
            keras.Input((window,)),
            L.Dense(64, activation="relu"),
            L.Dense(32, activation="relu"),
            L.Dense(16, activation="relu"),
            L.Dense(1),
        ],
        name="next_value",
    )


def magnitude_prune(model, sparsity):
    """Removes the smallest weights of the model, all layers ranked together."""
    layers = keras_anneal.masked_layers(model)
    weights = [w for layer in layers for w in layer.get_masked_weights()]
    masks = [m for layer in layers for m in layer.get_masks()]
    new_masks = iter(keras_anneal.masking.magnitude_masks(weights, masks, sparsity, scope="global"))
    for layer in layers:
        layer.set_masks([next(new_masks) for _ in layer.masks])


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=0.3, help="fraction of the weights to remove")
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--length", type=int, default=6000, help="length of the series")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    keras.utils.set_random_seed(args.seed)
    train, calibration, test = split(mackey_glass(args.length, seed=args.seed))
    model = keras_anneal.prune_model(build_model())
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    model.fit(*train, batch_size=64, epochs=args.epochs, validation_data=calibration, verbose=0)
    trained = [layer.get_masks() for layer in keras_anneal.masked_layers(model)]
    base = model.evaluate(*test, verbose=0)

    total = keras_anneal.sparsity_report(model).total
    count = keras_anneal.masking.pruned_count(args.budget, total)
    magnitude_prune(model, args.budget)
    by_magnitude = model.evaluate(*test, verbose=0)

    for layer, masks in zip(keras_anneal.masked_layers(model), trained):
        layer.set_masks(masks)
    result = keras_anneal.search.fixed_budget_annealing(
        model, *calibration, budget=count, iterations=args.iterations, seed=args.seed, verbose=0)
    searched = model.evaluate(*test, verbose=0)
    print(f"Mackey-Glass, next value from {WINDOW}: test MSE {base:.2e} with all {total} weights")
    print(f"removing {count} weights ({count / total:.0%}): by magnitude {by_magnitude:.2e}, "
          f"by annealing {searched:.2e} ({result.seconds:.1f} s, {result.evaluations} evaluations)")
    return {"weights": total, "removed": count, "test_mse": base,
            "magnitude_test_mse": by_magnitude, "annealing_test_mse": searched, "result": result}


if __name__ == "__main__":
    main()
