"""Every adapter's stream reader reports a body cut short the same way (forge.providers._stream.stream_cut)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from forge.errors import ProviderConnectionError
from forge.providers._stream import EventReader
from forge.providers.anthropic_reply import _MessageStream
from forge.providers.google_reply import _StreamReader as _GeminiReader
from forge.providers.ollama import _StreamReader as _OllamaReader
from forge.providers.openai_reply import _ChatStream
from forge.providers.openai_responses import _ResponseStream

# reader, the provider it reports, the start of the message (what the stream is, what did not come)
READERS: list[tuple[Callable[[str, str], EventReader], str, str]] = [
    (_MessageStream, "anthropic", "anthropic stream ended before message_stop"),
    (_ChatStream, "openai", "openai stream ended before its finish_reason and [DONE]"),
    (_ResponseStream, "openai", "openai Responses stream ended before response.completed"),
    (_GeminiReader, "google", "Gemini stream ended before a finish reason"),
    (_OllamaReader, "ollama", "Ollama stream ended before its final done line"),
]


@pytest.mark.parametrize(
    ("reader", "provider", "message"), READERS, ids=["anthropic", "openai-chat", "openai-responses", "google", "ollama"]
)
def test_a_body_without_its_last_event_is_a_cut_connection(
    reader: Callable[[str, str], EventReader], provider: str, message: str
) -> None:
    with pytest.raises(ProviderConnectionError) as info:
        reader("model-x", "https://example.test").close()
    error = info.value
    assert str(error).startswith(f"{message}; the connection was cut")
    assert (error.provider, error.model) == (provider, "model-x")


def test_anthropic_cut_error_carries_the_request_id() -> None:
    reader = _MessageStream("claude-x")
    reader.request_id = "req_cut"
    with pytest.raises(ProviderConnectionError) as info:
        reader.close()
    assert info.value.request_id == "req_cut"
