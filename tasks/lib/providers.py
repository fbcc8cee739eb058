"""AI providers for analysis and briefs: OpenAI (structured outputs through the ``openai`` client) and
a deterministic offline provider that works from the story's own sentences.

Errors from OpenAI are sorted for the queue: rate limits, timeouts, connection failures and 5xx become
:class:`~tasks.lib.errors.RetryLater` (with the server's Retry-After); an answer that does not match
the schema becomes :class:`~tasks.lib.errors.ProviderResponseInvalid`; other rejections are
:class:`~tasks.lib.errors.PermanentError`.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, ValidationError

from tasks.lib.errors import PermanentError, ProviderResponseInvalid, RetryLater, retry_after_seconds
from tasks.lib.extractive import content_words, rank_sentences, top_sentences
from tasks.lib.text import drop_nul, sentences, truncate

T = TypeVar("T")

#: Characters of story text sent to the model.
PROMPT_TEXT_LIMIT = 12000
ONE_LINER_MAX = 140
TWO_LINER_MAX = 280

# -- what providers return -------------------------------------------------------------------------


class Citation(BaseModel):
    quote: str
    url: str | None = None


class Analysis(BaseModel):
    why_it_matters: str
    chili: int = Field(ge=0, le=5)
    confidence: float = Field(ge=0, le=1)
    citations: list[Citation] = Field(default_factory=list)


class Brief(BaseModel):
    one_liner: str = Field(max_length=ONE_LINER_MAX)
    two_liner: str = Field(max_length=TWO_LINER_MAX)
    elevator: str


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


@dataclass(frozen=True)
class Result(Generic[T]):
    value: T
    provider: str
    model: str
    usage: Usage = field(default_factory=Usage)


@dataclass(frozen=True)
class StoryText:
    """What a provider sees of a story."""

    title: str | None
    text: str
    url: str | None = None
    published_at: dt.datetime | None = None
    #: The source's authority (0..1), when known.
    authority: float | None = None


class Provider(Protocol):
    name: str
    model: str

    def analyze(self, story: StoryText) -> Result[Analysis]: ...
    def brief(self, story: StoryText, analysis: Analysis | None = None) -> Result[Brief]: ...


def provider_for(settings: Any) -> Provider:
    """OpenAI when a key is configured, else the offline provider."""
    if settings.openai_enabled:
        return OpenAIProvider(settings)
    return OfflineProvider()


# -- offline --------------------------------------------------------------------------------------

#: Words that make a story hotter: launches, breakage, money, security.
HOT_TERMS = (
    "launch", "release", "released", "announce", "breaking", "vulnerab", "cve-", "exploit", "outage",
    "acquire", "acquisition", "funding", "open source", "open-source", "benchmark", "general availability",
    "deprecat", "security", "record", "first", "faster", "cheaper",
)  # fmt: skip
_METRIC = re.compile(r"\d+(?:\.\d+)?\s*(?:%|x\b|×|ms\b|s\b|gb\b|tb\b|tokens?\b|\$)|\$\s?\d", re.I)


class OfflineProvider:
    """Extractive and deterministic: the same story always gives the same analysis and brief."""

    name = "offline"
    model = "extractive-v1"

    def analyze(self, story: StoryText) -> Result[Analysis]:
        picked = top_sentences(story.text, story.title, 3)
        if not picked:
            picked = [truncate(story.title or story.text, 200)]
        why = "\n".join(f"• {s}" for s in picked)
        citations = [Citation(quote=truncate(s, 300), url=story.url) for s in picked]
        return Result(
            Analysis(
                why_it_matters=why,
                chili=self.chili(story),
                confidence=self.confidence(story),
                citations=citations,
            ),
            self.name,
            self.model,
        )

    def brief(self, story: StoryText, analysis: Analysis | None = None) -> Result[Brief]:
        ranked = rank_sentences(story.text, story.title)
        if not ranked:
            fallback = story.title or truncate(story.text, 200) or "(no text)"
            return Result(
                Brief(
                    one_liner=truncate(fallback, ONE_LINER_MAX),
                    two_liner=truncate(fallback, TWO_LINER_MAX),
                    elevator=fallback,
                ),
                self.name,
                self.model,
            )
        # the best sentence that fits whole, else the best one cut short
        fitting = [r.sentence for r in ranked[:3] if len(r.sentence) <= ONE_LINER_MAX]
        one = fitting[0] if fitting else truncate(ranked[0].sentence, ONE_LINER_MAX)
        two = _fit([r.sentence for r in sorted(ranked[:2], key=lambda r: r.position)], TWO_LINER_MAX)
        elevator = " ".join(r.sentence for r in sorted(ranked[:4], key=lambda r: r.position))
        return Result(Brief(one_liner=one, two_liner=two, elevator=elevator), self.name, self.model)

    @staticmethod
    def chili(story: StoryText) -> int:
        title = (story.title or "").lower()
        lead = title + " " + story.text[:2000].lower()
        hits = sum(1 for term in HOT_TERMS if term in lead)
        score = 1 + min(2, hits // 2) + (1 if any(t in title for t in HOT_TERMS) else 0)
        score += 1 if _METRIC.search(story.text) else 0
        score += 1 if len(story.text) > 2500 else 0
        return max(0, min(5, score))

    @staticmethod
    def confidence(story: StoryText) -> float:
        value = 0.35 + 0.25 * min(1.0, len(story.text) / 3000)
        value += 0.1 if story.url else 0.0
        value += 0.05 if story.published_at else 0.0
        value += 0.15 * (story.authority if story.authority is not None else 0.5)
        return round(min(0.9, value), 2)


def _fit(parts: list[str], limit: int) -> str:
    joined = " ".join(parts)
    if len(joined) <= limit:
        return joined
    first = parts[0]
    if len(first) < limit - 20 and len(parts) > 1:
        return first + " " + truncate(parts[1], limit - len(first) - 1)
    return truncate(first, limit)


# -- OpenAI ---------------------------------------------------------------------------------------


class CitationOutput(BaseModel):
    quote: str
    url: str | None


# No numeric bounds in the schemas we send: strict structured outputs are picky about them, and we
# clamp the answer anyway. Docstrings here are sent to the model as schema descriptions.
class AnalysisOutput(BaseModel):
    """Why a news story matters to people who build software."""

    why_it_matters: str
    chili: int
    confidence: float
    citations: list[CitationOutput]


class BriefOutput(BaseModel):
    """Three lengths of the same news brief."""

    one_liner: str
    two_liner: str
    elevator: str


ANALYSIS_INSTRUCTIONS = """You brief software engineers and AI practitioners on news.
Read the article and answer with:
- why_it_matters: two or three short bullet lines, each starting with "• ", on the practical impact
  for people who build software (what changes, who is affected, what to do);
