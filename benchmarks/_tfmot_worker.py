"""One tfmot run of mnist_cnn, for benchmarks/dropout_vs_anneal.py.

tfmot only works with legacy Keras 2, so this runs in its own process with
TF_USE_LEGACY_KERAS=1 and prints one line `RESULT {json}`. Same model (no
Dropout), data, optimizer, batch, epochs and dense layers pruned as the
annealing variants; tfmot's `PolynomialDecay` from 0 to the final sparsity,
ending half-way through training, updating every `--frequency` steps.
"""

import argparse
import json
import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_model_optimization as tfmot  # noqa: E402
import tf_keras as keras  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(HERE, os.pardir, "examples")]
from _common import EpochTimes  # noqa: E402
from dropout_vs_anneal import epoch_record  # noqa: E402
from mnist_cnn import BATCH_SIZE  # noqa: E402
from mnist_cnn import load_data  # noqa: E402


class Timer(EpochTimes, keras.callbacks.Callback):
    pass


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--final-sparsity", type=float, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--frequency", type=int, default=50)
    parser.add_argument("--data")
    parser.add_argument("--subset", type=int)
    args = parser.parse_args()

    keras.utils.set_random_seed(args.seed)
    (x_train, y_train), (x_test, y_test) = load_data(args.data, args.subset)
    steps = int(np.ceil(len(x_train) / BATCH_SIZE)) * args.epochs
    schedule = tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=0.0, final_sparsity=args.final_sparsity,
        begin_step=0, end_step=max(1, steps // 2), frequency=args.frequency,
    )
    prune = lambda layer: tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=schedule)  # noqa: E731
    L = keras.layers
    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        L.Conv2D(32, 3, activation="relu"),
        L.Conv2D(64, 3, activation="relu"),
        L.MaxPooling2D(2),
        L.Flatten(),
        prune(L.Dense(128, activation="relu")),
        prune(L.Dense(10, activation="softmax")),
    ])
    model.compile(optimizer=keras.optimizers.Adadelta(learning_rate=1.0),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])

    class Sparsity(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["sparsity"] = dense_sparsity(self.model)["sparsity"]

    timer = Timer()
    history = model.fit(x_train, y_train, batch_size=BATCH_SIZE, epochs=args.epochs,
                        validation_data=(x_test, y_test), verbose=0,
                        callbacks=[tfmot.sparsity.keras.UpdatePruningStep(), Sparsity(), timer])
    record = epoch_record(history.history, timer.times, dense_sparsity(model))
    record["versions"] = {"tensorflow": tf.__version__, "tf_keras": keras.__version__,
                          "tfmot": tfmot.__version__}
    print("RESULT " + json.dumps(record))


def dense_sparsity(model):
    """Pruned (exactly zero) kernel entries of the pruned Dense layers."""
    layers = {}
    for layer in model.layers:
        if hasattr(layer, "pruning_vars"):
            mask = layer.pruning_vars[0][1].numpy()
            layers[layer.name] = {"pruned": int(mask.size - np.count_nonzero(mask)), "total": int(mask.size)}
    for row in layers.values():
        row["sparsity"] = row["pruned"] / row["total"]
    pruned, total = sum(r["pruned"] for r in layers.values()), sum(r["total"] for r in layers.values())
    return {"layers": layers, "pruned": pruned, "total": total, "sparsity": pruned / total}


if __name__ == "__main__":
    main()
