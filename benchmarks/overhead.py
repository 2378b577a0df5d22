"""Training-step overhead of masking plus `AnnealedPruning`, per backend.

The model is Keras' mnist_cnn (Conv32 -> Conv64 -> MaxPool -> Flatten ->
Dense128 -> Dense10, no Dropout). One variant has every Dense/Conv layer
wrapped in `Masked` and `AnnealedPruning(frequency=50)` on, with a schedule
that prunes at *every* update (0.5% every 50 steps), so each timed epoch of 50
steps includes one full mask update: the worst case. The other is the same
model, unwrapped. Variants alternate epoch by epoch in one process so machine
noise hits both alike; the figure is the ratio of median step times. A third
variant, masked but without the callback, separates the cost of masking from
the cost of the mask updates.

    python benchmarks/overhead.py                      # all three backends
    python benchmarks/overhead.py --backends tensorflow --rounds 15

Writes benchmarks/results/<name>.json (overhead.json by default).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

import keras  # The parent process runs one worker per backend, each with its KERAS_BACKEND.

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "examples"))
import mnist_cnn  # noqa: E402  The example is the one definition of the model.
from _common import EpochTimer
from _common import environment
from _common import write_results

import keras_anneal

STEPS_PER_EPOCH = 50


def measure(rounds, batch_size, data):
    """Times both variants on this process's backend."""
    keras.utils.set_random_seed(0)
    (x, y), _ = keras_anneal.load_mnist(data)
    n = STEPS_PER_EPOCH * batch_size
    x = (x[:n, ..., None] / 255.0).astype("float32")
    y = y[:n]

    plain = mnist_cnn.build_model(dropout=False)
    masked = keras_anneal.prune_model(plain)
    for model in (plain, masked):
        model.compile(optimizer=keras.optimizers.Adadelta(1.0), loss="sparse_categorical_crossentropy")
    pruning = keras_anneal.AnnealedPruning(keras_anneal.schedules.ConstantRate(rate=0.005, interval=50))
    # "masking_only": the masked model without the callback, to tell the
    # per-step cost of `w * m` from the cost of the mask updates.
    masking_only = keras_anneal.prune_model(plain)
    masking_only.compile(optimizer=keras.optimizers.Adadelta(1.0), loss="sparse_categorical_crossentropy")
    variants = (("plain", plain, []), ("masked", masked, [pruning]), ("masking_only", masking_only, []))
    step_times = {name: [] for name, _, _ in variants}
    for round_ in range(rounds + 1):  # Round 0 compiles and warms up; not counted.
        for name, model, callbacks in variants:
            timer = EpochTimer()
            model.fit(x, y, batch_size=batch_size, epochs=1, shuffle=False, verbose=0,
                      callbacks=callbacks + [timer])
            if round_:
                step_times[name].append(timer.times[0] / STEPS_PER_EPOCH)
    medians = {name: statistics.median(times) for name, times in step_times.items()}
    return {
        "median_step_seconds": medians,
        "ratio": medians["masked"] / medians["plain"],
        "masking_only_ratio": medians["masking_only"] / medians["plain"],
        "step_seconds": step_times,
        "final_sparsity": keras_anneal.sparsity_report(masked).sparsity,
        "mask_updates": rounds + 1,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["tensorflow", "jax", "torch"])
    parser.add_argument("--rounds", type=int, default=10, help="timed epochs per variant")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--data", default=None, help="local mnist.npz; downloads if omitted")
    parser.add_argument("--name", default="overhead", help="results file name")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:  # One backend, in this process; prints JSON.
        result = measure(args.rounds, args.batch_size, args.data)
        print("RESULT " + json.dumps({**environment(), **result}))
        return

    results = {}
    for backend in args.backends:
        command = [sys.executable, os.path.abspath(__file__), "--worker",
                   "--rounds", str(args.rounds), "--batch-size", str(args.batch_size)]
        if args.data:
            command += ["--data", args.data]
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
        output = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
        result = json.loads(output.split("RESULT ", 1)[1])
        results[backend] = result
        medians = result["median_step_seconds"]
        print(f"{backend:>10}: plain {medians['plain'] * 1e3:7.1f} ms/step, "
              f"masked+callback {medians['masked'] * 1e3:7.1f} ms/step, ratio {result['ratio']:.3f} "
              f"(masking only: {result['masking_only_ratio']:.3f})")
    path = write_results(args.name, {
        "steps_per_epoch": STEPS_PER_EPOCH, "batch_size": args.batch_size,
        "rounds": args.rounds, "results": results,
    })
    print(f"Wrote {path}")


if __name__ == "__main__":
    main()
