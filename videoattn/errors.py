"""The user-facing errors: one small family, so that a tool can tell a user's mistake from a bug.

A :class:`UserError` means that something the user gave is wrong: a path, a checkpoint, a
config key or value, an annotation file, a video. Its message names the thing and says what to
do, in one line; every tool prints it as ``error: <message>`` and exits with code 2
(:mod:`videoattn.cli`). Any other exception is a bug and shows its traceback.

Each class also derives from the builtin exception the situation would raise otherwise
(``ValueError``, ``FileNotFoundError``, ``RuntimeError``), so code that catches those keeps working.
"""

from __future__ import annotations

__all__ = ["CheckpointError", "ConfigError", "DataError", "DivergedError", "MissingFileError", "UserError"]


class UserError(Exception):
    """Something the user gave is wrong; the message says what and what to do."""


class ConfigError(UserError, ValueError):
    """A config key, value or type (command line, YAML, or a keyword of a library call)."""


class CheckpointError(UserError, ValueError):
    """A checkpoint or weights file that cannot be read, is of another kind, or does not fit."""


class DataError(UserError, ValueError):
    """An annotation file, dataset folder or video that cannot be used as it is."""


class MissingFileError(UserError, FileNotFoundError):
    """A file or folder the user named (or a config implies) does not exist."""


class DivergedError(UserError, FloatingPointError):
    """Training stopped because its loss stayed non-finite: a setting (usually the learning
    rate) or the data, not a bug."""
