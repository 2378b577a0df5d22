"""Carry a compiled model's training state over to its compacted copy.

`compact(model, carry_optimizer=True)` lets training go on in the smaller
model where it stopped in the masked one: the copy is compiled as the
original was (`get_compile_config`), and its optimizer starts from the
original's state: the step counter (so learning-rate schedules go on), the
learning rate, and every per-weight slot (Adam's first and second moments,
SGD's momentum, ...) sliced exactly like the weight it belongs to.

Keras names a slot after the path of its weight (`dense/kernel` gives
`dense_kernel_momentum`, `optimizer.add_variable_from_reference`), which is
how each slot finds its weight here.
"""

import numpy as np
from keras import ops


def carry_optimizer(source, plain, target, sliced):
    """Compiles `target` like `source` and hands it `source`'s optimizer state.

    The three models have the same trainable weights in the same order,
    some of them sliced in `target`.

    Args:
        source: the compiled (masked) model training stopped in.
        plain: its stripped copy, whose layers compaction sliced.
        target: the compacted model.
        sliced: `sliced(layer, values)`, the slicing compaction applied to
            the weights of a sliced layer of `plain`, applied to arrays of
            the same shapes (one per weight of the layer).

    Raises:
        ValueError: if the models' trainable weights do not pair up, or
            `target`'s optimizer holds a variable that `source`'s does not.
    """
    weights = list(zip(source.trainable_variables, plain.trainable_variables,
                       target.trainable_variables))
    counts = {len(m.trainable_variables) for m in (source, plain, target)}
    if len(counts) > 1 or any(tuple(s.shape) != tuple(p.shape) for s, p, _ in weights):
        raise ValueError(
            "The compacted model's trainable weights do not pair up with the original's: "
            f"{[tuple(w.shape) for w in source.trainable_variables]} and "
            f"{[tuple(w.shape) for w in target.trainable_variables]}"
        )
    old = source.optimizer
    if not old.built:
        old.build(source.trainable_variables)
    target.compile_from_config(source.get_compile_config())
    new = target.optimizer
    if not new.built:
        new.build(target.trainable_variables)
    old_values = {v.name: v for v in old.variables}
    # Slot names start with their weight's path: the longest matching prefix.
    owners = sorted(((_prefix(t), index) for index, (_, _, t) in enumerate(weights)),
                    key=lambda item: -len(item[0]))
    # Pre-order: a leaf layer comes after the models holding it, and wins.
    owner_of_plain = {id(w): (layer, j) for layer in plain._flatten_layers()
                      for j, w in enumerate(layer.weights)}
    trainable = {id(w): k for k, (_, w, _) in enumerate(weights)}

    def old_slot(index, slot):
        return old_values[_prefix(weights[index][0]) + slot]

    for variable in new.variables:
        owner = next(((p, i) for p, i in owners if variable.name.startswith(p)), None)
        if owner is None:  # The step counter, the learning rate: by name.
            if variable.name not in old_values:
                raise ValueError(
                    f"The optimizer of the compacted model has a variable {variable.name!r} "
                    "that the original's does not: they must be of the same type. "
                    f"Received: {type(old).__name__} and {type(new).__name__}"
                )
            value = old_values[variable.name]
        else:
            prefix, index = owner
            slot = variable.name[len(prefix):]
            value = old_slot(index, slot)
            if tuple(value.shape) != tuple(variable.shape):
                layer, j = owner_of_plain[id(weights[index][1])]
                values = [_numpy(old_slot(trainable[id(w)], slot)) if id(w) in trainable
                          else _numpy(w) for w in layer.weights]
                value = sliced(layer, values)[j]
        variable.assign(ops.convert_to_tensor(_numpy(value), dtype=variable.dtype))


def _prefix(weight):
    return weight.path.replace("/", "_") + "_"


def _numpy(value):
    return np.asarray(ops.convert_to_numpy(value))
