"""Which exceptions are a user's mistake (one line, exit code 2) and which are a bug in tamenet (a traceback).

The classification is by type, so that it covers every command, including ones added later:

* **user errors**: `UserError` (tamenet's own marker base: a locked run directory, ...), every
  `ValueError` and `TypeError` (tamenet's convention: a check that refuses a value raises one of
  these, `RecipeError` and `CheckpointError` included), every `OSError` (a file that is missing, a
  folder, unreadable, read-only, a full disk: the message names the path and the reason), a YAML
  syntax error, and running out of memory (a population too large for this machine);
* **bugs**: everything else (`KeyError`, `IndexError`, `AttributeError`, `AssertionError`,
  `RuntimeError` from inside PyTorch, ...), shown as a traceback so that they get reported.

This module imports nothing heavy: the command line classifies errors before torch is loaded.
"""

from __future__ import annotations

import errno

__all__ = ["USER_ERRORS", "UserError", "error_line", "is_user_error"]


class UserError(Exception):
    """Base of tamenet's own user-facing errors that are not a ValueError, TypeError or OSError."""


USER_ERRORS = (UserError, ValueError, TypeError, OSError, MemoryError)
"""The base classes of user errors (`is_user_error` adds YAML errors and torch's OutOfMemoryError by name)."""


_MEMORY_ERRORS = ("OutOfMemoryError",)  # torch.OutOfMemoryError (CUDA), checked by name: no torch import here


def is_user_error(err: BaseException) -> bool:
    """Whether `err` is a user's mistake or the machine's refusal (one line), rather than a bug (a traceback)."""
    if isinstance(err, USER_ERRORS):
        return True
    if any(cls.__name__ in _MEMORY_ERRORS for cls in type(err).__mro__):
        return True
    module = type(err).__module__ or ""
    return module.startswith("yaml")  # yaml.YAMLError and its subclasses


def error_line(err: BaseException) -> str:
    """The message of a user error on one line (line breaks become spaces).

    An OSError raised by the system (no message of tamenet's own) becomes "PATH: REASON", e.g.
    "runs/x/model.pt: read-only file system"; a MemoryError says what to reduce.
    """
    if isinstance(err, OSError) and err.strerror and (not err.args or err.args[0] == err.errno):
        where = err.filename if err.filename is not None else ""
        reason = err.strerror[0].lower() + err.strerror[1:]
        hint = _OS_HINTS.get(err.errno or 0, "")
        message = f"{where}: {reason}{hint}" if where else f"{reason}{hint}"
    elif isinstance(err, MemoryError) or any(cls.__name__ in _MEMORY_ERRORS for cls in type(err).__mro__):
        detail = str(err).split("\n")[0]
        message = ("out of memory" + (f" ({detail})" if detail else "") +
                   ": train fewer members at once (--max-memory for cv and search), a smaller train.batch_size "
                   "or a smaller model")
    elif isinstance(err, KeyError) and err.args:
        message = str(err.args[0])
    else:
        message = str(err)
    return " ".join(message.split()) or type(err).__name__


_OS_HINTS = {
    errno.EROFS: " (nothing was written there; pick a writable --out / --output)",
    errno.EACCES: " (no permission; pick another path)",
    errno.ENOSPC: " (the disk is full; what was written before is intact)",
    errno.ENOTDIR: " (a part of the path is a file, not a folder)",
}
