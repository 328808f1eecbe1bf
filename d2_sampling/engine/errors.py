"""
Errors for people: what a user gave (a config, a path, a dataset, a checkpoint) is wrong, and a
message says what and how to fix it.

``train_net.py`` prints a user error as ``train_net.py: error: <message>`` and exits with
``EXIT_USER_ERROR``, without a traceback, once, whichever worker hit it (``launch.py`` carries
a worker's message to the launching process). ``--debug`` or ``D2_SAMPLING_DEBUG=1`` lets it
propagate with its traceback instead.

What counts as a user error (``user_error_message``):

- ``UserError`` and its subclasses, raised by this package;
- what ``setup()`` raises while it reads the config and readies the datasets (a missing file,
  an unknown key, a bad value, bad data: ``OSError``, ``ValueError``, ``KeyError``, yacs'
  ``AssertionError``, yaml's errors), which ``user_errors()`` turns into ``UserError``;
- ``DatasetError`` and ``ImageLoadError`` (bad data, wherever they are raised).

Anything else is a bug or a crash and keeps its traceback.
"""

import os
from contextlib import contextmanager
from typing import Optional

__all__ = [
    "ClassCountError",
    "EXIT_USER_ERROR",
    "UserError",
    "WeightsError",
    "debug_enabled",
    "user_error_message",
    "user_errors",
]

# argparse's exit status for a bad command line; ours for any user error.
EXIT_USER_ERROR = 2
DEBUG_ENV = "D2_SAMPLING_DEBUG"


class UserError(Exception):
    """Something the user gave is wrong; the message says what and how to fix it."""


class ClassCountError(UserError):
    """The model's class count, the training data's and the test data's classes disagree."""


class WeightsError(UserError):
    """``--eval-only`` weights that are missing or do not fit the model."""


def debug_enabled() -> bool:
    """``D2_SAMPLING_DEBUG`` is set to something other than ``""`` / ``0`` (``--debug`` sets it)."""
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def _message(exc: BaseException) -> str:
    # str(KeyError("x")) is "'x'": the message is its argument.
    if isinstance(exc, KeyError) and len(exc.args) == 1 and isinstance(exc.args[0], str):
        text = exc.args[0]
    else:
        text = str(exc) or type(exc).__name__
    if "Traceback (most recent call last)" in text:
        # Re-raised by torch's DataLoader from one of its workers: the original error is the
        # message's last line.
        lines = [line for line in text.splitlines() if line.strip()]
        text = lines[-1] if lines else text
    return text.strip()


def user_error_message(exc: BaseException) -> Optional[str]:
    """The message of ``exc`` if it is a user error (see the module), else ``None``."""
    from ..data import DatasetError, ImageLoadError

    if isinstance(exc, (UserError, DatasetError, ImageLoadError)):
        return _message(exc)
    return None


def _setup_error_types():
    import yaml

    # yacs reports a type mismatch or a key set twice with an AssertionError.
    return (OSError, ValueError, KeyError, AssertionError, yaml.YAMLError)


@contextmanager
def user_errors():
    """
    Within: the errors of reading a config and its datasets (``OSError``, ``ValueError``,
    ``KeyError``, ``AssertionError``, ``yaml.YAMLError``) become ``UserError`` with the same
    message, chained to the original (``--debug`` shows both).
    """
    try:
        yield
    except UserError:
        raise
    except _setup_error_types() as e:
        raise UserError(_message(e)) from e
