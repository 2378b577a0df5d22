"""One compression curve for every method: LeNet-300-100 with L2 on MNIST (seed 003).

Trains LeNet-300-100 (784-300-100-10, L2 on the kernels) once, then for each
kept fraction from 1.0 down to 0.02 measures the test accuracy of:

- `magnitude-layer`, `magnitude-global`: one-shot magnitude pruning;
- `lobs`: Layer-wise OBS (`criterion="obs"`, seed 003's refresh of 2,000);
- `lobs-retrain`: L-OBS applied down the fractions in turn, with one epoch
  of retraining (masks fixed) after each (seed 003 retrained every 2,000
  weights; here every step of the curve);
- `n2ps`: whole hidden units by significance (the kept fraction of units);
- `fsa`: annealing during training, one training per kept fraction;
- `sa`, `ga`: the post-training searches from the trained masks (one point
  each: they choose their own sparsity within a loss cap).

Calibration data (L-OBS, N2PS, the searches) is the validation split, the
last 5,000 training images; training uses the first 55,000. The training
(30 epochs, L2 1e-4, Dropout 0.1 after each hidden layer, Adam from 3e-3
cosine-decayed to 0, no regrowth) was chosen with `--tune` on that
validation split, for FSA at 5% of the weights, in three grids
(compression_curve_tuning.md: epochs, L2, decay; _regrowth_tuning.md:
regrowth, 60 epochs; _dropout_tuning.md: Dropout, learning rate); the test
set is not read there. Writes
benchmarks/results/compression_curve.json, .md (table, wall time per
method) and .png (accuracy against kept fraction, every method):

    python benchmarks/compression_curve.py --data ../shared/datasets/mnist.npz --tune
    python benchmarks/compression_curve.py --data ../shared/datasets/mnist.npz --tune \
        --tune-epochs 30 --tune-l2 1e-4 --tune-decay cosine --tune-dropout 0 0.1 0.2 \
        --tune-learning-rate 1e-3 3e-3 --name compression_curve_dropout
    python benchmarks/compression_curve.py --data ../shared/datasets/mnist.npz
    python benchmarks/compression_curve.py --data ../shared/datasets/mnist.npz --train 3000 \
        --epochs 1 --fractions 1.0 0.5 0.1 --name smoke
"""

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
FRACTIONS = (1.0, 0.8, 0.6, 0.4, 0.3, 0.2, 0.1, 0.05, 0.02)
METHODS = ("magnitude-layer", "magnitude-global", "lobs", "lobs-retrain", "n2ps", "fsa", "sa", "ga")
VALIDATION = 5000
REGROWTH = ("none", "set", "rigl")


def lenet_300_100(l2, dropout=0.0):
    """784-300-100-10 with L2 on the kernels; `dropout` after each hidden layer."""
    import keras

    regularizer = keras.regularizers.L2(l2)
    drop = [keras.layers.Dropout(dropout)] if dropout else []
    return keras.Sequential([
        keras.Input((28, 28)), keras.layers.Flatten(),
        keras.layers.Dense(300, activation="relu", kernel_regularizer=regularizer), *drop,
        keras.layers.Dense(100, activation="relu", kernel_regularizer=regularizer), *drop,
        keras.layers.Dense(10, activation="softmax", kernel_regularizer=regularizer),
    ], name="lenet_300_100")


