"""Gemini batch results keep their reasoning blocks, so a batch reply continues a conversation too."""

from __future__ import annotations

from forge.providers.google_batch import parse_inlined_response
from forge.types import Response


def test_a_batch_result_keeps_thought_parts_and_signatures_as_reasoning_blocks() -> None:
    item = {"response": {
        "candidates": [{"content": {"role": "model", "parts": [
            {"text": "Planning.", "thought": True},
            {"text": "Answer.", "thoughtSignature": "c2lnLXRleHQ="},
        ]}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2, "totalTokenCount": 5},
    }, "metadata": {"key": "row-1"}}
    reply = parse_inlined_response(item, "gemini-3-flash-preview")
    assert isinstance(reply, Response)
    assert [(b.provider, b.kind, b.text, b.signature) for b in reply.reasoning_blocks] == [
        ("google", "thinking", "Planning.", None), ("google", "signature", "", "c2lnLXRleHQ=")]
    assert reply.to_message().reasoning_blocks == reply.reasoning_blocks
