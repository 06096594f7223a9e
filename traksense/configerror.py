"""The one error settings raise, in a module of its own: the CLI catches it without importing the
settings that raise it."""


class ConfigError(RuntimeError):
    """A setting in the environment is malformed."""
