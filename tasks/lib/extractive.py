"""Deterministic extractive summarisation: rank a document's own sentences. The offline provider and
the summary fallback are built on it, so their output always comes from the story's text."""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass

from tasks.lib.text import sentences

_WORD = re.compile(r"[a-z0-9][a-z0-9+#.\-']*[a-z0-9+#]|[a-z0-9]")
_NUMBER = re.compile(r"\d")
STOPWORDS = frozenset(
    """a about above after again against all also am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further had has
    have having he her here hers him his how i if in into is it its itself just me more most my no nor not
    now of off on once only or other our ours out over own same she should so some such than that the
    their theirs them then there these they this those through to too under until up very was we were what
    when where which while who whom why will with would you your yours new says said one two""".split()
)


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def content_words(text: str) -> list[str]:
    return [w for w in words(text) if w not in STOPWORDS and len(w) > 1]


@dataclass(frozen=True)
class Ranked:
    sentence: str
    position: int
    score: float


def rank_sentences(
    text: str, title: str | None = None, *, min_len: int = 25, max_len: int = 400
) -> list[Ranked]:
    """Sentences of ``text`` best first (ties: earlier first).

    A sentence scores by how frequent its content words are in the whole text, how much of the title
    it repeats, whether it carries numbers, and how early it comes.
    """
    candidates = [s for s in sentences(text) if min_len <= len(s) <= max_len]
    if not candidates:
        candidates = [s for s in sentences(text) if s.strip()][:5]
    freq = Counter(content_words(text))
    top = max(freq.values(), default=1)
    title_words = set(content_words(title or ""))
    title_key = " ".join(words(title or ""))
    ranked: list[Ranked] = []
    for position, sentence in enumerate(candidates):
        own = set(content_words(sentence))
        if not own or (title_key and " ".join(words(sentence)) == title_key):
            continue  # nothing to say, or just the title again
        density = sum(freq[w] / top for w in own) / math.sqrt(len(own) + 1)
        overlap = len(own & title_words) / len(title_words) if title_words else 0.0
        numbers = 0.15 if _NUMBER.search(sentence) else 0.0
        lead = 0.3 / (1 + position)
        ranked.append(Ranked(sentence, position, round(density + overlap + numbers + lead, 6)))
    ranked.sort(key=lambda r: (-r.score, r.position))
    return ranked


def top_sentences(text: str, title: str | None, k: int) -> list[str]:
    """The ``k`` best sentences, in the order they appear in the text."""
    best = rank_sentences(text, title)[:k]
    return [r.sentence for r in sorted(best, key=lambda r: r.position)]
