"""End to end on a tiny MNIST subset: the mnist_cnn example and its benchmark."""

import json
import os
import sys

import keras
import numpy as np
import pytest

import keras_anneal

ROOT = os.path.join(os.path.dirname(__file__), os.pardir)
sys.path.insert(0, os.path.join(ROOT, "examples"))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import dropout_vs_anneal  # noqa: E402
import mnist_cnn  # noqa: E402
import report  # noqa: E402


def test_annealing_variant_differs_from_dropout_by_the_dropout_layers():
    dropout_model, no_callbacks = mnist_cnn.prepare("dropout")
    annealed, callbacks = mnist_cnn.prepare("anneal", "fsa", 0.9, mu=10)
    assert no_callbacks == [] and isinstance(callbacks[0], keras_anneal.AnnealedPruning)
    kinds = [type(layer).__name__ for layer in dropout_model.layers]
    assert kinds == ["Conv2D", "Conv2D", "MaxPooling2D", "Dropout", "Flatten", "Dense", "Dropout", "Dense"]
    assert [type(layer).__name__ for layer in annealed.layers] == [
        "Conv2D", "Conv2D", "MaxPooling2D", "Flatten", "Masked", "Masked"]
    assert dropout_model.count_params() == 1_199_882  # The classic model's size.


def test_drop_connect_reaches_the_two_pruned_dense_layers():
    model, _ = mnist_cnn.prepare("anneal", "recommended", 0.9, drop_connect=0.3)
    rates = [layer.drop_connect for layer in model.layers if isinstance(layer, keras_anneal.Masked)]
    assert rates == [0.3, 0.3]
    variant = dropout_vs_anneal.variants()["recommended-dropconnect0.3-s0.9"]
    assert variant["drop_connect"] == 0.3 and variant["schedule"] == "recommended"
    _, callbacks = mnist_cnn.prepare(**dropout_vs_anneal.variants()["recommended-dropconnect0.5-uniform-s0.9"])
    assert type(callbacks[0].allocation).__name__ == "Uniform"


def test_conv_drop_connect_wraps_the_second_convolution_and_keeps_it_dense():
    model, callbacks = mnist_cnn.prepare(
        **dropout_vs_anneal.variants()["recommended-dropconnect0.5-conv0.25-s0.9"])
    masked = [layer for layer in model.layers if isinstance(layer, keras_anneal.Masked)]
    assert [type(layer.layer).__name__ for layer in masked] == ["Conv2D", "Dense", "Dense"]
    assert [layer.drop_connect for layer in masked] == [0.25, 0.5, 0.5]
    allocation = callbacks[0].allocation
    assert allocation.sparsities == {masked[0].name: None} and allocation.rest == keras_anneal.allocation.LAMP()
    # The overall target counts the dense convolution: the Dense layers still lose 90%.
    dense = 9216 * 128 + 128 * 10
    overall = callbacks[0].schedule.final_sparsity
    assert overall * (dense + 3 * 3 * 32 * 64) == pytest.approx(0.9 * dense)


def test_example_runs_end_to_end(mnist_file):
    model = mnist_cnn.main(["--regularizer", "anneal", "--schedule", "fsa", "--epochs", "1",
                            "--subset", "1024", "--data", mnist_file, "--final-sparsity", "0.9",
                            "--mu", "10", "--frequency", "2"])
    # 8 steps of 128; the plan ends half-way, at step 4.
    report = keras_anneal.sparsity_report(model)
    assert report.total == 9216 * 128 + 128 * 10
    assert report.pruned == int(0.9 * report.total)  # Exact overall, LAMP across layers:
    big, small = report.layers  # the 1.2 M-weight kernel gives more than the 1,280 one.
    assert big.sparsity > 0.9 > small.sparsity
    noisy = [(layer.drop_connect, layer.drop_connect_noise)
             for layer in model.layers if isinstance(layer, keras_anneal.Masked)]
    assert noisy == [(0.5, "gaussian")] * 2  # The example's default: DropConnect 0.5, per example.


