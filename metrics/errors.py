"""The exception type whose message is meant for the user: the CLIs print it as one line, without a traceback."""


class InputError(ValueError):
    """An input file or argument is unusable; the message names it and says how to fix it."""
