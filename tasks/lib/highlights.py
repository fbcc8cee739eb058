"""Highlight extractors: code examples, code/API changes, metrics and notable quotes, found with
regular expressions in a story's text (no AI, so re-runs give the same highlights)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from tasks.lib.text import sentences, truncate

MAX_HIGHLIGHTS = 30

_FENCE = re.compile(r"```[ \t]*([\w+#.-]*)[^\n]*\n(.*?)```", re.S)
_SPACE = re.compile(r"\s+")
_NON_WORD = re.compile(r"[^\w\s%$.]")

#: Signals that a sentence describes a change to code or an API. Strong ones stand alone; weak ones
#: ("removed", "now returns", "replaced", a version, a code reference) also need an API noun or code.
_STRONG_API_SIGNALS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("breaking", re.compile(r"\bbreaking changes?\b", re.I)),
    ("deprecation", re.compile(r"\bdeprecat(?:e|ed|es|ing|ion)\b", re.I)),
    (
        "endpoint",
        re.compile(r"\b(?:GET|POST|PUT|PATCH|DELETE)\s+/[\w/{}.:-]+|\bnew (?:rest )?endpoints?\b", re.I),
    ),
    (
        "new_surface",
        re.compile(r"\bnew (?:api|method|parameter|flag|option|field|argument|setting)s?\b", re.I),
    ),
    ("env_var", re.compile(r"\benvironment variables?\b|`[A-Z][A-Z0-9_]{3,}`")),
)
_WEAK_API_SIGNALS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("removal", re.compile(r"\b(?:removed|renamed|dropped support)\b", re.I)),
    ("returns", re.compile(r"\bnow (?:returns?|accepts?|requires?|raises?|defaults? to)\b", re.I)),
    ("replacement", re.compile(r"\b(?:replaced|replaces|in favou?r of|migrat(?:e|ion) (?:to|from))\b", re.I)),
    ("version", re.compile(r"\b(?:api version|v\d+(?:\.\d+){1,2})\b", re.I)),
    ("code_ref", re.compile(r"`[\w.]+\(\)`|`--[\w-]+`|\b\w+(?:\.\w+)+\(\)|(?<!\w)--[a-z][\w-]+")),
)
_API_NOUN = re.compile(
    r"\b(?:apis?|methods?|functions?|flags?|options?|parameters?|fields?|endpoints?|attributes?|hooks?|"
    r"class(?:es)?|arguments?|modules?|commands?|settings?|loaders?|schemas?|macros?|handlers?|sdk|cli)\b",
    re.I,
)
_METRIC_VALUE = re.compile(
    r"(?:\$\s?\d[\d,]*(?:\.\d+)?(?:\s?(?:k|m|bn|million|billion))?)"
    r"|(?:\b\d[\d,]*(?:\.\d+)?\s?(?:%|x\b|×|ms\b|milliseconds?\b|seconds?\b|s\b|tokens?\b|[kmgt]b\b|"
    r"tb/s|gb/s|rps\b|qps\b|requests? per second|req/s|fps\b|params?\b|parameters\b|[kmb] parameters))"
    r"|(?:\bp(?:50|90|95|99)\b)",
    re.I,
)
_METRIC_TYPES = (
    (
        "latency",
        re.compile(r"\b(?:latency|ms|milliseconds?|p(?:50|90|95|99)|faster|slower|seconds?)\b", re.I),
    ),
    ("cost", re.compile(r"\$|\b(?:cost|price|cheaper|pricing|per million)\b", re.I)),
    ("tokens", re.compile(r"\btokens?\b|\bcontext window\b", re.I)),
    ("throughput", re.compile(r"\b(?:throughput|rps|qps|requests? per second|req/s)\b", re.I)),
    ("accuracy", re.compile(r"\b(?:accuracy|score|benchmark|pass@\d|eval)\b", re.I)),
)
_PERCENTILE = re.compile(r"p(?:50|90|95|99)", re.I)
_COMPARATIVE = re.compile(
    r"\b(?:faster|slower|cheaper|smaller|larger|fewer|more|less|reduc\w*|cut|increas\w*|improv\w*|"
    r"drop\w*|from .{1,30} to)\b",
    re.I,
)
_QUOTED = re.compile(r"[“\"]([^“”\"]{40,400})[”\"]")
_ATTRIBUTION = re.compile(r"\b(?:said|says|wrote|writes|told|according to|explained|added)\b", re.I)
_SPEAKER_VERB = re.compile(r"\b(?:said|says|wrote|writes|told|explained|added)\b")
_FULL_NAME = re.compile(r"\b[A-Z][\w'-]+(?:\s+[A-Z][\w'-]+)+")
_ONE_NAME = re.compile(r"\b[A-Z][\w-]+\b")
_LANG_GUESS = (
    ("python", re.compile(r"^\s*(?:def |import |from \w+ import |class \w+[:(]|print\()", re.M)),
    ("typescript", re.compile(r"^\s*(?:interface |type \w+ =|export (?:const|function|interface))", re.M)),
    ("javascript", re.compile(r"^\s*(?:const |let |function |import .* from ['\"])|=>", re.M)),
    ("shell", re.compile(r"^\s*(?:\$ |pip |npm |curl |docker |git |export [A-Z])", re.M)),
    ("sql", re.compile(r"^\s*(?:SELECT|INSERT|UPDATE|CREATE|ALTER)\b", re.M | re.I)),
    ("rust", re.compile(r"^\s*(?:fn |let mut |use \w+::|impl )", re.M)),
    ("go", re.compile(r"^\s*(?:func |package \w+)", re.M)),
)


@dataclass(frozen=True)
class Candidate:
    kind: str
    title: str
    summary: str
    quote: str
    confidence: float
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def dedupe_key(self) -> str:
        return dedupe_key(self.kind, self.quote or self.summary)


def normalize_for_compare(text: str) -> str:
    """Lower case, punctuation dropped, whitespace collapsed: the form duplicates are compared in."""
    return _SPACE.sub(" ", _NON_WORD.sub(" ", (text or "").lower())).strip()


def dedupe_key(kind: str, text: str) -> str:
    return hashlib.sha256(f"{kind}|{normalize_for_compare(text)}".encode()).hexdigest()[:40]


def extract_highlights(text: str, limit: int = MAX_HIGHLIGHTS) -> list[Candidate]:
    """Every highlight found in ``text``, in text order, without repeats, at most ``limit``."""
    found: list[tuple[int, Candidate]] = []
    found.extend(_code_examples(text))
    prose = _FENCE.sub("\n\n", text)
    for sentence in sentences(prose):
        position = prose.find(sentence[:40])
        for extractor in (_api_change, _metric, _quote):
            candidate = extractor(sentence)
            if candidate is not None:
                found.append((position if position >= 0 else len(prose), candidate))
    found.sort(key=lambda item: item[0])
    out: list[Candidate] = []
    seen: set[str] = set()
    for _, candidate in found:
        if candidate.dedupe_key in seen:
            continue
        seen.add(candidate.dedupe_key)
        out.append(candidate)
        if len(out) >= limit:
            break
    return out


def _code_examples(text: str) -> list[tuple[int, Candidate]]:
    out: list[tuple[int, Candidate]] = []
    for match in _FENCE.finditer(text):
        code = match.group(2).strip("\n")
        lines = [line for line in code.splitlines() if line.strip()]
        if len(lines) < 2 or len(code) < 40:
            continue
        language = match.group(1).lower() or _guess_language(code)
        before = sentences(text[max(0, match.start() - 600) : match.start()])
        summary = truncate(before[-1], 240) if before else "Code sample from the article."
        title = f"{language.capitalize()} example" if language else "Code example"
        metadata = {"language": language or None, "lines": len(lines), "chars": len(code)}
        out.append(
            (match.start(), Candidate("code_example", title, summary, truncate_code(code), 0.85, metadata))
        )
    return out


def truncate_code(code: str, limit: int = 2000) -> str:
    return code if len(code) <= limit else code[:limit].rsplit("\n", 1)[0] + "\n…"


def _guess_language(code: str) -> str:
    for language, pattern in _LANG_GUESS:
        if pattern.search(code):
            return language
    return ""


def _api_change(sentence: str) -> Candidate | None:
    strong = [name for name, pattern in _STRONG_API_SIGNALS if pattern.search(sentence)]
    weak = [name for name, pattern in _WEAK_API_SIGNALS if pattern.search(sentence)]
    if not strong:
        # "we removed four servers" is not an API change; "the hook was removed" is.
        if not weak or set(weak) <= {"version"} or not (_API_NOUN.search(sentence) or "code_ref" in weak):
            return None
    signals = strong + weak
    breaking = "breaking" in signals or ("removal" in signals and bool(_API_NOUN.search(sentence)))
    if "breaking" in signals:
        title = "Breaking change"
    elif "deprecation" in signals:
        title = "Deprecation"
    elif breaking:
        title = "Breaking change"
    elif "endpoint" in signals:
        title = "New endpoint"
    else:
        title = "API change"
    confidence = round(min(0.9, 0.55 + 0.1 * len(strong) + 0.05 * len(weak)), 2)
    return Candidate(
        "api_change",
        title,
        truncate(sentence, 300),
        sentence,
        confidence,
        {"signals": signals, "breaking": breaking},
    )


def _metric(sentence: str) -> Candidate | None:
    values = [v.strip() for v in _METRIC_VALUE.findall(sentence) if v.strip()]
    if not values:
        return None
    values.sort(key=lambda v: bool(_PERCENTILE.fullmatch(v)))  # "900 ms" says more than "p99"
    # A bare year-like or version-like number is not a metric; require a unit (guaranteed by the regex).
    metric_type = next((name for name, pattern in _METRIC_TYPES if pattern.search(sentence)), "other")
    comparative = bool(_COMPARATIVE.search(sentence))
    title = f"Metric: {truncate(values[0], 40)}"
    return Candidate(
        "metric",
        title,
        truncate(sentence, 300),
        sentence,
        0.85 if comparative else 0.7,
        {"values": values[:5], "metric_type": metric_type, "comparative": comparative},
    )


def _quote(sentence: str) -> Candidate | None:
    match = _QUOTED.search(sentence)
    if match is None:
        return None
    inner = match.group(1).strip().rstrip(",")
    attributed = bool(_ATTRIBUTION.search(sentence))
    speaker = _speaker(sentence[match.end() :]) or _speaker(sentence[: match.start()])
    title = f"Quote: {speaker}" if speaker else "Notable quote"
    return Candidate(
        "quote",
        truncate(title, 80),
        truncate(sentence, 300),
        inner,
        0.75 if attributed else 0.55,
        {"attributed": attributed, "speaker": speaker},
    )


def _speaker(text: str) -> str | None:
    """The person a quote is attributed to: a capitalised full name shortly after "said"/"wrote"/…"""
    verb = _SPEAKER_VERB.search(text)
    if verb is None:
        return None
    window = text[verb.end() : verb.end() + 80]
    found = _FULL_NAME.search(window) or _ONE_NAME.search(window)
    if found is None:
        return None
    name = found.group(0)
    return None if name.endswith("'s") else name
