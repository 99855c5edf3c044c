"""What the vendors document, as the emulator uses it: one place, each fact beside its source.

The emulator must model the vendors, not forge: if it copied forge's own tables
(``forge.optimize.*``, ``forge.pricing``), the optimizer's savings measured on it
would only repeat forge's assumptions. So nothing here is imported from forge's
optimizer or price list (``tests/testing/test_emulator_vendor_facts.py`` fails if
the emulator does), and where a vendor's documented value differs from what
forge's optimizer assumes, that test names the difference instead of hiding it.

Each :class:`Source` says where a fact comes from and what the page says, as read
through the project's documentation search (no internet here). Vendor pages
change with new models and their dated versions disagree; when they do, the note
says which version the value follows.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ANTHROPIC_CACHE_MINIMUMS",
    "ANTHROPIC_CACHE_MULTIPLIERS",
    "ANTHROPIC_CACHE_TTLS",
    "ANTHROPIC_DEFAULT_CACHE_MINIMUM",
    "ANTHROPIC_MAX_BREAKPOINTS",
    "ANTHROPIC_RATE_LIMIT_HEADER",
    "ANTHROPIC_RATE_LIMIT_KINDS",
    "CHARS_PER_TOKEN",
    "GEMINI_CACHE_MINIMUMS",
    "GEMINI_CACHE_STORAGE_USD_PER_MTOK_HOUR",
    "GEMINI_DEFAULT_CACHE_MINIMUM",
    "GEMINI_DEFAULT_CACHE_TTL",
    "OPENAI_CACHE_MIN_TOKENS",
    "OPENAI_CACHE_STEP_TOKENS",
    "OPENAI_CACHE_TTLS",
    "OPENAI_RATE_LIMIT_HEADERS",
    "SOURCES",
    "Source",
    "anthropic_cache_minimum",
    "gemini_cache_minimum",
]


@dataclass(frozen=True, slots=True)
class Source:
    """Where a fact comes from: the page, its title, and what it says (paraphrased)."""

    url: str
    title: str
    says: str


CHARS_PER_TOKEN = 4
"""The emulator's own accounting (not a vendor fact): one token per 4 characters of counted text."""

# ----------------------------------------------------------------------------- OpenAI

OPENAI_CACHE_MIN_TOKENS = 1024
OPENAI_CACHE_STEP_TOKENS = 128
# Seconds an automatic cache entry lives after its last use, by ``prompt_cache_retention``.
OPENAI_CACHE_TTLS = {"in_memory": 600.0, "30m": 1800.0, "12h": 43200.0, "24h": 86400.0}

# ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}``; the reset values are Go-style
# durations ("12ms", "6m0s"), the others integers.
OPENAI_RATE_LIMIT_HEADERS = (
    "x-ratelimit-limit-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-requests",
    "x-ratelimit-reset-tokens",
)

# -------------------------------------------------------------------------- Anthropic

# Minimum cacheable prompt length per model family; a shorter breakpoint is silently not
# cached. First match wins, so longer family names come first where they share a prefix.
ANTHROPIC_CACHE_MINIMUMS: tuple[tuple[str, int], ...] = (
    ("claude-opus-5", 512),
    ("claude-fable-5", 512),
    ("claude-mythos-5", 512),
    ("claude-opus-4-6", 4096),
    ("claude-opus-4-5", 4096),
    ("claude-haiku-4-5", 4096),
    ("claude-sonnet-4-6", 1024),
    ("claude-sonnet-4-5", 1024),
    ("claude-opus-4-1", 1024),
    ("claude-opus-4", 1024),
    ("claude-sonnet-4", 1024),
    ("claude-3-7-sonnet", 1024),
    ("claude-3-5-haiku", 2048),
    ("claude-3-haiku", 2048),
)
ANTHROPIC_DEFAULT_CACHE_MINIMUM = 1024
ANTHROPIC_MAX_BREAKPOINTS = 4
# ``cache_control.ttl``: "5m" (the default) or "1h", counted from the entry's last use.
ANTHROPIC_CACHE_TTLS = {"5m": 300.0, "1h": 3600.0}
# Price of cache traffic as a multiple of the model's base input price.
ANTHROPIC_CACHE_MULTIPLIERS = {"read": 0.1, "write_5m": 1.25, "write_1h": 2.0}

