"""The google-genai internals forge relies on, in one place, checked when this module is imported.

forge sends the exact request ``client.aio.models.generate_content[_stream]``
would send, built by the SDK's own private pieces (see
:func:`forge.providers.google.build_gemini_http_request`). Private names can
change in any release; when one does, importing this module fails with an
error naming it and the installed version, and
``tests/providers/test_genai_private.py`` (the byte-for-byte comparison with
the SDK's own request) says what changed.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

from google.genai import _api_client
from google.genai import _common as genai_common
from google.genai import models as genai_models
from google.genai import types as gt

__all__ = [
    "GenerateContentParameters",
    "build_request",
    "check",
    "convert_to_dict",
    "encode_unserializable_types",
    "to_mldev",
]

# (what it is called, where it lives, its name there, the parameters forge passes, in order)
_USED: list[tuple[str, object, str, tuple[str, ...]]] = [
    ("models._GenerateContentParameters_to_mldev", genai_models, "_GenerateContentParameters_to_mldev",
     ("api_client", "from_object", "parent_object", "root_object")),
    ("_common.convert_to_dict", genai_common, "convert_to_dict", ("obj",)),
    ("_common.encode_unserializable_types", genai_common, "encode_unserializable_types", ("data",)),
    ("_api_client.BaseApiClient._build_request", _api_client.BaseApiClient, "_build_request",
     ("self", "http_method", "path", "request_dict", "http_options")),
    ("types._GenerateContentParameters", gt, "_GenerateContentParameters", ()),
]


def check() -> None:
    """Raise ImportError naming the private google-genai function that is gone or changed shape."""
    installed = version("google-genai")
    for qualified, owner, name, params in _USED:
        fn = getattr(owner, name, None)
        if fn is None:
            raise ImportError(
                f"google-genai {installed} has no google.genai.{qualified}, which forge uses to build the "
                "exact request the SDK sends. Install the google-genai version forge was tested with "
                "(3.6.x) or a forge release that supports this one."
            )
        if params and list(inspect.signature(fn).parameters)[: len(params)] != list(params):
            raise ImportError(
                f"google-genai {installed} changed google.genai.{qualified}{inspect.signature(fn)}; forge "
                f"calls it as ({', '.join(params)}). Install google-genai 3.6.x or a forge release that "
                "supports this one."
            )
    fields = set(gt._GenerateContentParameters.model_fields)
    if not {"model", "contents", "config"} <= fields:
        raise ImportError(
            f"google-genai {installed} changed types._GenerateContentParameters (fields {sorted(fields)}); "
            "forge sets model, contents and config."
        )


check()

GenerateContentParameters: type[Any] = gt._GenerateContentParameters
to_mldev: Callable[..., dict[str, Any]] = genai_models._GenerateContentParameters_to_mldev
convert_to_dict: Callable[..., Any] = genai_common.convert_to_dict
encode_unserializable_types: Callable[[dict[str, object]], dict[str, object]] = (
    genai_common.encode_unserializable_types
)


def build_request(client: Any, method: str, path: str, body: dict[str, Any], options: Any) -> Any:
    """``client._api_client._build_request(...)``: URL, api version, key and version headers, extra body."""
    return client._api_client._build_request(method, path, body, options)


def api_client(client: Any) -> Any:
    """The SDK's ``BaseApiClient`` behind a ``genai.Client``."""
    return client._api_client
