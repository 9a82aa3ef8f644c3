"""Mirrored classes: what a horizontal flip does to a class name (``"Pushing something from left
to right"`` <-> ``"... from right to left"``, clockwise <-> counterclockwise), the label map that
swaps them (:func:`flip_label_map`), and the checks that a dataset's mirrored classes come in
pairs (:func:`unpaired_mirrored_classes`)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..errors import ConfigError

__all__ = ["flip_label_map", "has_mirrored", "mirror_names", "swap_left_right", "unpaired_mirrored_classes"]

# characters, so "left_to_right" and "left-handed" match but "leftover" does not. Each maps to
# the spellings of its mirror image, tried in turn against the class list.
_MIRROR_WORDS: dict[str, tuple[str, ...]] = {
    "left": ("right",),
    "right": ("left",),
    "leftward": ("rightward",),
    "rightward": ("leftward",),
    "leftwards": ("rightwards",),
    "rightwards": ("leftwards",),
    "clockwise": ("counterclockwise", "anticlockwise", "counter-clockwise", "anti-clockwise", "counter clockwise"),
    "counterclockwise": ("clockwise",),
    "anticlockwise": ("clockwise",),
    "counter-clockwise": ("clockwise",),
    "anti-clockwise": ("clockwise",),
    "counter clockwise": ("clockwise",),
}
_MIRRORED = re.compile(
    r"(?<![A-Za-z])(counter[- ]?clockwise|anti-?clockwise|clockwise|leftwards?|rightwards?|left|right)(?![A-Za-z])",
    re.IGNORECASE,
)


def _same_case(word: str, like: str) -> str:
    if like.isupper():
        return word.upper()
    if like[0].isupper():
        return word[0].upper() + word[1:]
    return word


def mirror_names(name: str) -> list[str]:
    """The names a horizontal flip turns ``name`` into (case kept): "left" <-> "right",
    "leftward(s)" <-> "rightward(s)", "clockwise" <-> "counterclockwise" / "anticlockwise" /
    ..., every mirrored word swapped; ``[]`` when ``name`` has none."""
    matches = list(_MIRRORED.finditer(name))
    if not matches:
        return []
    out = [""]
    pos = 0
    for m in matches:
        options = [_same_case(w, m.group(0)) for w in _MIRROR_WORDS[m.group(0).lower()]]
        out = [prefix + name[pos : m.start()] + w for prefix in out for w in options]
        pos = m.end()
    return [prefix + name[pos:] for prefix in out]


def swap_left_right(name: str) -> str:
    """``name`` with every mirrored word swapped for its first mirror spelling ("left" <->
    "right", "clockwise" -> "counterclockwise", ...); ``name`` itself when it has none."""
    names = mirror_names(name)
    return names[0] if names else name


def flip_label_map(classes: Sequence[str]) -> list[int]:
    """Label permutation for a horizontal flip: ``i`` -> the class whose name is ``classes[i]``
    mirrored (:func:`mirror_names`), or ``i`` itself when there is none.

    E.g. SSv2 "Pushing something from left to right" <-> "Pushing something from right to
    left", Jester "Turning Hand Clockwise" <-> "Turning Hand Counterclockwise". The result is an
    involution (``m[m[i]] == i``). Classes with a mirrored word but no partner map to
    themselves: see :func:`unpaired_mirrored_classes`.
    """
    names = list(classes)
    index = {name: i for i, name in enumerate(names)}
    if len(index) != len(names):
        raise ConfigError("classes contains duplicated names; a flip label map needs unique names")
    mapping: list[int] = []
    for i, name in enumerate(names):
        j = next((index[m] for m in mirror_names(name) if m in index), i)
        if names[i] not in mirror_names(names[j]) and j != i:  # odd casing: keep the map an involution
            j = i
        mapping.append(j)
    return mapping


def has_mirrored(classes: Sequence[str]) -> bool:
    """Whether any class names a mirrored direction (a horizontal flip changes its meaning)."""
    return any(_MIRRORED.search(name) for name in classes)


def unpaired_mirrored_classes(classes: Sequence[str]) -> list[str]:
    """Classes that name a mirrored direction but whose mirror image is not a class: a flipped
    clip of one of them would keep a label that is now wrong."""
    mapping = flip_label_map(classes)
    return [name for i, name in enumerate(classes) if mapping[i] == i and _MIRRORED.search(name)]
