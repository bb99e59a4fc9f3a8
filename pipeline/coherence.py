"""Automatic coherence features of an answer: empty, repetitive, degenerate.

Judges are least reliable on incoherent answers, which fine-tuned models produce more often, so
every generation carries these flags and the statistics can split by them. They are cheap text
heuristics, not a model: a human "incoherent" label remains the reference.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_WORD = re.compile(r"\w+", re.UNICODE)
_REPEATED_CHAR = re.compile(r"(.)\1{19,}", re.DOTALL)  # one character 20+ times in a row

REPETITION_LIMIT = 0.5  # over half of the word 3-grams are repeats: a loop, not an answer
MIN_WORDS_FOR_REPETITION = 12


@dataclass(frozen=True)
class Coherence:
    repetition: float
    degenerate: bool
    empty: bool


def repetition(text: str, n: int = 3) -> float:
    """Share of word n-grams that already occurred earlier in the text (0 = none repeated)."""
    words = [w.lower() for w in _WORD.findall(text)]
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    if not grams:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)


def letter_share(text: str) -> float:
    stripped = "".join(text.split())
    if not stripped:
        return 0.0
    return sum(ch.isalpha() for ch in stripped) / len(stripped)


def coherence(text: str) -> Coherence:
    empty = not text.strip()
    rep = repetition(text)
    words = len(_WORD.findall(text))
    degenerate = (not empty) and (
        (words >= MIN_WORDS_FOR_REPETITION and rep > REPETITION_LIMIT)
        or bool(_REPEATED_CHAR.search(text))
        or (len(text.strip()) >= 20 and letter_share(text) < 0.3))
    return Coherence(repetition=round(rep, 4), degenerate=degenerate, empty=empty)
