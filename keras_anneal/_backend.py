"""What callbacks need from the backend's trainer."""


def sync_backend_state(model):
    """Makes the model's variables current before a callback reads or writes them.

    During `fit` the JAX trainer keeps the state outside the variables, and
    only writes it back at the end of an epoch or when asked to.
    """
    if hasattr(model, "jax_state_sync"):
        model.jax_state_sync()
