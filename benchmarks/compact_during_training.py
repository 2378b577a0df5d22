"""Does a pruned training end sooner? Compaction in the middle of `fit` (issue 10).

mnist_cnn, trained as Keras' example trains it (Adadelta at 1.0, batch 128),
three ways, side by side in one run:

- `dropout`: the published network, Dropout and all, `--epochs` epochs;
- `anneal-masked`: no Dropout (with `--keep-dropout`, the published
  network's Dropout stays); `AnnealedPruning(granularity="unit")` removes
  `--sparsity` of every layer's units (filters and Dense units; the output
  layer keeps its own) on an FSA plan over the first `--anneal-epochs`
  epochs, then trains on with the masks fixed: the cost of a masked model;
- `anneal-compacted`: the same first epochs (the same model: it is forked
  there), then `keras_anneal.compact(model, carry_optimizer=True)` and the
  rest of the epochs in the smaller model, Adadelta's accumulators carried.

It records wall time per epoch, the whole training's wall time and
accuracy on the validation split (the last 5,000 training images) and the
test set. Nothing is chosen here: sparsity and epochs are the arguments.

    python benchmarks/compact_during_training.py --data ../shared/datasets/mnist.npz
    python benchmarks/compact_during_training.py --data ../shared/datasets/mnist.npz \
        --train 20000 --epochs 6 --anneal-epochs 3
    python benchmarks/compact_during_training.py --data ../shared/datasets/mnist.npz \
        --keep-dropout --sparsity 0.25 --name compact_during_training_dropout
    python benchmarks/compact_during_training.py --train 2000 --epochs 2 --anneal-epochs 1 --name smoke

Writes benchmarks/results/<name>.json and .md.
"""

import argparse
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "examples"))
VALIDATION = 5000


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="local mnist.npz; downloads MNIST if omitted")
    parser.add_argument("--train", type=int, default=55000, help="training images (of the first 55,000)")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--anneal-epochs", type=int, default=6,
                        help="epochs over which the units are removed")
    parser.add_argument("--sparsity", type=float, default=0.5, help="fraction of units removed")
    parser.add_argument("--keep-dropout", action="store_true",
                        help="the annealed runs keep the published network's Dropout")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default="compact_during_training")
    parser.add_argument("--output-dir", default=os.path.join(HERE, "results"))
    args = parser.parse_args(argv)
    if not 0 < args.anneal_epochs < args.epochs:
        parser.error("--anneal-epochs must be between 0 and --epochs (exclusive)")

    import keras
    import mnist_cnn
    from _common import EpochTimer
    from _common import environment
    from _common import write_results

    import keras_anneal

    (x, y), (x_test, y_test) = mnist_cnn.load_data(args.data)
    x_val, y_val = x[-VALIDATION:], y[-VALIDATION:]
    x_train, y_train = x[: min(args.train, len(x) - VALIDATION)], y[: min(args.train, len(x) - VALIDATION)]

    def fit(model, epochs, initial_epoch=0, callbacks=()):
        timer = EpochTimer()
        start = time.perf_counter()
        model.fit(x_train, y_train, batch_size=mnist_cnn.BATCH_SIZE, epochs=epochs,
                  initial_epoch=initial_epoch, verbose=0, callbacks=[*callbacks, timer])
        return timer.times, time.perf_counter() - start

    def scores(model, seconds, total):
        report = keras_anneal.sparsity_report(model) if any(
            isinstance(layer, keras_anneal.Masked) for layer in model.layers) else None
        return {
            "epoch_seconds": seconds, "seconds": total,
            "validation_accuracy": float(model.evaluate(x_val, y_val, batch_size=1024, verbose=0)[1]),
            "test_accuracy": float(model.evaluate(x_test, y_test, batch_size=1024, verbose=0)[1]),
            "parameters": int(model.count_params()) - (report.total if report else 0),
            "sparsity": report.sparsity if report else 0.0,
        }

    runs = {}
    keras.utils.set_random_seed(args.seed)
    dropout = mnist_cnn.compile_model(mnist_cnn.build_model(dropout=True))
    runs["dropout"] = scores(dropout, *fit(dropout, args.epochs))
    print("dropout", runs["dropout"], flush=True)

    keras.utils.set_random_seed(args.seed)
    model = mnist_cnn.compile_model(keras_anneal.prune_model(
        mnist_cnn.build_model(dropout=args.keep_dropout)))
    pruning = keras_anneal.AnnealedPruning(
        keras_anneal.schedules.FSA(args.sparsity, end_fraction=1.0), frequency=10,
        granularity="unit")
    first_seconds, first_total = fit(model, args.anneal_epochs, callbacks=[pruning])
    compacted = keras_anneal.compact(model, carry_optimizer=True)  # The fork.
    for name, rest in (("anneal-compacted", compacted), ("anneal-masked", model)):
        seconds, total = fit(rest, args.epochs, initial_epoch=args.anneal_epochs)
        runs[name] = scores(rest, first_seconds + seconds, first_total + total)
        print(name, runs[name], flush=True)

    path = write_results(args.name, {
        "settings": vars(args) | {"data": os.path.basename(args.data or "download")},
        **environment(), "runs": runs}, directory=args.output_dir)
    report(path)


def report(path):
    with open(path) as f:
        results = json.load(f)
    settings, runs = results["settings"], results["runs"]
    base = runs["dropout"]
    k = settings["anneal_epochs"]
    lines = [
        f"mnist_cnn, {settings['train']} training images, {settings['epochs']} epochs; units "
        f"removed: {100 * settings['sparsity']:.0f}% over the first {k} epochs "
        f"(backend {results.get('backend', '?')}); the annealed runs "
        + ("keep the published Dropout" if settings.get("keep_dropout") else "have no Dropout")
        + ". Parameters exclude masks.",
        "",
        "| run | parameters at the end | median epoch, first "
        f"{k} (s) | median epoch, last {settings['epochs'] - k} (s) | whole training (s) | "
        "× Dropout's time | validation acc (%) | test acc (%) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, run in runs.items():
        first, last = run["epoch_seconds"][:k], run["epoch_seconds"][k:]
        lines.append(
            f"| {name} | {run['parameters']:,} | {statistics.median(first):.1f} | "
            f"{statistics.median(last):.1f} | {run['seconds']:.0f} | "
            f"{run['seconds'] / base['seconds']:.2f} | {100 * run['validation_accuracy']:.2f} | "
            f"{100 * run['test_accuracy']:.2f} |")
    with open(os.path.splitext(path)[0] + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
