"""
Colour codes only where a terminal shows them.

Detectron2's ``default_setup`` logs the config file and the full config highlighted by pygments
(ANSI colour codes), and its console formatter colours warnings; the same records reach
``log.txt`` and a console redirected to a file. ``no_colour_unless_tty(logger)`` makes every
handler of ``logger`` whose stream is not a terminal strip ANSI escape sequences from what it
writes (its format is kept); a terminal keeps its colours.
"""

import logging
import re
from contextlib import contextmanager

from detectron2.engine import defaults as d2_defaults

__all__ = ["ANSI_ESCAPE", "no_colour_unless_tty", "plain_default_setup_logs"]

# CSI sequences (colours, styles): ESC [ parameters final-byte.
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


class _NoColourFormatter(logging.Formatter):
    """Another formatter's output without ANSI escape sequences."""

    def __init__(self, inner: logging.Formatter):
        super().__init__()
        self.inner = inner

    def format(self, record):
        return ANSI_ESCAPE.sub("", self.inner.format(record))


def _is_tty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


def no_colour_unless_tty(logger: logging.Logger) -> logging.Logger:
    """Strip colour codes in every handler of ``logger`` not writing to a terminal (idempotent)."""
    for handler in logger.handlers:
        stream = getattr(handler, "stream", None)
        if stream is None or _is_tty(stream) or isinstance(handler.formatter, _NoColourFormatter):
            continue
        handler.setFormatter(_NoColourFormatter(handler.formatter or logging.Formatter()))
    return logger


@contextmanager
def plain_default_setup_logs():
    """
    Within: the loggers Detectron2's ``default_setup`` creates (``detectron2``, ``fvcore``) get
    ``no_colour_unless_tty`` as they are created, before it logs the highlighted config.
    """
    original = d2_defaults.setup_logger

    def setup_logger(*args, **kwargs):
        return no_colour_unless_tty(original(*args, **kwargs))

    d2_defaults.setup_logger = setup_logger
    try:
        yield
    finally:
        d2_defaults.setup_logger = original
