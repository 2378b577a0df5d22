"""What the benchmarks share: an epoch timer, and the record of command,
versions and machine written beside every result.

Imports keras: import this module after choosing the backend.
"""

import json
import os
import platform
import sys
import time

import keras

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


class EpochTimes:
    """Callback methods recording the wall time of each epoch in `self.times`
    (the work of the callbacks listed before it included). A mixin, so that
    the tf_keras worker of the tfmot runs can time epochs the same way."""

    def on_train_begin(self, logs=None):
        self.times = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self._start)


class EpochTimer(EpochTimes, keras.callbacks.Callback):
    """A Keras 3 callback timing each epoch."""


def environment():
    import numpy

    versions = {"python": platform.python_version(), "keras": keras.__version__, "numpy": numpy.__version__}
    for module in ("tensorflow", "jax", "torch"):
        if module in sys.modules:
            versions[module] = sys.modules[module].__version__
    return {
        "backend": keras.backend.backend(),
        "versions": versions,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
        },
    }


def write_results(name, payload, directory=RESULTS_DIR):
    """Writes `<directory>/<name>.json` with the command line and a timestamp."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"{name}.json")
    payload = {
        "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **payload,
    }
    with open(path, "w") as f:
        json.dump(payload, f, indent=2)
    return path
