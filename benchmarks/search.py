"""Post-training mask search on LeNet-5 / MNIST: seed 002's settings against ours.

Trains LeNet-5 once (examples/lenet_search.py), then runs each search from
the trained masks, choosing masks on the validation split (the last 5,000
training images) and reporting the test set:

- `sa-seed`, `ga-seed`: seed 002's hyperparameters (SA: 200 iterations per
  layer, T0 = 1, mutation 0.15; GA: 20 generations, population 12,
  tournament 5, crossover 0.9, mutation 0.15, elite 2), its random
  proposals and its absolute loss cap warming up to 1.0;
- `sa`, `ga`: keras-anneal's defaults (the same rates, proposals among the
  smallest weights, a loss cap 0.04 above the baseline shared by weight
  count, and a mask's search stopped after 50 candidates / 5 generations
  without a better mask).

Writes benchmarks/results/<name>.json (with every search's history), <name>.md
(the table) and <name>.png (cost, sparsity and loss over each search):

    python benchmarks/search.py --data ../shared/datasets/mnist.npz
    python benchmarks/search.py --subset 1200 --epochs 1 --scale 0.05 --name smoke
"""

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, os.pardir, "examples"))

SEED_002 = {
    "sa": dict(iterations=200, initial_temperature=1.0, mutation_rate=0.15),
    "ga": dict(generations=20, population_size=12, tournament_size=5, crossover_rate=0.9,
               mutation_rate=0.15, elite_size=2),
}
# Seed 002's published run (LeNet-5, MNIST test set, hosted notebook).
PUBLISHED = {"baseline_accuracy": 0.9723, "sa-seed": {"test_accuracy": 0.874, "minutes": 12},
             "ga-seed": {"test_accuracy": 0.890, "minutes": 28}}
STRATEGIES = ("sa-seed", "ga-seed", "sa", "ga")


def make_search(name, scale=1.0):
    """The `MaskSearch` of a strategy name; `scale` shrinks iterations and generations."""
    from keras_anneal import search

    kind, _, variant = name.partition("-")
    params = dict(SEED_002[kind])
    for key in ("iterations", "generations"):
        if key in params:
            params[key] = max(1, round(params[key] * scale))
    if variant == "seed":
        params.update(proposal="random", patience=None, loss_cap=search.WarmupLossCap(1.0))
    cls = search.SimulatedAnnealing if kind == "sa" else search.GeneticAlgorithm
    return cls(seed=0, verbose=0, **params)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategies", nargs="+", choices=STRATEGIES, default=list(STRATEGIES))
    parser.add_argument("--data", help="local mnist.npz; downloads MNIST if omitted")
    parser.add_argument("--epochs", type=int, default=10, help="LeNet-5 training epochs")
    parser.add_argument("--subset", type=int, help="first N training images (for quick runs)")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiplies iterations and generations (for quick runs)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", choices=["tensorflow", "jax", "torch"])
    parser.add_argument("--name", default="search", help="results file name")
    parser.add_argument("--output-dir", default=os.path.join(HERE, "results"))
    parser.add_argument("--no-figure", action="store_true", help="skip the PNG (no matplotlib needed)")
    return parser.parse_args(argv)


def evaluate(model, data):
    logs = model.evaluate(*data, verbose=0, return_dict=True)
    return {"loss": logs["loss"], "accuracy": logs["accuracy"]}


