"""The harness's user-facing exception; :class:`metrics.errors.InputError` is the one for unusable inputs."""


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the key, the bad value and what is accepted."""
