"""Does compaction make pruned models faster? Dense, masked and compacted, side by side.

For LeNet-300-100 and the mnist_cnn convnet, trains each network with
`AnnealedPruning(granularity="unit")` at several unit sparsities (whole
units and filters removed; the output layer keeps its units), then measures
for the dense model (same training, no pruning), the masked model and
`keras_anneal.compact(model)`: parameters, multiply-accumulates (Dense and
Conv layers), inference latency at batch 1 and batch 128 (median of
`--calls` calls of `predict_on_batch`, and of a compiled forward pass
without its per-call bookkeeping, after warm-up; LiteRT too on TensorFlow)
and test accuracy. The masked and the compacted model of one sparsity are
timed in one loop, their calls taken in turn.
Choices are not made here; the test set only reports.

    python benchmarks/compaction.py --data ../shared/datasets/mnist.npz
    python benchmarks/compaction.py --data ../shared/datasets/mnist.npz --backend jax
    python benchmarks/compaction.py --train 2000 --epochs 1 --calls 5 --name smoke

Writes benchmarks/results/<name>_<backend>.json and .md.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
SPARSITIES = (0.5, 0.75, 0.9)


def build(network):
    import keras
    from keras import layers

    if network == "lenet_300_100":
        return keras.Sequential([
            keras.Input((28, 28, 1)), layers.Flatten(),
            layers.Dense(300, activation="relu"), layers.Dense(100, activation="relu"),
            layers.Dense(10, activation="softmax"),
        ], name=network)
    return keras.Sequential([  # mnist_cnn without Dropout.
        keras.Input((28, 28, 1)),
        layers.Conv2D(32, 3, activation="relu"), layers.Conv2D(64, 3, activation="relu"),
        layers.MaxPooling2D(2), layers.Flatten(),
        layers.Dense(128, activation="relu"), layers.Dense(10, activation="softmax"),
    ], name=network)


def multiply_accumulates(model):
    """Multiply-accumulates of one example's Dense and Conv layers (masks ignored)."""
    import keras

    total = 0
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)
        if isinstance(inner, keras.layers.Dense):
            total += int(inner.kernel.shape[0]) * int(inner.kernel.shape[1])
        elif isinstance(inner, keras.layers.Conv2D):
            out = layer.output.shape
            total += int(out[1]) * int(out[2]) * _size(inner.kernel.shape)
    return total


def _size(shape):
    size = 1
    for dim in shape:
        size *= int(dim)
    return size


def forward_calls(model, x, xla=False):
    """Zero-argument calls of one forward pass on `x`, by how they are made.

    `"predict"`: `predict_on_batch`. `"compiled"`: the forward pass without
    its per-call bookkeeping: a `tf.function` (TensorFlow), a `jax.jit` of
    `stateless_call` (JAX), an eager call under `torch.no_grad` (PyTorch).
    `"xla"` (TensorFlow, with `xla=True`): a `tf.function(jit_compile=True)`.
    """
    import keras

    calls = {"predict": lambda: model.predict_on_batch(x)}
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        forward = tf.function(lambda batch: model(batch, training=False))
        tensor = tf.constant(x)
        calls["compiled"] = lambda: forward(tensor).numpy()
        if xla:  # The same, fused by XLA (Keras' jit_compile; off by default on CPU).
            fused = tf.function(lambda batch: model(batch, training=False), jit_compile=True)
            calls["xla"] = lambda: fused(tensor).numpy()
    elif backend == "jax":
        import jax

        # Copies: `predict_on_batch`, timed in turn with this call, may
        # donate the variables' own buffers.
        trainable = [jax.numpy.copy(v.value) for v in model.trainable_variables]
        frozen = [jax.numpy.copy(v.value) for v in model.non_trainable_variables]
        forward = jax.jit(lambda t, n, batch: model.stateless_call(t, n, batch, training=False)[0])
        array = jax.numpy.asarray(x)
        calls["compiled"] = lambda: forward(trainable, frozen, array).block_until_ready()
    else:
        import torch

        tensor = torch.as_tensor(x)

        def eager():
            with torch.no_grad():
                return model(tensor, training=False)

        calls["compiled"] = eager
    return calls


