"""Rebuilding Sequential and Functional models layer by layer, names kept.

`keras.models.clone_model` names a Functional model's new inputs after its
input tensors, not its input layers: an unnamed `keras.Input` becomes
`keras_tensor` rather than `input_layer`, which renames the input of a
`model.export` signature and of a dict of inputs. `clone_graph` gives the
new inputs their input layers' names (nested models' too), and leaves
compiling to `compile_like`: `clone_model` compiles the copy of a compiled
model from its config, which fails on a loss or metric function that is
not registered for serialization.
"""

import contextlib
import inspect

import keras


def is_graph_model(model):
    """Sequential or Functional: a model `keras.models.clone_model` can rebuild."""
    return isinstance(model, keras.Sequential) or any(
        cls.__name__ == "Functional" for cls in type(model).__mro__
    )


def clone_graph(model, clone_function, recursive=True, _clones=None):
    """`keras.models.clone_model(model, clone_function=...)`, input names kept.

    With `recursive`, nested Sequential and Functional models are rebuilt
    the same way (`clone_function` sees their layers, not them). A layer
    used in several places, nested models included, is cloned once.

    >>> inputs = keras.Input((3,))
    >>> model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    >>> clone = clone_graph(model, lambda layer: layer)
    >>> clone.layers[0].name == model.layers[0].name  # The input layer's.
    True
    """

    clones = {} if _clones is None else _clones

    def clone(layer):
        if id(layer) not in clones:
            clones[id(layer)] = (
                clone_graph(layer, clone_function, _clones=clones)
                if recursive and is_graph_model(layer) else clone_function(layer)
            )
        return clones[id(layer)]

    with _read_as_uncompiled(model):
        if isinstance(model, keras.Sequential):  # Its input layer keeps its name.
            return keras.models.clone_model(model, clone_function=clone)
        inputs = keras.tree.map_structure(_input_like, model.input)
        return keras.models.clone_model(model, input_tensors=inputs, clone_function=clone)


def compile_like(source, target):
    """Compiles `target` as `source` was compiled, with a new optimizer.

    From `source.get_compile_config()`, its own loss and metric functions
    and classes at hand, so that ones not registered for serialization
    come back too.

    Raises:
        TypeError, ValueError: where the config cannot be rebuilt (Keras'
            own message).
    """
    with keras.saving.custom_object_scope(_compiled_objects(source)):
        target.compile_from_config(source.get_compile_config())


@contextlib.contextmanager
def _read_as_uncompiled(model):
    """`model` reads as not compiled meanwhile (`clone_model` then leaves the
    copy uncompiled); a model whose `compiled` cannot be set stays as it is."""
    compiled = model.compiled
    try:
        model.compiled = False
        settable = True
    except AttributeError:  # A read-only property of the user's class.
        settable = False
    try:
        yield
    finally:
        if settable:
            model.compiled = compiled


def _compiled_objects(model):
    """The functions and classes `model.compile` was given, by serialized name.

    A name that two of them share (the functions of one factory) is left
    out: the config could not say which is meant.
    """
    config = getattr(getattr(model, "_compile_config", None), "config", {})
    found = {}
    for value in keras.tree.flatten(config):
        if isinstance(value, (keras.losses.Loss, keras.metrics.Metric, keras.optimizers.Optimizer)):
            value = type(value)
        if inspect.isfunction(value) or inspect.isclass(value):
            found.setdefault(value.__name__, set()).add(value)
    return {name: next(iter(values)) for name, values in found.items() if len(values) == 1}


def _input_like(tensor):
    """A new input of `tensor`'s input layer: shape, dtype, sparseness, name."""
    layer = tensor._keras_history.operation
    return type(layer).from_config(layer.get_config()).output