def test_benchmark_writes_a_consistent_results_file(mnist_file, tmp_path):
    results = dropout_vs_anneal.main([
        "--variants", "dropout", "constant-rate", "fsa-mu10-s0.9", "--epochs", "1", "--frequency", "2",
        "--subset", "512", "--data", mnist_file, "--name", "smoke", "--output-dir", str(tmp_path),
    ])
    with open(tmp_path / "smoke.json") as f:
        written = json.load(f)
    assert written["runs"] == json.loads(json.dumps(results["runs"]))
    assert {"command", "date", "versions", "machine", "backend", "settings"} <= written.keys()
    assert written["backend"] == keras.backend.backend()
    assert [run["variant"] for run in written["runs"]] == ["dropout", "constant-rate", "fsa-mu10-s0.9"]
    sparsities = {run["variant"]: run["final_sparsity"]["sparsity"] for run in written["runs"]}
    assert sparsities["dropout"] == 0.0  # No masked layer: the trained weights hold no exact 0.
    assert sparsities["constant-rate"] == 0.0  # 4 steps: its first removal is at step 50.
    assert sparsities["fsa-mu10-s0.9"] == pytest.approx(0.9, abs=1e-3)
    for run in written["runs"]:
        (epoch,) = run["epochs"]
        assert set(epoch) == {"epoch", "train_accuracy", "train_loss", "test_accuracy",
                              "test_loss", "seconds", "sparsity"}
        assert 0 <= epoch["test_accuracy"] <= 1 and epoch["seconds"] > 0
    rows = report.main([str(tmp_path / "smoke.json"), "--no-figure"])
    assert [row["variant"] for row in rows] == ["dropout", "constant-rate", "fsa-mu10-s0.9"]
    assert (tmp_path / "smoke.md").read_text().count("\n") == 5


def test_redo_replaces_a_record_and_keeps_the_others(mnist_file, tmp_path):
    common = ["--epochs", "1", "--subset", "256", "--data", mnist_file, "--name", "redo",
              "--output-dir", str(tmp_path)]
    first = dropout_vs_anneal.main(["--variants", "none", "dropout", *common])
    del first["runs"][1]["final_train_accuracy"]  # As in a file written before it was recorded.
    with open(tmp_path / "redo.json", "w") as f:
        json.dump(first, f)
    with pytest.raises(SystemExit):  # --redo rewrites an existing file only.
        dropout_vs_anneal.parse_args(["--variants", "dropout", "--redo"])
    again = dropout_vs_anneal.main(["--variants", "dropout", "--resume", "--redo", *common])
    assert [run["variant"] for run in again["runs"]] == ["none", "dropout"]
    assert again["runs"][0] == first["runs"][0]  # Not run again.
    assert "final_train_accuracy" in again["runs"][1]
    assert len(again["commands"]) == 2


def test_reported_sparsity_matches_the_masks(mnist_file):
    config = dropout_vs_anneal.variants()["fsa-mu10-s0.9"]
    # 1024 images at batch 128: 8 steps; end_fraction 0.5 ends the plan at step 4.
    record, model = dropout_vs_anneal.run_keras_variant(
        config, seed=0, epochs=1, data=mnist_file, subset=1024, frequency=2
    )
    masks = keras_anneal.sparsity_report(model)
    assert masks.sparsity == pytest.approx(0.9, abs=1e-3)
    assert record["final_sparsity"] == masks.to_dict()
    assert record["allocation"] == "LAMP"  # The callback's default, recorded.
    assert record["epochs"][-1]["sparsity"] == pytest.approx(masks.sparsity)


def test_report_pairs_train_and_test_accuracy_of_the_runs_that_record_both():
    def run(seed, test, train):
        record = {"variant": "none", "seed": seed, "final_test_accuracy": test,
                  "epochs": [{"seconds": 1.0}], "final_sparsity": {"sparsity": 0.0}}
        return record if train is None else {**record, "final_train_accuracy": train}

    # The first run predates the train column: it counts for test accuracy only.
    (row,) = report.summarize({"runs": [run(0, 0.990, None), run(1, 0.980, 0.999), run(2, 0.970, 0.995)]})
    assert row["seeds"] == 3 and row["train_seeds"] == 2
    assert row["test_accuracy_mean"] == pytest.approx(0.980)
    assert row["train_accuracy_mean"] == pytest.approx(0.997)
    assert row["gap"] == pytest.approx(((0.999 - 0.980) + (0.995 - 0.970)) / 2)
    assert "| 99.70 (2 of 3 seeds) | 2.20 (2 of 3 seeds) |" in report.markdown([row])


def test_report_falls_back_on_the_logged_train_accuracy_and_marks_it():
    runs = [{"variant": "old", "seed": seed, "final_test_accuracy": test, "final_sparsity": {"sparsity": 0.9},
             "epochs": [{"seconds": 1.0, "train_accuracy": 0.5}, {"seconds": 1.0, "train_accuracy": train}]}
            for seed, test, train in ((0, 0.98, 0.999), (1, 0.97, 0.997))]
    (row,) = report.summarize({"runs": runs})
    assert row["train_logged"] and row["train_accuracy_mean"] == pytest.approx(0.998)
    assert row["gap"] == pytest.approx(((0.999 - 0.98) + (0.997 - 0.97)) / 2)
    table = report.markdown([row])
    assert "| 99.80† | 2.30† |" in table and "† Runs made before" in table
