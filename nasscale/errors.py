"""Errors that carry *where* something was wrong.

Every user-facing failure is a :class:`NasscaleError`.  The command line prints ``str(err)`` on one
line and exits with status 2; the Python API raises it.  A :class:`SpecError` starts life naming a
field (``kernel_size: must be odd, got 4``) and gains context as it travels outwards: the block
string, the YAML path inside the file (``stages[3]``), and finally the file name.
"""
from __future__ import annotations

import difflib
from typing import Iterable


class NasscaleError(Exception):
    """Base class of every error nasscale raises on bad input."""


class SpecError(NasscaleError, ValueError):
    """A spec field (or a path of fields) holds a value that is not allowed.

    ``where`` is a list of context strings, outermost first; ``with_context`` returns a new error
    with one more piece of context in front (errors are values: nothing is mutated in place).
    """

    def __init__(self, message: str, where: Iterable[str] = ()):
        self.message = message
        self.where = tuple(where)
        super().__init__(self._text())

    def _text(self) -> str:
        if not self.where:
            return self.message
        return ": ".join(self.where) + ": " + self.message

    def with_context(self, context: str) -> "SpecError":
        return SpecError(self.message, (context, *self.where))


class UnknownNameError(NasscaleError, KeyError):
    """A name (architecture, block code, field) is not known; the message lists what is."""

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


def field_error(field: str, allowed: str, got: object) -> SpecError:
    """``field: must be <allowed>, got <got>`` — the one shape of a field validation message."""
    return SpecError(f"must be {allowed}, got {got!r}", (field,))


def suggest(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` when a close match exists, else an empty string."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def one_of(choices: Iterable[object]) -> str:
    return "one of " + ", ".join(repr(c) for c in choices)
