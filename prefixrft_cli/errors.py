"""The one error type users see: a single line naming the file, line, field or option at fault.

The CLI turns a `UserError` into that line on stderr and exit code 2, with no traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """Bad input from the user: printed as one line, exit code 2."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' (did you mean X?)' for the closest choice, or '' when nothing is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown_choice(kind: str, word: str, choices: Iterable[str]) -> UserError:
    """The standard error for a name that is not among the valid choices."""
    choices = sorted(choices)
    return UserError(f"unknown {kind} {word!r}{did_you_mean(word, choices)}; valid: {', '.join(choices)}")
