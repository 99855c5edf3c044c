"""Cassette files: vcrpy's YAML format read tolerantly and written readably, and the leak check.

Private helpers of :mod:`forge.testing.cassettes`; PyYAML is imported when a
file is read or written, never at import time.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "CREDENTIAL_HEADERS",
    "CREDENTIAL_QUERY_PARAMS",
    "REDACTED",
    "RESPONSE_SECRET_HEADERS",
    "YamlSerializer",
    "find_secrets",
    "load_interactions",
]

REDACTED = "REDACTED"

CREDENTIAL_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "x-api-key",
        "x-goog-api-key",
        "api-key",
        "cookie",
        "openai-organization",
        "openai-project",
        "anthropic-organization-id",
    }
)
"""Request headers dropped before a request is stored."""

RESPONSE_SECRET_HEADERS = frozenset(
    {"set-cookie", "openai-organization", "openai-project", "anthropic-organization-id"}
)
"""Response headers dropped before a response is stored."""

CREDENTIAL_QUERY_PARAMS = frozenset({"key", "api_key", "apikey"})
"""URL query parameters dropped before a request is stored, and ignored in matching."""


# --------------------------------------------------------------------------- YAML


def _yaml() -> Any:
    try:
        import yaml
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError("forge cassettes need PyYAML: pip install 'forge-llm[testing]'.") from exc
    return yaml


class YamlSerializer:
    """vcrpy's YAML format (version 1), tolerant of how other recorders wrote it, readable when written.

    Loading accepts pydantic-ai's ``parsed_body``, scalar header values, a
    missing status message or missing headers, and gzip bodies with or without
    their ``Content-Encoding``. Writing puts multi-line strings (stream
    bodies) in block style.
    """

    def deserialize(self, text: str) -> dict[str, Any]:
        yaml = _yaml()
        data = yaml.load(text, Loader=_loader(yaml))
        if isinstance(data, dict) and isinstance(data.get("interactions"), list):
            data["interactions"] = [_normalize_interaction(item) for item in data["interactions"]]
        return data  # type: ignore[no-any-return]

    def serialize(self, data: dict[str, Any]) -> str:
        yaml = _yaml()
        return yaml.dump(data, Dumper=_dumper(yaml), allow_unicode=True, width=120)  # type: ignore[no-any-return]


def _loader(yaml: Any) -> Any:
    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class Loader(base):  # type: ignore[misc, valid-type]
        pass

    def as_str(loader: Any, node: Any) -> str:
        return str(loader.construct_scalar(node))

    for tag in ("tag:yaml.org,2002:python/str", "tag:yaml.org,2002:python/unicode"):
        Loader.add_constructor(tag, as_str)
    return Loader


def _dumper(yaml: Any) -> Any:
    base = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

    class Dumper(base):  # type: ignore[misc, valid-type]
        pass

    def represent_str(dumper: Any, value: str) -> Any:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, represent_str)
    return Dumper


def load_interactions(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The interactions of a cassette file as vcrpy replays them (normalized, bodies still encoded)."""
    data = YamlSerializer().deserialize(Path(path).read_text(encoding="utf-8"))
    interactions: list[dict[str, Any]] = data["interactions"]
    return interactions


def _header_lists(headers: object) -> dict[str, list[str]]:
    if not isinstance(headers, Mapping):
        return {}
    out: dict[str, list[str]] = {}
    for name, value in headers.items():
        values = value if isinstance(value, list) else [value]
        out[str(name)] = [str(v) for v in values]
    return out


def _normalize_interaction(item: Any) -> Any:
    if not isinstance(item, dict):
        return item
    req = item.get("request") or {}
    resp = item.get("response") or {}
    item["request"] = _normalize_request(req)
    content, headers = _response_content(resp)
    headers = _fit_encoding_header(headers, content)
    # Framing headers describe the original transfer, not the stored body.
    headers = {k: v for k, v in headers.items() if k.lower() not in ("content-length", "transfer-encoding")}
    resp["status"] = _normalize_status(resp.get("status"))
    resp["headers"] = headers
    resp["body"] = {"string": content}
    resp.pop("parsed_body", None)
    item["response"] = resp
    return item


def _normalize_request(req: dict[str, Any]) -> dict[str, Any]:
    body: object = req.get("body")
    if "parsed_body" in req:
        body = json.dumps(req["parsed_body"])
    if isinstance(body, dict) and "string" in body:
        body = body["string"]
    return {
        "method": req.get("method", "GET"),
        "uri": req.get("uri", ""),
        "body": body,
        "headers": _header_lists(req.get("headers")),
    }