def export_litert(model, directory):
    """The path of `model` exported to LiteRT, or None off TensorFlow.

    A masked model exports with its masks folded into the weights: the same
    operations as the dense model.
    """
    import keras

    if keras.backend.backend() != "tensorflow":
        return None
    path = os.path.join(directory, f"{model.name}.tflite")
    model.export(path, format="litert", verbose=False)
    return path


def litert_call(path, x):
    """A zero-argument call of the LiteRT interpreter on `x`."""
    import warnings

    import tensorflow as tf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice.
        interpreter = tf.lite.Interpreter(model_path=path, num_threads=os.cpu_count())
    (source,), (sink,) = interpreter.get_input_details(), interpreter.get_output_details()
    interpreter.resize_tensor_input(source["index"], x.shape)
    interpreter.allocate_tensors()

    def call():
        interpreter.set_tensor(source["index"], x)
        interpreter.invoke()
        return interpreter.get_tensor(sink["index"])

    return call


def interleaved_medians(calls, repeats):
    """Median seconds of each call, the calls taken in turn `repeats` times.

    Taking them in turn (A, B, C, A, B, C, ...) rather than one after the
    other makes a change in the machine's speed hit every call alike, so
    their ratios hold even where the absolute times drift.
    """
    for call in calls.values():
        for _ in range(3):  # Warm-up: tracing, compilation, caches.
            call()
    times = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(seconds) for name, seconds in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="local mnist.npz; downloads MNIST if omitted")
    parser.add_argument("--backend", choices=["tensorflow", "jax", "torch"])
    parser.add_argument("--networks", nargs="+", default=["lenet_300_100", "mnist_cnn"])
    parser.add_argument("--sparsities", type=float, nargs="+", default=list(SPARSITIES))
    parser.add_argument("--train", type=int, default=20000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--xla", action="store_true",
                        help="TensorFlow: also time the forward pass compiled by XLA")
    parser.add_argument("--name", default="compaction")
    parser.add_argument("--output-dir", default=os.path.join(HERE, "results"))
    args = parser.parse_args(argv)
    if args.backend:
        os.environ["KERAS_BACKEND"] = args.backend
    import keras
    from _common import environment
    from _common import write_results

    import keras_anneal

    (x, y), (x_test, y_test) = keras_anneal.load_mnist(args.data)
    x = (x[: args.train, ..., None] / 255.0).astype("float32")
    y = y[: args.train]
    x_test = (x_test[..., None] / 255.0).astype("float32")
    results = {"settings": {k: v for k, v in vars(args).items() if k != "data"},
               **environment(), "rows": []}
    for network in args.networks:
        for sparsity in [0.0] + args.sparsities:
            keras.utils.set_random_seed(0)
            model = keras_anneal.prune_model(build(network))
            model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
            callbacks = [keras_anneal.AnnealedPruning(
                keras_anneal.schedules.FSA(sparsity, end_fraction=0.5), frequency=10,
                granularity="unit")] if sparsity else []
            model.fit(x, y, batch_size=128, epochs=args.epochs, verbose=0, callbacks=callbacks)
            variants = {"masked": model, "compacted": keras_anneal.compact(model)}
            if not sparsity:
                variants = {"dense": keras_anneal.strip(model)}
            # Every timing of this sparsity's models in one interleaved loop:
            # the masked and the compacted model are measured alike.
            calls, exports = {}, {}
            for kind, candidate in variants.items():
                exports[kind] = export_litert(candidate, tempfile.mkdtemp())
                for batch in (1, 128):
                    timed = forward_calls(candidate, x_test[:batch], xla=args.xla)
                    if exports[kind]:
                        timed["litert"] = litert_call(exports[kind], x_test[:batch])
                    calls.update({(kind, how, batch): call for how, call in timed.items()})
            medians = interleaved_medians(calls, args.calls)
            for kind, candidate in variants.items():
                candidate.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
                _, accuracy = candidate.evaluate(x_test, y_test, batch_size=1024, verbose=0)
                row = {
                    "network": network, "unit_sparsity": sparsity, "model": kind,
                    "parameters": int(candidate.count_params()),
                    "macs": multiply_accumulates(candidate),
                    "test_accuracy": float(accuracy),
                }
                for (of, how, batch), seconds in medians.items():
                    if of == kind:
                        prefix = {"predict": "", "compiled": "compiled_", "litert": "litert_",
                                  "xla": "xla_"}[how]
                        row[f"{prefix}latency_batch_{batch}"] = seconds
                if exports[kind]:
                    row["litert_bytes"] = os.path.getsize(exports[kind])
                results["rows"].append(row)
                print(row, flush=True)
            write_results(f"{args.name}_{keras.backend.backend()}", results, directory=args.output_dir)
    write_table(results, os.path.join(args.output_dir, f"{args.name}_{keras.backend.backend()}.md"))


