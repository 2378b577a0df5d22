"""End to end on tiny data: the LeNet-5 and time-series search examples, and the search benchmark."""

import json
import os
import sys

import pytest

import keras_anneal

ROOT = os.path.join(os.path.dirname(__file__), os.pardir)
sys.path.insert(0, os.path.join(ROOT, "examples"))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import lenet_search  # noqa: E402
import search as search_benchmark  # noqa: E402
import timeseries_pruning  # noqa: E402


def test_lenet_has_seed_002s_shape():
    model = lenet_search.build_lenet()
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["Conv2D", "AveragePooling2D", "Conv2D", "AveragePooling2D", "Flatten",
                     "Dense", "Dense", "Dense"]
    assert [layer.kernel.shape for layer in model.layers if hasattr(layer, "kernel")] == [
        (5, 5, 1, 6), (5, 5, 6, 16), (256, 120), (120, 84), (84, 10)]


def test_lenet_example_runs_end_to_end(mnist_file):
    model, results = lenet_search.main(["--data", mnist_file, "--subset", "1200", "--epochs", "1",
                                        "--iterations", "5", "--generations", "2"])
    assert set(results) == {"annealing", "genetic"}
    # The genetic search ran last: its masks are the model's.
    assert keras_anneal.sparsity_report(model).sparsity == pytest.approx(results["genetic"].sparsity)


def test_timeseries_example_removes_exactly_its_budget():
    outcome = timeseries_pruning.main(["--length", "1200", "--epochs", "2", "--iterations", "20",
                                       "--budget", "0.2"])
    assert outcome["removed"] == int(0.2 * outcome["weights"])
    assert outcome["result"].final.sparsity == pytest.approx(outcome["removed"] / outcome["weights"])


def test_mackey_glass_is_the_delay_17_series():
    series = timeseries_pruning.mackey_glass(length=2000)
    assert series.shape == (2000,) and 0.2 < series.min() and series.max() < 1.5
    x, y = timeseries_pruning.windows(series)
    assert x.shape == (1984, 16) and (x[1:, -1] == y[:-1, 0]).all()


def test_benchmark_writes_a_consistent_results_file(mnist_file, tmp_path):
    path = search_benchmark.main(["--data", mnist_file, "--subset", "1200", "--epochs", "1",
                                  "--scale", "0.02", "--strategies", "sa", "ga", "--name", "smoke",
                                  "--output-dir", str(tmp_path), "--no-figure"])
    with open(path) as f:
        results = json.load(f)
    assert [run["strategy"] for run in results["runs"]] == ["sa", "ga"]
    for run in results["runs"]:
        pruned = sum(layer["pruned"] for layer in run["layers"].values())
        total = sum(layer["total"] for layer in run["layers"].values())
        assert run["sparsity"] == pytest.approx(pruned / total)
        assert {"test", "validation"} <= set(run["after"]) and run["history"]
    assert os.path.exists(str(tmp_path / "smoke.md")) and not os.path.exists(str(tmp_path / "smoke.png"))