def _response_content(resp: dict[str, Any]) -> tuple[object, dict[str, list[str]]]:
    """The stored response body (``parsed_body`` re-encoded) and its headers."""
    headers = _header_lists(resp.get("headers"))
    if "parsed_body" in resp:
        content: object = json.dumps(resp["parsed_body"]).encode("utf-8")
        headers = {k: v for k, v in headers.items() if k.lower() != "content-encoding"}
        return content, headers
    raw = resp.get("body")
    content = raw.get("string", b"") if isinstance(raw, dict) else raw
    return (b"" if content is None else content), headers


def _fit_encoding_header(headers: dict[str, list[str]], content: object) -> dict[str, list[str]]:
    encoding = next((k for k in headers if k.lower() == "content-encoding"), None)
    if encoding is not None and not isinstance(content, (bytes, bytearray)):
        del headers[encoding]  # a text body was stored decoded: its encoding header no longer applies
    elif encoding is None and isinstance(content, (bytes, bytearray)) and content[:2] == b"\x1f\x8b":
        headers["Content-Encoding"] = ["gzip"]
    return headers


def _normalize_status(status: Any) -> dict[str, object]:
    if not isinstance(status, dict):
        status = {"code": int(status or 200)}
    return {"code": int(status.get("code", 200)), "message": str(status.get("message") or "")}


# --------------------------------------------------------------------------- leak check

_TOKEN = r"[A-Za-z0-9._~+/\-]"
_SECRET_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("an OpenAI/Anthropic key (sk-...)", re.compile(r"\bsk-(?:ant-|proj-|svcacct-|admin-)?[\w\-]{16,}")),
    ("a Google API key (AIza...)", re.compile(r"\bAIza[\w\-]{30,}")),
    ("a Google OAuth token (ya29.)", re.compile(r"\bya29\.[\w\-]{16,}")),
    # A bearer token has a digit somewhere; "Bearer authentication" in a message does not.
    ("a bearer token", re.compile(rf"\bBearer\s+(?!REDACTED\b)(?={_TOKEN}*\d){_TOKEN}{{12,}}")),
    ("a key in a URL", re.compile(r"[?&](?:key|api_key|apikey)=(?!REDACTED\b)[^&\s'\"#]+", re.IGNORECASE)),
)
_HEADER_NAMES = CREDENTIAL_HEADERS | RESPONSE_SECRET_HEADERS


def find_secrets(path: str | os.PathLike[str]) -> list[str]:
    """Everything in a cassette (or in every ``*.yaml``/``*.yml`` under a directory) that looks like a key.

    Looks at the raw text, every URI, every request and response header (any
    credential header with a value other than ``REDACTED``), and every body,
    gzip bodies inflated. Returns one line per finding (``file: where: what``);
    empty when clean.
    """
    root = Path(path)
    files = sorted(p for p in root.rglob("*") if p.suffix in (".yaml", ".yml")) if root.is_dir() else [root]
    findings: list[str] = []
    for file in files:
        findings.extend(f"{file}: {finding}" for finding in _scan_file(file))
    return findings


def _scan_file(file: Path) -> list[str]:
    text = file.read_text(encoding="utf-8", errors="replace")
    found = [f"raw text: {what}" for what in _scan_text(text)]
    try:
        data = _yaml().load(text, Loader=_loader(_yaml()))
    except Exception as exc:  # a file that is not YAML cannot be checked beyond its text
        return [*found, f"not YAML ({exc.__class__.__name__}): only its raw text was scanned"]
    interactions = data.get("interactions") if isinstance(data, dict) else None
    for i, item in enumerate(interactions or []):
        if not isinstance(item, dict):
            continue
        for side in ("request", "response"):
            part = item.get(side)
            if isinstance(part, dict):
                found.extend(_scan_part(part, f"interaction {i} {side}"))
    return sorted(set(found), key=found.index)


def _scan_part(part: dict[str, Any], where: str) -> list[str]:
    """Findings in one recorded request or response: its URI, credential headers and body."""
    found = [f"{where} uri: {w}" for w in _scan_text(str(part.get("uri", "")))]
    for name, values in _header_lists(part.get("headers")).items():
        if name.lower() in _HEADER_NAMES and any(v.strip() not in ("", REDACTED) for v in values):
            found.append(f"{where} header {name!r} has a value")
    body = part.get("body")
    if isinstance(body, dict):
        body = body.get("string")
    if "parsed_body" in part:
        body = json.dumps(part["parsed_body"])
    found.extend(f"{where} body: {w}" for w in _scan_text(_body_text(body)))
    return found


def _body_text(body: object) -> str:
    if isinstance(body, (bytes, bytearray)):
        raw = bytes(body)
        if raw[:2] == b"\x1f\x8b":
            with contextlib.suppress(OSError, EOFError):
                raw = gzip.decompress(raw)
        return raw.decode("utf-8", "replace")
    return "" if body is None else str(body)


def _scan_text(text: str) -> list[str]:
    found = []
    for what, pattern in _SECRET_PATTERNS:
        match = pattern.search(text)
        if match:
            value = match.group(0)
            found.append(f"{what}: {value[:12]}...")
    return found
