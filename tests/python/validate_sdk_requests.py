#!/usr/bin/env python3
"""Validates request bodies against the official SDKs' request types.

Usage: validate_sdk_requests.py MANIFEST

MANIFEST is a JSON list of {"name", "type", "file", "expect"}: `file` holds
one JSON request body as the adapter sends it, `type` names the SDK type it
must be (below), `expect` is "valid" or "invalid" (negative controls: a body
with a field the SDK lacks must be refused). Every type is checked with extra
keys forbidden, all the way down:

- anthropic: the SDK's TypedDicts (`MessageCreateParamsNonStreaming`,
  `MessageCountTokensParams`, batch `BatchCreateParams`), each TypedDict
  reachable from them given pydantic's `extra="forbid"`;
- openai: the same for `CompletionCreateParamsNonStreaming` (Chat
  Completions) and `ResponseCreateParamsNonStreaming` (Responses);
- anthropic on Vertex AI: the same params with `model` in the URL and
  `anthropic_version` in the body (`anthropic.Vertex...`);
- google-genai: its pydantic models (`Content`, `GenerationConfig`, ... all
  `extra="forbid"` with camelCase aliases, as the REST body is written) under
  the REST request's top level (`GenerateContentRequest`, `CountTokensRequest`).

Prints one line per problem and "checked N bodies, P problems"; exits 1 if
P > 0.
"""
import json
import sys
import typing

import anthropic
import google.genai
import openai
from anthropic.types import message_count_tokens_params, message_create_params
from anthropic.types.messages import batch_create_params
from google.genai import types as g
from openai.types.chat import completion_create_params
from openai.types.responses import response_create_params
from pydantic import BaseModel, ConfigDict, TypeAdapter
from pydantic.alias_generators import to_camel

FORBID = ConfigDict(extra="forbid", arbitrary_types_allowed=True)


def is_typed_dict(t):
    return isinstance(t, type) and issubclass(t, dict) and hasattr(t, "__required_keys__")


def forbid_extra_from(root):
    """Gives every TypedDict reachable from `root` extra='forbid'."""
    seen = set()
    stack = [root]
    while stack:
        t = stack.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        if is_typed_dict(t):
            t.__pydantic_config__ = FORBID
            try:
                stack.extend(typing.get_type_hints(t, include_extras=True).values())
            except Exception:  # noqa: BLE001 - an unresolvable hint is not ours to check
                pass
        else:
            stack.extend(a for a in typing.get_args(t) if not isinstance(a, (str, int, float)))


def consume(x):
    """Runs pydantic's lazy validators of Iterable fields to the end."""
    if isinstance(x, dict):
        return {k: consume(v) for k, v in x.items()}
    if isinstance(x, (str, bytes, int, float, bool, type(None))):
        return x
    if isinstance(x, BaseModel):
        return x
    if hasattr(x, "__iter__"):
        return [consume(v) for v in x]
    return x


class GenerateContentRequest(BaseModel):
    """The REST body of `models/{model}:generateContent` (and a batch line)."""

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)
    model: typing.Optional[str] = None
    contents: list[g.Content]
    generation_config: typing.Optional[g.GenerationConfig] = None
    system_instruction: typing.Optional[g.Content] = None
    safety_settings: typing.Optional[list[g.SafetySetting]] = None
    tools: typing.Optional[list[g.Tool]] = None
    tool_config: typing.Optional[g.ToolConfig] = None
    cached_content: typing.Optional[str] = None


class CountTokensRequest(BaseModel):
    """The REST body of `models/{model}:countTokens`."""

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)
    contents: typing.Optional[list[g.Content]] = None
    generate_content_request: typing.Optional[GenerateContentRequest] = None


TYPED_DICTS = {
    "anthropic.MessageCreateParams": message_create_params.MessageCreateParamsNonStreaming,
    "anthropic.MessageCountTokensParams": message_count_tokens_params.MessageCountTokensParams,
    "anthropic.BatchCreateParams": batch_create_params.BatchCreateParams,
    "openai.CompletionCreateParams": completion_create_params.CompletionCreateParamsNonStreaming,
    "openai.ResponseCreateParams": response_create_params.ResponseCreateParamsNonStreaming,
}
MODELS = {
    "gemini.GenerateContentRequest": GenerateContentRequest,
    "gemini.CountTokensRequest": CountTokensRequest,
}


def adapters():
    out = {}
    for name, td in TYPED_DICTS.items():
        forbid_extra_from(td)
        out[name] = TypeAdapter(td)
    for name, model in MODELS.items():
        out[name] = TypeAdapter(model)
    return out


class VertexClaude:
    """A Claude body as Vertex AI's rawPredict takes it and anthropic's
    AnthropicVertex client sends it (`lib/vertex/_client.py`): the SDK's
    params with `model` moved into the URL and `anthropic_version` added."""

    def __init__(self, inner, model_in_url):
        self.inner = inner
        self.model_in_url = model_in_url

    def validate_python(self, body):
        body = dict(body)
        version = body.pop("anthropic_version", None)
        if not isinstance(version, str) or not version:
            raise ValueError("anthropic_version: Field required (a string)")
        if self.model_in_url:
            if "model" in body:
                raise ValueError("model: the model belongs in the rawPredict URL, not the body")
            body["model"] = "claude-on-vertex"
        return self.inner.validate_python(body)


def adapters_with_vertex():
    out = adapters()
    out["anthropic.VertexMessageCreateParams"] = VertexClaude(out["anthropic.MessageCreateParams"], True)
    out["anthropic.VertexMessageCountTokensParams"] = VertexClaude(
        out["anthropic.MessageCountTokensParams"], False
    )
    return out


def main():
    manifest = json.load(open(sys.argv[1]))
    print(
        f"anthropic {anthropic.__version__}, openai {openai.__version__}, "
        f"google-genai {google.genai.__version__}"
    )
    types = adapters_with_vertex()
    problems = 0
    for entry in manifest:
        body = json.load(open(entry["file"]))
        adapter = types.get(entry["type"])
        if adapter is None:
            print(f"{entry['name']}: unknown type {entry['type']}")
            problems += 1
            continue
        try:
            consume(adapter.validate_python(body))
            error = None
        except Exception as e:  # noqa: BLE001 - pydantic's ValidationError and kin
            error = " | ".join(str(e).splitlines()[:4])
        if entry["expect"] == "valid" and error:
            print(f"{entry['name']}: not a valid {entry['type']}: {error}")
            problems += 1
        elif entry["expect"] == "invalid" and not error:
            print(f"{entry['name']}: {entry['type']} accepted a body it must refuse")
            problems += 1
        elif entry["expect"] == "invalid":
            print(f"{entry['name']}: refused as it must be: {error[:160]}")
    print(f"checked {len(manifest)} bodies, {problems} problems")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
