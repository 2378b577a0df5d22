"""The config behaviour schedules and criteria share."""


class ConfigMixin:
    """`from_config` is `cls(**config)`; `repr` shows the config.

    Subclasses define `get_config()`, returning exactly their constructor
    arguments.
    """

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        arguments = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({arguments})"