# ``anthropic-ratelimit-{kind}-{limit,remaining,reset}``; reset is an RFC 3339 time.
ANTHROPIC_RATE_LIMIT_HEADER = "anthropic-ratelimit-{kind}-{field}"
ANTHROPIC_RATE_LIMIT_KINDS = ("requests", "tokens", "input-tokens", "output-tokens")

# ----------------------------------------------------------------------------- Gemini

# Minimum token count of a context cache (``cachedContents.create`` refuses less).
GEMINI_CACHE_MINIMUMS: tuple[tuple[str, int], ...] = (
    ("gemini-2.5-flash", 1024),
    ("gemini-3-flash", 1024),
    ("gemini-2.5-pro", 4096),
    ("gemini-3-pro", 4096),
)
GEMINI_DEFAULT_CACHE_MINIMUM = 4096
GEMINI_DEFAULT_CACHE_TTL = 3600.0
# Explicit-cache storage, USD per million tokens per hour (the emulator bills nothing;
# kept so benchmarks and tests can price storage without forge's own table).
GEMINI_CACHE_STORAGE_USD_PER_MTOK_HOUR: tuple[tuple[str, float], ...] = (
    ("gemini-2.5-pro", 4.50),
    ("gemini-2.5-flash", 1.00),
)

SOURCES: dict[str, Source] = {
    "OPENAI_CACHE_MIN_TOKENS": Source(
        "https://raw.githubusercontent.com/openai/openai-cookbook/main/examples/Prompt_Caching_201.ipynb",
        "Prompt Caching 201 (OpenAI cookbook; see developers.openai.com/api/docs/guides/prompt-caching)",
        "Caching works automatically for prompts of 1024 tokens or more, with cache hits occurring "
        "in increments of 128 tokens; exact prefix match; no additional fees.",
    ),
    "OPENAI_CACHE_STEP_TOKENS": Source(
        "https://raw.githubusercontent.com/openai/openai-cookbook/main/examples/Prompt_Caching_201.ipynb",
        "Prompt Caching 201 (OpenAI cookbook)",
        "Cache hits occur in increments of 128 tokens.",
    ),
    "OPENAI_CACHE_TTLS": Source(
        "https://developers.openai.com/api/docs/guides/prompt-caching",
        "Prompt caching (OpenAI guide)",
        "In-memory retention keeps a prefix for minutes after its last use (the emulator uses 10); "
        "prompt_cache_retention='24h' extends it. The 30m/12h values are the emulator's reading of "
        "prompt_cache_options.ttl and are not checked against a page.",
    ),
    "OPENAI_RATE_LIMIT_HEADERS": Source(
        "https://community.openai.com/t/how-to-get-rate-limit-reset-time-for-response-api/1268905",
        "How to get rate limit reset time for response API? (OpenAI community, real headers)",
        "x-ratelimit-limit-requests: 5000, x-ratelimit-remaining-tokens: 159976, "
        "x-ratelimit-reset-requests: 12ms, x-ratelimit-reset-tokens: 9ms; same headers on the Responses API.",
    ),
    "ANTHROPIC_CACHE_MINIMUMS": Source(
        "https://platform.claude.com/docs/en/build-with-claude/prompt-caching",
        "Prompt caching (Claude docs), as quoted in anthropics/anthropic-sdk-python#1194 and the "
        "LiteLLM prompt-caching page (docs.litellm.ai/docs/completion/prompt_caching)",
        "4096 tokens for Claude Opus 4.6 and Opus 4.5; 1024 for Sonnet 4.6, Sonnet 4.5, Opus 4.1, "
        "Opus 4, Sonnet 4 and Sonnet 3.7; 4096 for Haiku 4.5; 2048 for Haiku 3.5 and Haiku 3; "
        "512 for Opus 5, Fable 5 and Mythos 5 (LiteLLM's table). Shorter prompts are not cached, "
        "even if marked, and no error is returned. Issue #1194 reports Sonnet 4.6 caching only "
        "from 2048 in practice; the documented 1024 is modelled here.",
    ),
    "ANTHROPIC_MAX_BREAKPOINTS": Source(
        "https://platform.claude.com/docs/en/build-with-claude/prompt-caching",
        "Prompt caching (Claude docs)",
        "Up to 4 cache breakpoints per request.",
    ),
    "ANTHROPIC_CACHE_TTLS": Source(
        "https://docs.orq.ai/docs/proxy/prompt-caching",
        "Prompt caching (orq.ai, restating Anthropic's cache_control.ttl)",
        "'5m' (default): 5 minutes from last use; '1h': 1 hour.",
    ),
    "ANTHROPIC_CACHE_MULTIPLIERS": Source(
        "https://platform.claude.com/docs/about-claude/models/whats-new-opus-5",
        "Claude Opus 5 (Claude docs, pricing block)",
        "Input $5/MTok, 5m cache write $6.25/MTok (1.25x), 1h cache write $10/MTok (2x), "
        "cache read $0.50/MTok (0.1x). Some newer models list a lower read multiplier.",
    ),
    "ANTHROPIC_RATE_LIMIT_HEADER": Source(
        "https://www.github.com/anthropics/anthropic-sdk-typescript/issues/357",
        "anthropic-sdk-typescript#357 (rate-limit headers); mock-server.com LlmRateLimitHeaders "
        "(citing Anthropic's Rate limits page)",
        "anthropic-ratelimit-requests-limit / -remaining / -reset, the same for tokens; the reset "
        "value is an RFC 3339 timestamp; retry-after when the request was refused.",
    ),
    "GEMINI_CACHE_MINIMUMS": Source(
        "https://ai.google.dev/gemini-api/docs/caching?lang=go",
        "Context caching (Gemini API docs, the version documenting explicit caching)",
        "Minimum input token count for context caching: Gemini 3 Flash Preview 1024, Gemini 3 Pro "
        "Preview 4096, Gemini 2.5 Flash 1024, Gemini 2.5 Pro 4096. Later versions of the page "
        "(last updated 2026-07-07 and 2026-10-13, implicit caching only) list Gemini 2.5 Flash "
        "2,048, 2.5 Pro 2,048 and 4,096 for every newer model (3.1 Pro, 3.5-3.8 Flash); the "
        "default for unlisted models follows those (4,096).",
    ),
    "GEMINI_DEFAULT_CACHE_TTL": Source(
        "https://ai.google.dev/gemini-api/docs/caching?authuser=1",
        "Context caching (Gemini API docs)",
        "If not set, the TTL defaults to 1 hour. Billing depends on the cached token count and "
        "how long the tokens persist (storage duration).",
    ),
    "GEMINI_CACHE_STORAGE_USD_PER_MTOK_HOUR": Source(
        "https://discuss.ai.google.dev/t/gemini-explicit-context-cache-creation-billing/172194",
        "Gemini explicit context cache creation billing (Google AI developers forum, quoting the "
        "pricing page)",
        "gemini-2.5-pro storage $4.50 / 1M token-hour; creating the cache bills its tokens at the "
        "standard input price, plus storage for the TTL. Gemini 2.5 Flash: $1 / 1M tokens / hour "
        "(sukruyusufkaya.com, Gemini context caching storage fee).",
    ),
}


def anthropic_cache_minimum(model: str) -> int:
    """Anthropic's documented minimum cacheable prompt length for ``model``, in tokens."""
    return next((n for family, n in ANTHROPIC_CACHE_MINIMUMS if model.startswith(family)),
                ANTHROPIC_DEFAULT_CACHE_MINIMUM)


def gemini_cache_minimum(model: str) -> int:
    """Gemini's documented minimum size of a context cache for ``model``, in tokens."""
    name = model.removeprefix("models/")
    return next((n for family, n in GEMINI_CACHE_MINIMUMS if name.startswith(family)),
                GEMINI_DEFAULT_CACHE_MINIMUM)