def write_table(results, path):
    rows = results["rows"]
    dense = {r["network"]: r for r in rows if r["model"] == "dense"}
    masked = {(r["network"], r["unit_sparsity"]): r for r in rows if r["model"] == "masked"}
    litert = any("litert_latency_batch_1" in r for r in rows)
    xla = any("xla_latency_batch_1" in r for r in rows)
    lines = [
        f"Backend {results['backend']}; latencies are medians of {results['settings']['calls']} "
        "calls of `predict_on_batch`" + (" and of the LiteRT interpreter" if litert else "")
        + "; speedups are against the masked model of the same sparsity (the dense one for 0%); "
        "a masked model's parameters include its masks.",
        "",
        "| network | unit sparsity | model | parameters | MACs | × fewer MACs | batch 1 (ms) | "
        "batch 128 (ms) | × faster (1) | × faster (128) | compiled batch 1 / 128 (ms) | "
        "× faster compiled (1 / 128) | test acc (%) |"
        + (" LiteRT batch 1 (ms) | LiteRT batch 128 (ms) | × faster LiteRT (1 / 128) |"
           if litert else "")
        + (" XLA batch 1 / 128 (ms) | × faster XLA (1 / 128) |" if xla else ""),
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        + ("---:|---:|---:|" if litert else "") + ("---:|---:|" if xla else ""),
    ]
    for r in rows:
        base = masked.get((r["network"], r["unit_sparsity"]), dense[r["network"]])
        line = (
            f"| {r['network']} | {r['unit_sparsity']:.0%} | {r['model']} | {r['parameters']:,} | "
            f"{r['macs']:,} | {base['macs'] / r['macs']:.2f} | {1000 * r['latency_batch_1']:.2f} | "
            f"{1000 * r['latency_batch_128']:.2f} | "
            f"{base['latency_batch_1'] / r['latency_batch_1']:.2f} | "
            f"{base['latency_batch_128'] / r['latency_batch_128']:.2f} | "
            + _compiled_cells(base, r)
            + f"{100 * r['test_accuracy']:.2f} |"
        )
        if litert:
            line += _litert_cells(base, r)
        if xla:
            line += " " + _compiled_cells(base, r, prefix="xla_").rstrip()
        lines.append(line)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def _litert_cells(base, row):
    """The LiteRT columns (speedup empty for results written before masked
    models were exported too)."""
    keys = ("litert_latency_batch_1", "litert_latency_batch_128")
    if not all(key in row for key in keys):
        return " | | |"
    speedup = (f"{base[keys[0]] / row[keys[0]]:.2f} / {base[keys[1]] / row[keys[1]]:.2f}"
               if all(key in base for key in keys) else "")
    return f" {1000 * row[keys[0]]:.3f} | {1000 * row[keys[1]]:.3f} | {speedup} |"


def _compiled_cells(base, row, prefix="compiled_"):
    """The compiled-call (or XLA) columns (empty for results written before they existed)."""
    keys = (f"{prefix}latency_batch_1", f"{prefix}latency_batch_128")
    if not all(key in row and key in base for key in keys):
        return " | | "
    return (f"{1000 * row[keys[0]]:.3f} / {1000 * row[keys[1]]:.2f} | "
            f"{base[keys[0]] / row[keys[0]]:.2f} / {base[keys[1]] / row[keys[1]]:.2f} | ")


if __name__ == "__main__":
    main()
