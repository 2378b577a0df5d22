"""What every benchmark records beside its figures: command, versions, machine."""

import json
import os
import platform
import sys
import time

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def environment():
    import keras
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


def write_results(name, payload):
    """Writes `benchmarks/results/<name>.json` with the command line and a timestamp."""
    os.makedirs(RESULTS_DIR, exist_ok=True)
    path = os.path.join(RESULTS_DIR, f"{name}.json")
    payload = {
        "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **payload,
    }
    with open(path, "w") as f:
        json.dump(payload, f, indent=2)
    return path
