"""Annotation formats: Something-Something v1/v2, Jester, Kinetics-400 and TSM-style list files,
one file each (``ssv2.py``, ``ssv1.py``, ``jester.py``, ``kinetics.py``, ``tsm_list.py``, ``folders.py``: a user's own
class folders or CSV), each a
:class:`~videoattn.data.formats.common.Format` (name, aliases, the files it reads, its parser) in
the table :data:`FORMATS`, which :func:`load_annotations` reads. A new format is one file and one
row.

Every parser returns an :class:`Annotations`: one :class:`VideoRecord` per usable video (absolute
path, class index, frame count when known), the class names, and what was skipped.

Conventions shared by all parsers:

* **Class indices are the sorted class names** (the convention of the TSM / TAM / TDN
  checkpoints), not the indices written in the release's label files (SSv2's ``labels.json``
  numbers its classes differently). A model trained here and an official checkpoint therefore
  agree on the meaning of every logit. The one exception is :func:`load_list`, whose labels are
  already integers: there ``classes`` is taken in the order given.
* ``split`` is ``"train"``, ``"val"`` (also ``"validation"`` / ``"validate"``) or ``"test"``.
  Unlabelled videos (the test splits) get label ``-1``.
* ``on_error="raise"`` (default) stops at the first malformed line or missing video with an
  :class:`AnnotationError` naming the file and the line; ``on_error="skip"`` records a
  :class:`Skipped` and goes on, and one warning with the count is logged at the end.
* ``check_files=False`` skips every existence check (and the frame counting of SSv1), which
  makes loading fast on huge datasets or before the videos are downloaded. The messages give
  the parsers' keywords as the command line sets them (``++data.annotations.check_files=false``,
  ``++data.annotations.video_dir=FOLDER``: ``++`` adds the key or replaces it).
* A class name with a control character (newline, tab, any other C0 / C1 character, a Unicode
  line or paragraph separator) is refused by every parser, naming the class and the file, whatever
  ``on_error``: ``classes.txt`` holds one name per line, so such a name would split or shift the
  classes of every model trained on it.
* Existence checks list each directory once and look names up in memory, so checking the
  ~220k SSv2 videos costs one directory listing rather than 220k ``stat`` calls.
* A missing annotation file raises :class:`~videoattn.errors.MissingFileError` (a
  ``FileNotFoundError``) naming the paths tried.

The class lists do not depend on which videos are present, so indices are stable across
partial downloads.
"""

from __future__ import annotations

import difflib
import os
from typing import Any

from ...errors import ConfigError
from . import folders, jester, kinetics, ssv1, ssv2, tsm_list
from .common import Annotations, Format

__all__ = ["FORMATS", "Format", "format_of", "load_annotations"]


def _table(*formats: Format) -> dict[str, Format]:
    for f in formats:  # the protocol, checked as the table is built
        if not isinstance(f, Format):
            raise TypeError(f"{f!r} is not an annotation Format (name, aliases, reads, parse, keywords)")
    return {f.name: f for f in formats}


FORMATS: dict[str, Format] = _table(
    ssv2.FORMAT, ssv1.FORMAT, jester.FORMAT, kinetics.FORMAT, tsm_list.FORMAT, folders.FORMAT
)
_ALIASES = {alias: f.name for f in FORMATS.values() for alias in f.aliases}


def format_of(source: str) -> Format | None:
    """The format named ``source`` (or one of its aliases), None when there is none."""
    key = str(source).strip().lower()
    return FORMATS.get(_ALIASES.get(key, key))


def load_annotations(source: str, root: str | os.PathLike[str], split: str, **kw: Any) -> Annotations:
    """Dispatch by name: ``"ssv2"``, ``"ssv1"``, ``"jester"``, ``"kinetics"`` or ``"list"`` (plus aliases such
    as ``"sthv2"`` / ``"k400"``); ``kw`` goes to the format's parser.

    For ``"list"``, ``root`` is the list file, or the folder holding ``<split>.txt`` /
    ``<split>_videofolder.txt`` that the paths are relative to (``list_file=`` to name it).
    """
    key = str(source).strip().lower()
    fmt = FORMATS.get(_ALIASES.get(key, key))
    if fmt is None:
        close = difflib.get_close_matches(key, [*FORMATS, *_ALIASES], n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ConfigError(
            f"unknown annotation source {source!r}; allowed: "
            f"{', '.join(repr(name) for name in FORMATS)} (aliases: "
            f"{', '.join(_ALIASES)}){hint}"
        )
    accepted = fmt.keywords
    for key in kw:
        if key not in accepted:
            close = difflib.get_close_matches(key, accepted, n=2)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ConfigError(
                f"data.annotations: {key!r} is not a keyword of the {fmt.parser.__name__} parser{hint}; "
                f"allowed: {', '.join(accepted)}"
            )
    return fmt.parse(root, split, **kw)
