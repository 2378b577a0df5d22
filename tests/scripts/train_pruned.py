"""Trains a small pruned model in its own process, for the tests that need one:
two devices (MirroredStrategy, JAX DataParallel) or a process killed mid-epoch.

    python train_pruned.py --out result.npz [--devices 2] [--backup DIR] [--kill-at EPOCH BATCH]

Writes the final masks and weights to `--out`. With `--devices 2`, the two
devices are set up before the backend starts (logical CPUs on TensorFlow,
forced host devices on JAX) and training is data-parallel over them.
"""

import argparse
import os
import signal
import sys


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--backup")
    parser.add_argument("--kill-at", nargs=2, type=int)
    args = parser.parse_args()

    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    if args.devices > 1 and backend == "jax":
        os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.devices}"
    if args.devices > 1 and backend == "tensorflow":
        import tensorflow as tf

        (cpu,) = tf.config.list_physical_devices("CPU")
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(args.devices)]
        )

    import keras
    import numpy as np

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, os.pardir))
    import keras_anneal


    class KillAt(keras.callbacks.Callback):
        def __init__(self, epoch, batch):
            super().__init__()
            self.epoch, self.batch, self.current = epoch, batch, 0

        def on_epoch_begin(self, epoch, logs=None):
            self.current = epoch

        def on_train_batch_begin(self, batch, logs=None):
            if (self.current, batch) == (self.epoch, self.batch):
                os.kill(os.getpid(), signal.SIGKILL)


    def build():
        keras.utils.set_random_seed(0)
        model = keras.Sequential([
            keras.Input((12,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(4),
        ])
        model = keras_anneal.prune_model(model)
        model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9), loss="mse")
        return model


    scope = None
    if args.devices > 1 and backend == "tensorflow":
        strategy = tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(args.devices)])
        assert strategy.num_replicas_in_sync == args.devices
        scope = strategy.scope()
    elif args.devices > 1 and backend == "jax":
        import jax

        assert len(jax.devices()) == args.devices
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=jax.devices()))

    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 12)).astype("float32")
    y = (x[:, :4] * 2 - x[:, 4:8]).astype("float32")
    callbacks = [keras_anneal.AnnealedPruning(
        keras_anneal.schedules.FSA(0.8, end_fraction=0.5), frequency=3)]
    if args.backup:
        callbacks.append(keras.callbacks.BackupAndRestore(args.backup))
    if args.kill_at:
        callbacks.append(KillAt(*args.kill_at))

    if scope is not None:
        with scope:
            model = build()
    else:
        model = build()
    model.fit(x, y, batch_size=32, epochs=4, shuffle=False, verbose=0, callbacks=callbacks)
    np.savez(
        args.out,
        *[m for layer in keras_anneal.masked_layers(model) for m in layer.get_masks()],
        *[keras.ops.convert_to_numpy(w) for w in model.weights],
    )
    print("done", keras_anneal.sparsity_report(model).sparsity)


if __name__ == "__main__":
    main()
