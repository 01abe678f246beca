"""OpenAI's own published OpenAPI document (../shared/specs/openai-openapi.json, from
openai/openai-openapi) as a validator: `check(instance, "CreateChatCompletionResponse")` raises with
every failing path when the instance does not match the named component schema.

The document is OpenAPI 3.1.0 with no `jsonSchemaDialect`, so its schemas are JSON Schema 2020-12
(OpenAPI's default dialect); the OpenAPI-only keywords it uses (`discriminator`, `example`, the
`x-*` extensions) are annotations and ignored here, as `anyOf`/`oneOf` already decide validity.
It still marks ~110 schemas with OpenAPI 3.0's `nullable: true` (e.g. a stream chunk's
`finish_reason` and `usage`), which 2020-12 ignores; those are rewritten to admit null, as the
document means: `type` gains "null" (and `enum` gains null), or the schema becomes
`anyOf: [schema, {type: null}]` where it has no plain `type`. `format` is checked where jsonschema
can without extra packages (`date`, `uuid`, `email`, …; not `uri`)."""

from __future__ import annotations

import functools
import gzip
import json
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

# OpenAI's published document, vendored (gzip) so the suite runs from any checkout; its origin and
# licence are in specs/openai-openapi.SOURCE. Same file as ../shared/specs/openai-openapi.json.
SPEC = Path(__file__).resolve().parent / "specs" / "openai-openapi.json.gz"
BASE = "urn:openai-openapi"


def admit_null(node: Any) -> Any:
    if isinstance(node, list):
        return [admit_null(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: admit_null(value) for key, value in node.items()}
    if isinstance(node.get("nullable"), bool) and node.pop("nullable"):  # not a property named "nullable"
        if "$ref" in node or "allOf" in node or "type" not in node:
            return {"anyOf": [node, {"type": "null"}]}
        kinds = node["type"] if isinstance(node["type"], list) else [node["type"]]
        node["type"] = [*kinds, "null"]
        if "enum" in node:
            node["enum"] = [*node["enum"], None]
    return node


@functools.lru_cache(maxsize=1)
def _registry() -> Registry:
    document = admit_null(json.loads(gzip.decompress(SPEC.read_bytes())))
    return Registry().with_resource(BASE, Resource.from_contents(document, default_specification=DRAFT202012))


@functools.lru_cache(maxsize=None)
def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator({"$ref": f"{BASE}#/components/schemas/{name}"}, registry=_registry(),
                                format_checker=Draft202012Validator.FORMAT_CHECKER)


def problems(instance: Any, name: str) -> list[str]:
    """One line per error: the instance path, then the message (for anyOf/oneOf failures, the
    message of the closest branch, which says more than "is not valid under any given schema")."""
    found = []
    for error in sorted(validator(name).iter_errors(instance), key=lambda e: list(map(str, e.absolute_path))):
        deepest = best_match([error]) if error.context else error
        path = "/".join(map(str, deepest.absolute_path)) or "<root>"
        found.append(f"{path}: {deepest.message}")
    return found


def check(instance: Any, name: str) -> None:
    found = problems(instance, name)
    assert not found, f"not a valid {name}:\n  " + "\n  ".join(found[:10])