def main(argv=None):
    args = parse_args(argv)
    if args.backend:
        os.environ["KERAS_BACKEND"] = args.backend
    import keras
    import lenet_search
    from _common import environment
    from _common import write_results

    import keras_anneal

    keras.utils.set_random_seed(args.seed)
    train, validation, test = lenet_search.load_data(args.data, args.subset)
    model = lenet_search.train_lenet(train, validation, epochs=args.epochs, verbose=0)
    trained = [layer.get_masks() for layer in keras_anneal.masked_layers(model)]
    baseline = {"test": evaluate(model, test), "validation": evaluate(model, validation)}
    print(f"LeNet-5: test accuracy {baseline['test']['accuracy']:.2%}", flush=True)
    runs = []
    for name in args.strategies:
        for layer, masks in zip(keras_anneal.masked_layers(model), trained):
            layer.set_masks(masks)
        mask_search = make_search(name, args.scale)
        result = mask_search.run(model, *validation)
        after = {"test": evaluate(model, test), "validation": evaluate(model, validation)}
        report = keras_anneal.sparsity_report(model)
        runs.append({
            "strategy": name,
            "parameters": {k: repr(v) if callable(v) else v for k, v in vars(mask_search).items()
                           if k not in ("cost", "fine_tune", "verbose")},
            "sparsity": result.sparsity,
            "mean_layer_sparsity": result.mean_layer_sparsity,
            "layers": report.to_dict()["layers"],
            "before": baseline,
            "after": after,
            "seconds": result.seconds,
            "evaluations": result.evaluations,
            "evaluations_per_second": result.evaluations_per_second,
            "history": result.history,
        })
        print(f"{name}: {result.sparsity:.1%} pruned (layer mean {result.mean_layer_sparsity:.1%}), "
              f"test accuracy {after['test']['accuracy']:.2%}, {result.seconds:.0f} s", flush=True)
        path = write_results(args.name, {
            **environment(),
            "settings": {k: v for k, v in vars(args).items() if k != "output_dir"},
            "calibration_samples": len(validation[0]),
            "published": PUBLISHED,
            "runs": runs,
        }, args.output_dir)
    write_report(path, figure=not args.no_figure)
    return path


def summarize(results):
    rows = []
    for run in results["runs"]:
        before, after = run["before"]["test"], run["after"]["test"]
        rows.append({
            "strategy": run["strategy"],
            "sparsity": run["sparsity"],
            "mean_layer_sparsity": run["mean_layer_sparsity"],
            "accuracy_before": before["accuracy"],
            "accuracy_after": after["accuracy"],
            "loss_before": before["loss"],
            "loss_after": after["loss"],
            "seconds": run["seconds"],
            "evaluations_per_second": run["evaluations_per_second"],
        })
    return rows


def write_report(path, figure=True):
    """Writes the markdown table (and, with matplotlib, the figure) beside a results file."""
    import json

    with open(path) as f:
        results = json.load(f)
    rows = summarize(results)
    lines = [
        "| search | pruned (weighted) | pruned (layer mean) | test acc. before → after | "
        "test loss before → after | time | evaluations/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['strategy']} | {row['sparsity']:.1%} | {row['mean_layer_sparsity']:.1%} | "
            f"{row['accuracy_before']:.2%} → {row['accuracy_after']:.2%} | "
            f"{row['loss_before']:.3f} → {row['loss_after']:.3f} | {row['seconds']:.0f} s | "
            f"{row['evaluations_per_second']:.1f} |"
        )
    base = os.path.splitext(path)[0]
    with open(base + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    if not figure:
        return base + ".md", None

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for run in results["runs"]:
        # SA: the state after each accepted candidate; GA: each generation's best.
        rows = [(i, row) for i, row in enumerate(run["history"]) if row.get("accepted", True)]
        steps = [i for i, _ in rows]
        axes[0].plot(steps, [min(row["cost"], 50) for _, row in rows], label=run["strategy"], lw=0.8)
        axes[1].plot(steps, [row["sparsity"] for _, row in rows], label=run["strategy"], lw=0.8)
        axes[2].plot(steps, [row["loss"] for _, row in rows], label=run["strategy"], lw=0.8)
    for ax, title in zip(axes, ["cost (clipped at 50)", "weighted sparsity", "validation loss"]):
        ax.set_title(title)
        ax.set_xlabel("SA: candidate (accepted ones) / GA: generation")
        ax.legend()
    axes[2].set_yscale("log")
    fig.tight_layout()
    fig.savefig(base + ".png", dpi=110)
    plt.close(fig)
    return base + ".md", base + ".png"


if __name__ == "__main__":
    main()
