"""Probe, not a feature: does feedback pruning (DPF) close the convnet's gap?

Dynamic pruning with feedback (Lin et al., ICLR 2020): the forward pass uses
the pruned weights `w * m`, the gradient reaches every weight as if unpruned
(a straight-through estimator, `w + stop_gradient(w * m - w)`), and the masks
are chosen again from all of `|w|` at every update, so pruned weights can
come back. This probe patches `Masked` and `AnnealedPruning` to do so until
`--end` of training (then the masks stay), and trains one variant of
`benchmarks/allocation.py`'s convnet at the example's length (55,000 images,
15 epochs). It exists to record a negative result (benchmarks/convnet_gap.md);
the patches are not part of the library.

    python benchmarks/feedback_pruning_probe.py --data ../shared/datasets/mnist.npz \
        --variant lamp-s0.9-linear-late-dropconnect0.3 --seed 0

Appends one record per run to benchmarks/results/feedback_pruning_probe.jsonl.
"""

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def patch(end_fraction):
    """Straight-through masks, and masks chosen anew from every weight until `end_fraction`."""
    import numpy as np
    from keras import ops

    from keras_anneal import callbacks
    from keras_anneal import layers

    def straight_through(self, masks, inputs, *args, **kwargs):
        masked = [
            ops.cast(variable + ops.stop_gradient(ops.multiply(variable, mask) - variable),
                     owner.compute_dtype)
            for (owner, _), variable, mask in zip(self._slots, self._variables, masks)
        ]
        with self._call_lock, layers._substituted(self._slots, masked):
            return self.layer(inputs, *args, **kwargs)

    update = callbacks.AnnealedPruning._maybe_update

    def reselecting(self, step, defer_unless_pruning=False):
        if self._masks is not None and self._due_step(step) < end_fraction * self._total_steps:
            self._pruned = -1  # An update is due: select again, from every weight.
            self._permanent = [np.ones_like(m) for m in self._permanent]
        update(self, step, defer_unless_pruning=defer_unless_pruning)

    layers.Masked._call_with = straight_through
    callbacks.AnnealedPruning._maybe_update = reselecting


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="local mnist.npz; downloads MNIST if omitted")
    parser.add_argument("--variant", default="lamp-s0.9-linear-late-dropconnect0.3")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--end", type=float, default=0.9, help="fraction of training with reselection")
    parser.add_argument("--frequency", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--train", type=int, default=55000, help="training images (of the first 55,000)")
    parser.add_argument("--output", default=os.path.join(HERE, "results", "feedback_pruning_probe.jsonl"))
    args = parser.parse_args(argv)
    import allocation

    patch(args.end)
    settings = argparse.Namespace(epochs=args.epochs, frequency=args.frequency)
    data = allocation.load(args.data, args.train)
    start = time.perf_counter()
    record = allocation.run("convnet", allocation.variants()[args.variant], args.seed, data, settings)
    record.update(variant=f"{args.variant}-feedback{args.end}", seconds=time.perf_counter() - start,
                  command=" ".join(["python"] + sys.argv))
    print({k: record[k] for k in ("variant", "seed", "validation_accuracy", "test_accuracy", "sparsity")})
    with open(args.output, "a") as f:
        f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
