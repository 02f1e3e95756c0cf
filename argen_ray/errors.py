"""The base of every user-facing error: the CLI prints its message, never a traceback."""


class ArgenError(Exception):
    """Bad input or a missing resource; the message names the input and what is wrong."""


def root_message(exc: BaseException) -> str:
    """The innermost cause's message: Ray wraps actor errors in layers of traceback text.

    A Ray task error's `cause` (the exception raised inside the actor) as "Type: message",
    else the last line of the error's text (Ray's and Serve's tracebacks end with it).
    """
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {cause}"
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__
