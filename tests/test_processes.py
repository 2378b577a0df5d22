"""Training in other processes: on two devices, and killed mid-epoch.

Each case runs tests/scripts/train_pruned.py in a fresh process (devices
must be set up before the backend starts) and compares what it writes.
"""

import os
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest

SCRIPT = os.path.join(os.path.dirname(__file__), "scripts", "train_pruned.py")


def train(tmp_path, name, *options):
    out = str(tmp_path / f"{name}.npz")
    done = subprocess.run(
        [sys.executable, SCRIPT, "--out", out, *options],
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        capture_output=True, text=True, timeout=600,
    )
    return done, out


def arrays(path):
    with np.load(path) as data:
        return [data[key] for key in sorted(data.files, key=lambda k: int(k.split("_")[1]))]


@pytest.mark.skipif(keras.backend.backend() == "torch", reason="Keras has no data-parallel torch trainer")
def test_two_devices_give_the_masks_of_one(tmp_path):
    done, single = train(tmp_path, "single")
    assert done.returncode == 0, done.stderr[-2000:]
    done, double = train(tmp_path, "double", "--devices", "2")
    assert done.returncode == 0, done.stderr[-2000:]
    one, two = arrays(single), arrays(double)
    masks = 2  # The first arrays are the two kernels' masks.
    for a, b in zip(one[:masks], two[:masks]):
        assert 0.5 < 1 - a.mean() < 0.85  # Pruned, well under way to 80%.
        np.testing.assert_array_equal(a, b)
    for a, b in zip(one[masks:], two[masks:]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_a_process_killed_mid_epoch_resumes_to_the_same_masks_and_weights(tmp_path):
    done, reference = train(tmp_path, "reference")
    assert done.returncode == 0, done.stderr[-2000:]
    backup = str(tmp_path / "backup")
    done, _ = train(tmp_path, "killed", "--backup", backup, "--kill-at", "2", "3")
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    done, resumed = train(tmp_path, "resumed", "--backup", backup)
    assert done.returncode == 0, done.stderr[-2000:]
    for a, b in zip(arrays(reference), arrays(resumed)):
        np.testing.assert_array_equal(a, b)
