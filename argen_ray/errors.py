"""The base of every user-facing error: the CLI prints its message, never a traceback."""


class ArgenError(Exception):
    """Bad input or a missing resource; the message names the input and what is wrong."""
