"""Errors the engine raises for bad user input.

Everything a user can get wrong (empty text, a broken image, an unknown method, a
parameter out of range, an unsafe checkpoint) raises :class:`ExplainerError`, so the CLI
and the dashboard can show one clear line instead of a traceback.
"""


class ExplainerError(ValueError):
    """A user-facing error: the message is meant to be shown as is."""
