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

from keras_anneal._cloning import compile_like


def carry_optimizer(source, plain, target, sliced):
    """Compiles `target` like `source` and hands it `source`'s optimizer state.

    The three models have the same trainable weights in the same order,
    some of them sliced in `target`. Both optimizers, of one class built on
    weights in one order, hold their variables in the same order: they are
    paired by position, and each pair's names must agree.

    Args:
        source: the compiled (masked) model training stopped in.
        plain: its stripped copy, whose layers compaction sliced.
        target: the compacted model.
        sliced: `sliced(layer, values)`, the slicing compaction applied to
            the weights of a sliced layer of `plain`, applied to arrays of
            the same shapes (one per weight of the layer).

    Raises:
        ValueError: if the weights or the optimizer variables do not pair
            up, or a variable of a sliced weight is not shaped like it
            (Adafactor's factored moments), so slicing cannot apply to it.
            Nothing is assigned then.
    """
    weights = list(zip(source.trainable_variables, plain.trainable_variables,
                       target.trainable_variables))
    counts = {len(m.trainable_variables) for m in (source, plain, target)}
    if len(counts) > 1 or any(tuple(s.shape) != tuple(p.shape) or p.name != t.name
                              for s, p, t in weights):
        raise ValueError(
            "The compacted model's trainable weights do not pair up with the original's: "
            f"{[w.path for w in source.trainable_variables]} and "
            f"{[w.path for w in target.trainable_variables]}"
        )
    old = source.optimizer
    compile_like(source, target)
    if not old.built:  # Never stepped: there is no state to carry.
        return
    new = target.optimizer
    if not new.built:
        new.build(target.trainable_variables)
    if len(old.variables) != len(new.variables):
        raise ValueError(
            "The optimizers' variables do not pair up: "
            f"{len(old.variables)} and {len(new.variables)} variables"
        )
    by_name = {v.name: v for v in old.variables}
    # A slot's name starts with its weight's path: the longest matching prefix.
    owners = sorted(((_prefix(t), _prefix(s), index) for index, (s, _, t) in enumerate(weights)),
                    key=lambda owner: -len(owner[0]))
    owner_of_plain = {}
    for layer in plain._flatten_layers():  # Pre-order: a leaf layer comes last, and wins.
        for j, weight in enumerate(layer.weights):
            owner_of_plain[id(weight)] = (layer, j)
    trainable = {id(p): index for index, (_, p, _) in enumerate(weights)}

    values = []
    for before, after in zip(old.variables, new.variables):
        owner = next((o for o in owners if after.name.startswith(o[0])), None)
        slot = after.name[len(owner[0]):] if owner else None
        if before.name != (owner[1] + slot if owner else after.name):
            raise ValueError(
                "The optimizers' variables do not pair up: "
                f"{before.name!r} and {after.name!r}"
            )
        if tuple(before.shape) == tuple(after.shape):
            values.append(_numpy(before))
            continue
        index = owner[2] if owner else None
        if index is None or tuple(before.shape) != tuple(weights[index][0].shape):
            raise ValueError(
                f"Cannot carry the optimizer variable {before.name!r} over: it is not shaped "
                "like the weight it belongs to, so the slicing of that weight does not apply "
                "to it (Adafactor's factored moments are such). Pass carry_optimizer=False "
                "and compile the compacted model again."
            )
        layer, j = owner_of_plain[id(weights[index][1])]
        siblings = [_numpy(by_name[_prefix(weights[trainable[id(w)]][0]) + slot])
                    if id(w) in trainable else _numpy(w) for w in layer.weights]
        values.append(sliced(layer, siblings)[j])
    for variable, value in zip(new.variables, values):
        variable.assign(ops.convert_to_tensor(value, dtype=variable.dtype))


def zero_slots(optimizer, variable, where):
    """Zeroes the entries `where` of `variable`'s per-weight optimizer slots.

    With its gradient and its slots at zero, a weight at zero stays there
    under every Keras optimizer (SGD's momentum, Adam's moments, RMSprop's
    average): a removed unit's bias does not drift back on stale momentum.

    Args:
        optimizer: a `keras.optimizers.Optimizer`, built or not (an unbuilt
            one holds no slot yet: nothing is done).
        variable: one of the weights it trains.
        where: a boolean array shaped like `variable`.
    """
    prefix = _prefix(variable)
    for slot in getattr(optimizer, "variables", []):
        if slot.name.startswith(prefix) and tuple(slot.shape) == tuple(variable.shape):
            value = _numpy(slot)
            slot.assign(np.where(where, 0, value).astype(value.dtype))


def _prefix(weight):
    return weight.path.replace("/", "_") + "_"


def _numpy(value):
    return np.asarray(ops.convert_to_numpy(value))
