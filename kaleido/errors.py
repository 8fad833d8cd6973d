"""Exception types whose messages are meant for the user (the CLIs print them without a traceback)."""


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the key, the bad value and what is accepted."""


class InputError(ValueError):
    """An input file or argument is unusable; the message names it and says how to fix it."""
