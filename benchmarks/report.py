"""Turns a dropout_vs_anneal results file into a markdown table and a figure.

    python benchmarks/report.py benchmarks/results/dropout_vs_anneal.json

Writes <results>.md (mean ± std over seeds) and <results>.png: train and test
accuracy per epoch for each variant (seed 001's Figure 6, redrawn) and final
test accuracy against final sparsity of the pruned dense layers.
"""

import argparse
import json
import os
import statistics


def summarize(results):
    """One row per variant: Dropout, the reference, first; the others in the
    order they first appear."""
    by_variant = {"dropout": []}
    for run in results["runs"]:
        by_variant.setdefault(run["variant"], []).append(run)
    if not by_variant["dropout"]:
        del by_variant["dropout"]
    reference = by_variant.get("dropout")
    reference_time = (
        statistics.median(e["seconds"] for run in reference for e in run["epochs"]) if reference else None
    )
    rows = []
    for variant, runs in by_variant.items():
        accuracies = [run["final_test_accuracy"] for run in runs]
        epoch_time = statistics.median(e["seconds"] for run in runs for e in run["epochs"])
        # Train accuracy evaluated in inference mode after the run; older runs
        # recorded only the running mean of the last epoch, so the train
        # columns average the runs that have it, and the gap pairs each of
        # them with its own test accuracy.
        # Variants none of whose runs has it fall back on the last epoch's
        # logged running mean (training mode), marked in the table.
        scored = [run for run in runs if run.get("final_train_accuracy") is not None]
        logged = not scored
        train_of = ((lambda run: run["epochs"][-1]["train_accuracy"]) if logged
                    else (lambda run: run["final_train_accuracy"]))
        scored = scored or runs
        rows.append({
            "variant": variant,
            "seeds": len(runs),
            "train_seeds": len(scored),
            "train_logged": logged,
            "train_accuracy_mean": statistics.mean(train_of(run) for run in scored),
            "gap": statistics.mean(train_of(run) - run["final_test_accuracy"] for run in scored),
            "test_accuracy_mean": statistics.mean(accuracies),
            "test_accuracy_std": statistics.stdev(accuracies) if len(runs) > 1 else 0.0,
            "sparsity": statistics.mean(run["final_sparsity"]["sparsity"] for run in runs),
            # Per pruned layer, in model order: how the allocation split the count.
            "layer_sparsities": [
                statistics.mean(values) for values in zip(*(
                    [layer["sparsity"] for layer in run["final_sparsity"]["layers"].values()]
                    for run in runs))
            ] if all(run["final_sparsity"].get("layers") for run in runs) else None,
            "median_epoch_seconds": epoch_time,
            "epoch_time_ratio": epoch_time / reference_time if reference_time else None,
        })
    return rows


def markdown(rows, scored_on="test"):
    lines = [
        f"| variant | seeds | {scored_on} accuracy (%) | train accuracy (%) | train − {scored_on} (points) "
        "| dense sparsity | per layer (%) | median epoch (s) | × Dropout |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        ratio = f"{row['epoch_time_ratio']:.3f}" if row["epoch_time_ratio"] else "–"
        spread = f" ± {100 * row['test_accuracy_std']:.2f}" if row["seeds"] > 1 else ""
        partial = (f" ({row['train_seeds']} of {row['seeds']} seeds)"
                   if 0 < row["train_seeds"] < row["seeds"] else "")
        mark = "†" if row.get("train_logged") else ""
        train = f"{100 * row['train_accuracy_mean']:.2f}{mark}{partial}"
        gap = f"{100 * row['gap']:.2f}{mark}{partial}"
        layers = (" / ".join(f"{100 * value:.1f}" for value in row["layer_sparsities"])
                  if row["layer_sparsities"] else "–")
        lines.append(
            f"| {row['variant']} | {row['seeds']} | {100 * row['test_accuracy_mean']:.2f}{spread} "
            f"| {train} | {gap} | {row['sparsity']:.1%} | {layers} "
            f"| {row['median_epoch_seconds']:.1f} | {ratio} |"
        )
    if any(row.get("train_logged") for row in rows):
        lines.append(
            "\n† Runs made before train accuracy was evaluated after training: the last "
            "epoch's logged running mean (training mode, the weights still moving), "
            "a slight underestimate of the final train accuracy.\n")
    return "\n".join(lines) + "\n"


def figure(results, rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (curves, scatter) = plt.subplots(1, 2, figsize=(13, 5))
    for index, row in enumerate(rows):
        runs = [run for run in results["runs"] if run["variant"] == row["variant"]]
        epochs = range(1, min(len(run["epochs"]) for run in runs) + 1)
        for key, style in (("train_accuracy", "--"), ("test_accuracy", "-")):
            mean = [statistics.mean(run["epochs"][e - 1][key] for run in runs) for e in epochs]
            curves.plot(list(epochs), mean, style, color=f"C{index % 10}",
                        label=f"{row['variant']} ({key.split('_')[0]})")
        scatter.scatter(row["sparsity"], 100 * row["test_accuracy_mean"], color=f"C{index % 10}")
        scatter.annotate(row["variant"], (row["sparsity"], 100 * row["test_accuracy_mean"]), fontsize=7)
    curves.set(xlabel="epoch", ylabel="accuracy", title="mnist_cnn: train (dashed) and test accuracy")
    curves.legend(fontsize=6, ncol=2)
    scatter.set(xlabel="final sparsity of the dense layers", ylabel="final test accuracy (%)",
                title="accuracy against sparsity")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results")
    parser.add_argument("--no-figure", action="store_true")
    args = parser.parse_args(argv)
    with open(args.results) as f:
        results = json.load(f)
    rows = summarize(results)
    stem = os.path.splitext(args.results)[0]
    scored_on = "validation" if results["settings"].get("split") == "validation" else "test"
    table = markdown(rows, scored_on)
    with open(stem + ".md", "w") as f:
        f.write(table)
    print(table)
    if not args.no_figure:
        figure(results, rows, stem + ".png")
    return rows


if __name__ == "__main__":
    main()