def compile_model(model, decay_steps=None, learning_rate=1e-3):
    """Adam; with `decay_steps`, its rate cosine-decayed to 0 over that many steps."""
    import keras

    rate = learning_rate
    if decay_steps:
        rate = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps)
    model.compile(optimizer=keras.optimizers.Adam(rate), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def fsa_callback(kept, regrowth, x_train, y_train):
    """The annealing of the curve: FSA to `1 - kept`, with `regrowth` after it.

    `regrowth` is `"none"`, `"set"` (random regrowth) or `"rigl"` (regrowth by
    gradient magnitude on batches of the training data).
    """
    import keras_anneal

    grown = {"none": None, "set": keras_anneal.Regrowth(fraction=0.3),
             "rigl": keras_anneal.Regrowth(fraction=0.3, grow="gradient")}[regrowth]
    return keras_anneal.AnnealedPruning(
        keras_anneal.schedules.FSA(1.0 - kept, end_fraction=0.5), frequency=10,
        keep_units_connected=False, regrowth=grown,
        regrowth_data=(x_train, y_train) if regrowth == "rigl" else None)


def tune(args, x_train, y_train, x_val, y_val):
    """Chooses the training (epochs, L2, learning-rate decay, regrowth) on validation.

    FSA at each `--tune-kept` fraction, for every setting of the grid; the
    setting with the best mean validation accuracy wins. The test set is not
    read.
    """
    import itertools

    import keras
    from _common import environment
    from _common import write_results

    import keras_anneal

    rows = []
    grid = itertools.product(args.tune_epochs, args.tune_l2, args.tune_decay, args.tune_regrowth,
                             args.tune_dropout, args.tune_learning_rate)
    for epochs, l2, decay, regrowth, dropout, rate in grid:
        for kept in args.tune_kept:
            keras.utils.set_random_seed(args.seed)
            steps = epochs * -(-len(x_train) // 128) if decay == "cosine" else None
            model = compile_model(keras_anneal.prune_model(lenet_300_100(l2, dropout)), steps, rate)
            start = time.perf_counter()
            model.fit(x_train, y_train, batch_size=128, epochs=epochs, verbose=0,
                      callbacks=[fsa_callback(kept, regrowth, x_train, y_train)])
            accuracy = float(model.evaluate(x_val, y_val, batch_size=1024, verbose=0)[1])
            rows.append({"epochs": epochs, "l2": l2, "decay": decay, "regrowth": regrowth,
                         "dropout": dropout, "learning_rate": rate,
                         "kept": kept, "validation_accuracy": accuracy,
                         "seconds": time.perf_counter() - start})
            print(rows[-1], flush=True)
            write_results(f"{args.name}_tuning", {"settings": vars(args), **environment(),
                                                 "rows": rows}, directory=args.output_dir)
    by_setting = {}
    for row in rows:
        key = (row["epochs"], row["l2"], row["decay"], row["regrowth"], row["dropout"],
               row["learning_rate"])
        by_setting.setdefault(key, []).append(row["validation_accuracy"])
    lines = ["FSA on LeNet-300-100, validation accuracy (%) (last 5,000 training images) by "
             "training setting:", "",
             "| epochs | L2 | learning rate | decay | regrowth | Dropout | "
             + " | ".join(f"kept {k:g}" for k in args.tune_kept) + " | mean |",
             "|---:|---:|---:|---|---|---:|" + "---:|" * (len(args.tune_kept) + 1)]
    for (epochs, l2, decay, regrowth, dropout, rate), values in by_setting.items():
        lines.append(f"| {epochs} | {l2:g} | {rate:g} | {decay} | {regrowth} | {dropout:g} | "
                     + " | ".join(f"{100 * v:.2f}" for v in values)
                     + f" | {100 * sum(values) / len(values):.2f} |")
    best = max(by_setting, key=lambda k: sum(by_setting[k]) / len(by_setting[k]))
    lines += ["", f"Chosen: {best[0]} epochs, L2 {best[1]:g}, learning rate {best[5]:g} "
              f"({best[2]}), regrowth {best[3]}, Dropout {best[4]:g}."]
    with open(os.path.join(args.output_dir, f"{args.name}_tuning.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="local mnist.npz; downloads MNIST if omitted")
    parser.add_argument("--train", type=int, default=55000)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--l2", type=float, default=1e-4)
    parser.add_argument("--fractions", type=float, nargs="+", default=list(FRACTIONS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--decay", choices=["none", "cosine"], default="cosine",
                        help="learning-rate decay of every training")
    parser.add_argument("--dropout", type=float, default=0.1,
                        help="Dropout rate after each hidden layer")
    parser.add_argument("--learning-rate", type=float, default=3e-3, help="Adam's (initial) rate")
    parser.add_argument("--regrowth", choices=REGROWTH, default="none",
                        help="drop-and-regrow after FSA reaches its target")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tune", action="store_true",
                        help="choose epochs, L2, decay and regrowth for FSA on the validation split")
    parser.add_argument("--tune-epochs", type=int, nargs="+", default=[10, 30])
    parser.add_argument("--tune-l2", type=float, nargs="+", default=[1e-4, 1e-5, 0.0])
    parser.add_argument("--tune-decay", nargs="+", default=["none", "cosine"],
                        choices=["none", "cosine"])
    parser.add_argument("--tune-regrowth", nargs="+", default=["none"], choices=REGROWTH)
    parser.add_argument("--tune-dropout", type=float, nargs="+", default=[0.0])
    parser.add_argument("--tune-learning-rate", type=float, nargs="+", default=[1e-3])
    parser.add_argument("--tune-kept", type=float, nargs="+", default=[0.05])
    parser.add_argument("--name", default="compression_curve")
    parser.add_argument("--output-dir", default=os.path.join(HERE, "results"))
    args = parser.parse_args(argv)

    import keras
    from _common import environment
    from _common import write_results

    import keras_anneal

    (x, y), (x_test, y_test) = keras_anneal.load_mnist(args.data)
    x, x_test = (x / 255.0).astype("float32"), (x_test / 255.0).astype("float32")
    x_val, y_val = x[-VALIDATION:], y[-VALIDATION:]
    x_train, y_train = x[: min(args.train, len(x) - VALIDATION)], y[: min(args.train, len(x) - VALIDATION)]
    fractions = sorted(args.fractions, reverse=True)
    if args.tune:
        return tune(args, x_train, y_train, x_val, y_val)
    steps_per_epoch = -(-len(x_train) // 128)

    def compiled(model, epochs=args.epochs):
        return compile_model(model, epochs * steps_per_epoch if args.decay == "cosine" else None,
                             args.learning_rate)

    def fit(model, epochs, callbacks=()):
        model.fit(x_train, y_train, batch_size=128, epochs=epochs, verbose=0,
                  callbacks=list(callbacks))

    def test_accuracy(model):
        return float(model.evaluate(x_test, y_test, batch_size=1024, verbose=0)[1])

    keras.utils.set_random_seed(args.seed)
    start = time.perf_counter()
    dense = compiled(lenet_300_100(args.l2, args.dropout))
    fit(dense, args.epochs)
    dense_seconds = time.perf_counter() - start

    def trained_copy():  # prune_model copies the trained weights.
        return compile_model(keras_anneal.prune_model(dense))

    results = {"settings": vars(args) | {"data": os.path.basename(args.data or "download")},
               **environment(), "dense_test_accuracy": test_accuracy(dense),
               "dense_seconds": dense_seconds, "methods": {}}
    path = None
    for method in args.methods:
        start = time.perf_counter()
        points = []
        if method in ("magnitude-layer", "magnitude-global", "lobs", "n2ps"):
            for fraction in fractions:
                model = trained_copy()
                if fraction < 1.0:
                    criterion = {"lobs": "obs", "n2ps": "n2ps"}.get(method, "magnitude")
                    allocation = "global" if method == "magnitude-global" else "uniform"
                    keras_anneal.prune(model, criterion, 1.0 - fraction, allocation=allocation,
                                       data=x_val if criterion != "magnitude" else None,
                                       keep_units_connected=False)
                points.append(_point(model, fraction, test_accuracy))
        elif method == "lobs-retrain":
            model = trained_copy()
            for fraction in fractions:
                if fraction < 1.0:
                    keras_anneal.prune(model, "obs", 1.0 - fraction, data=x_val,
                                       keep_units_connected=False)
                    fit(model, 1)  # Masks fixed: retraining moves the kept weights.
                points.append(_point(model, fraction, test_accuracy))
        elif method == "fsa":
            for fraction in fractions:
                keras.utils.set_random_seed(args.seed)
                model = compiled(keras_anneal.prune_model(lenet_300_100(args.l2, args.dropout)))
                if fraction < 1.0:
                    fit(model, args.epochs,
                        [fsa_callback(fraction, args.regrowth, x_train, y_train)])
                else:
                    fit(model, args.epochs)
                points.append(_point(model, fraction, test_accuracy))
        else:  # sa, ga: one search each from the trained masks.
            model = trained_copy()
            search = (keras_anneal.search.simulated_annealing if method == "sa"
                      else keras_anneal.search.genetic_algorithm)
            search(model, x_val, y_val, seed=args.seed, verbose=0)
            reached = keras_anneal.sparsity_report(model)
            points.append(_point(model, 1.0 - reached.sparsity, test_accuracy))
        seconds = time.perf_counter() - start
        results["methods"][method] = {"points": points, "seconds": seconds}
        path = write_results(args.name, results, directory=args.output_dir)
        print(f"{method:>16}: {len(points)} points, {seconds:.0f} s", flush=True)
    report(path or os.path.join(args.output_dir, f"{args.name}.json"))


def _point(model, fraction, test_accuracy):
    import keras_anneal

    report = keras_anneal.sparsity_report(model)
    return {"target_kept": fraction, "kept": 1.0 - report.sparsity,
            "test_accuracy": test_accuracy(model)}


def report(path):
    with open(path) as f:
        results = json.load(f)
    methods = results["methods"]
    fractions = sorted({p["target_kept"] for m in methods.values() for p in m["points"]
                        if len(m["points"]) > 1}, reverse=True)
    lines = [f"LeNet-300-100 + L2, dense test accuracy {100 * results['dense_test_accuracy']:.2f}% "
             f"(trained in {results['dense_seconds']:.0f} s). Test accuracy (%) by kept fraction:",
             "", "| method | " + " | ".join([f"{f:g}" for f in fractions] or ["result"])
             + " | wall time (s) |",
             "|---|" + "---:|" * (max(len(fractions), 1) + 1)]
    for name, method in methods.items():
        by_fraction = {p["target_kept"]: p for p in method["points"]}
        if len(method["points"]) == 1:
            point = method["points"][0]
            cells = ([f"{100 * point['test_accuracy']:.2f} at kept {point['kept']:.3f}"]
                     + [""] * (len(fractions) - 1))
        else:
            cells = [f"{100 * by_fraction[f]['test_accuracy']:.2f}" if f in by_fraction else ""
                     for f in fractions]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {method['seconds']:.0f} |")
    stem = os.path.splitext(path)[0]
    with open(stem + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, method in methods.items():
        points = sorted((p["kept"], 100 * p["test_accuracy"]) for p in method["points"])
        ax.plot(*zip(*points), marker="o" if len(points) > 1 else "*", markersize=6 if len(points) > 1 else 12,
                label=name, linestyle="-" if len(points) > 1 else "none")
    ax.set_xscale("log")
    ax.set_xlabel("kept fraction of the weights")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("LeNet-300-100 + L2 on MNIST")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(stem + ".png", dpi=120)


if __name__ == "__main__":
    main()
