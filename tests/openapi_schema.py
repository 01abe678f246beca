"""OpenAI's own published OpenAPI document (../shared/specs/openai-openapi.json, OpenAPI 3.1, whose
schemas are JSON Schema 2020-12) as a validator: `check(instance, "CreateChatCompletionResponse")`
raises with the failing path when the instance does not match the named component schema.

The document still marks some schemas with OpenAPI 3.0's `nullable: true`, which JSON Schema
ignores; those are rewritten to admit null, as the document means."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC = Path(__file__).resolve().parents[2] / "shared" / "specs" / "openai-openapi.json"
BASE = "urn:openai-openapi"


def admit_null(node: Any) -> Any:
    if isinstance(node, list):
        return [admit_null(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: admit_null(value) for key, value in node.items()}
    if node.pop("nullable", False) is True:
        if "$ref" in node or "allOf" in node or "type" not in node:
            return {"anyOf": [node, {"type": "null"}]}
        kinds = node["type"] if isinstance(node["type"], list) else [node["type"]]
        node["type"] = [*kinds, "null"]
        if "enum" in node:
            node["enum"] = [*node["enum"], None]
    return node


@functools.lru_cache(maxsize=1)
def _registry() -> Registry:
    document = admit_null(json.loads(SPEC.read_text()))
    return Registry().with_resource(BASE, Resource.from_contents(document, default_specification=DRAFT202012))


@functools.lru_cache(maxsize=None)
def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator({"$ref": f"{BASE}#/components/schemas/{name}"}, registry=_registry())


def problems(instance: Any, name: str) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
            for e in validator(name).iter_errors(instance)]


def check(instance: Any, name: str) -> None:
    found = problems(instance, name)
    assert not found, f"not a valid {name}:\n  " + "\n  ".join(found[:10])