- chili: an integer from 0 (routine) to 5 (drop everything) for how hot the story is;
- confidence: a number from 0 to 1 for how well the article supports your reading (sources, detail);
- citations: up to three short verbatim quotes from the article backing your points, with the article
  URL when known.
Use only the article; do not invent facts."""

BRIEF_INSTRUCTIONS = """You write compact news briefs for developers and researchers.
Answer with:
- one_liner: one sentence, at most 140 characters;
- two_liner: two sentences, at most 280 characters in total;
- elevator: three or four sentences (a 40-second read) with the specifics that matter: versions,
  breaking changes, numbers.
Use only the article."""


class OpenAIProvider:
    name = "openai"

    def __init__(self, settings: Any, client: Any = None) -> None:
        self.model = settings.openai_model
        self.default_retry_after = float(settings.default_retry_after)
        self._api_key = settings.openai_api_key.get_secret_value()
        if client is None:
            import openai

            client = openai.OpenAI(
                api_key=self._api_key,
                base_url=settings.openai_base_url or None,
                timeout=settings.openai_timeout,
                # The queue retries (with Retry-After); retrying inside the client would hide that.
                max_retries=0,
            )
        self.client = client

    def analyze(self, story: StoryText) -> Result[Analysis]:
        out, usage = self._parse(AnalysisOutput, ANALYSIS_INSTRUCTIONS, _article(story))
        citations = [
            Citation(quote=truncate(drop_nul(c.quote), 500), url=drop_nul(c.url or "") or story.url)
            for c in out.citations[:5]
        ]
        analysis = Analysis(
            why_it_matters=drop_nul(out.why_it_matters).strip(),
            chili=max(0, min(5, int(round(out.chili)))),
            confidence=round(max(0.0, min(1.0, float(out.confidence))), 3),
            citations=[c for c in citations if c.quote],
        )
        if not analysis.why_it_matters:
            raise ProviderResponseInvalid("the model returned an empty why_it_matters")
        return Result(analysis, self.name, self.model, usage)

    def brief(self, story: StoryText, analysis: Analysis | None = None) -> Result[Brief]:
        prompt = _article(story)
        if analysis is not None:
            prompt += f"\n\nWhy it matters (from an earlier analysis):\n{analysis.why_it_matters}"
        out, usage = self._parse(BriefOutput, BRIEF_INSTRUCTIONS, prompt)
        brief = Brief(
            one_liner=truncate(drop_nul(out.one_liner), ONE_LINER_MAX),
            two_liner=truncate(drop_nul(out.two_liner), TWO_LINER_MAX),
            elevator=elevator_of(drop_nul(out.elevator), story),
        )
        return Result(brief, self.name, self.model, usage)

    def _parse(self, schema: type[BaseModel], instructions: str, prompt: str) -> tuple[Any, Usage]:
        raw = self._call(
            lambda: self.client.chat.completions.with_raw_response.parse(
                model=self.model,
                messages=[{"role": "system", "content": instructions}, {"role": "user", "content": prompt}],
                response_format=schema,
            )
        )
        # The client trusts a 2xx body to be a chat completion; a proxy's HTML page or an error object
        # would fail deep inside it with a bare TypeError, so look at the envelope first.
        _check_envelope(raw.http_response, self._redact)
        completion = self._call(raw.parse)
        if not completion.choices:
            raise ProviderResponseInvalid("the model returned no choices")
        message = completion.choices[0].message
        if getattr(message, "refusal", None):
            raise ProviderResponseInvalid(f"the model refused: {message.refusal}")
        if message.parsed is None:
            raise ProviderResponseInvalid(f"the model returned no {schema.__name__}")
        usage = completion.usage
        return message.parsed, Usage(
            usage.prompt_tokens if usage else 0,
            usage.completion_tokens if usage else 0,
            usage.total_tokens if usage else 0,
        )

    def _call(self, fn: Callable[[], Any]) -> Any:
        import openai

        try:
            return fn()
        except openai.APITimeoutError as exc:
            raise RetryLater(self.default_retry_after, "OpenAI request timed out") from exc
        except openai.APIConnectionError as exc:
            raise RetryLater(self.default_retry_after, f"cannot reach OpenAI: {exc}") from exc
        except openai.APIStatusError as exc:
            # Not chained: the client's exception quotes the server's body, and a server or proxy
            # may repeat the credentials it was sent; the job's output keeps every cause.
            status, reason = exc.status_code, self._redact(exc.message)
            if status == 429 and exc.code == "insufficient_quota":
                raise PermanentError("OpenAI quota exhausted (429 insufficient_quota)") from None
            if status in (408, 409, 429) or status >= 500:
                seconds = _retry_after(exc.response.headers, self.default_retry_after)
                raise RetryLater(
                    seconds, f"OpenAI answered {status}; retry after {seconds:g}s: {reason}"
                ) from None
            raise PermanentError(f"OpenAI rejected the request ({status}): {reason}") from None
        except (openai.LengthFinishReasonError, openai.ContentFilterFinishReasonError) as exc:
            raise ProviderResponseInvalid(f"the model stopped early: {type(exc).__name__}") from exc
        except (ValidationError, json.JSONDecodeError) as exc:
            raise ProviderResponseInvalid(
                f"the model's answer is not valid structured output: {exc}"
            ) from exc

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "[redacted]") if len(self._api_key) >= 8 else text


def _check_envelope(response: Any, redact: Callable[[str], str]) -> None:
    """Raise :class:`ProviderResponseInvalid` unless ``response``'s body is a JSON chat completion (an
    object with a list of choices, each with a message object). ``redact`` cleans the server's words."""
    try:
        body = response.json()
    except ValueError:
        media = response.headers.get("content-type") or "no content type"
        raise ProviderResponseInvalid(
            f"the AI provider answered {response.status_code} with {media}, not a JSON chat completion"
        ) from None
    choices = body.get("choices") if isinstance(body, dict) else None
    if not isinstance(choices, list) or not all(
        isinstance(c, dict) and isinstance(c.get("message"), dict) for c in choices
    ):
        error = body.get("error") if isinstance(body, dict) else None
        detail = f": {truncate(redact(str(error)), 300)}" if error else ""
        raise ProviderResponseInvalid(f"the AI provider's answer is not a chat completion{detail}")


def _retry_after(headers: Any, default: float) -> float:
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    return retry_after_seconds(headers.get("retry-after"), default)


def _article(story: StoryText) -> str:
    lines = [f"Title: {story.title or '(untitled)'}"]
    if story.url:
        lines.append(f"Source: {urlsplit(story.url).hostname or story.url}")
        lines.append(f"URL: {story.url}")
    if story.published_at:
        lines.append(f"Published: {story.published_at.date().isoformat()}")
    lines.append("")
    lines.append(story.text[:PROMPT_TEXT_LIMIT])
    return "\n".join(lines)


def elevator_of(text: str, story: StoryText) -> str:
    """Three or four sentences: the model's first four, topped up from the story when it gave fewer."""
    got = sentences(text)[:4]
    if len(got) < 3:
        have = {" ".join(content_words(s)) for s in got}
        for extra in top_sentences(story.text, story.title, 4):
            if len(got) >= 3:
                break
            if " ".join(content_words(extra)) not in have:
                got.append(extra)
    return " ".join(got)
