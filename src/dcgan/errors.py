"""The one exception type for user mistakes.

The CLI prints a ``UserError`` as a single line and exits non-zero; anything
else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A mistake the user can fix: bad path, bad option, incompatible checkpoint, ..."""
