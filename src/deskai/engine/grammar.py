"""JSON Schema → llama.cpp GBNF grammar, refusing what the grammar cannot enforce.

llama-cpp-python's ``json_schema_to_gbnf`` (a port of llama.cpp's converter) builds the
grammar; but like llama.cpp and vLLM it silently drops keywords it does not understand, so a
schema asking for ``"minimum": 0`` would get negative numbers. deskai walks the schema first
and refuses, with the JSON path of the offending keyword, anything outside the set the grammar
really enforces. What passes is guaranteed: the output parses and validates.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from llama_cpp.llama_grammar import json_schema_to_gbnf

from deskai.errors import InvalidInputError

# Keywords the converter turns into grammar rules.
ENFORCED = frozenset({
    "type", "properties", "required", "additionalProperties", "items", "prefixItems",
    "minItems", "maxItems", "enum", "const", "anyOf", "$ref", "$defs", "definitions",
    "pattern", "minLength", "maxLength", "format",
})
# Keywords that say nothing about validity.
ANNOTATIONS = frozenset({
    "title", "description", "default", "examples", "$schema", "$id", "$comment",
    "deprecated", "readOnly", "writeOnly", "strict",
})
ENFORCED_FORMATS = frozenset({"date", "time", "date-time", "uuid", "uuid1", "uuid2", "uuid3",
                              "uuid4", "uuid5"})
_SCHEMA_MAPS = ("properties", "$defs", "definitions")
_SCHEMA_LISTS = ("anyOf", "prefixItems")

JSON_OBJECT_SCHEMA: dict[str, Any] = {"type": "object"}


def unsupported_keywords(schema: Any, path: str = "$") -> Iterator[str]:
    """Yield ``path: keyword`` for every part of ``schema`` the grammar would not enforce."""
    if isinstance(schema, bool):
        if schema is False:
            yield f"{path}: false (a schema nothing matches)"
        return
    if not isinstance(schema, dict):
        yield f"{path}: is not a schema object"
        return
    for key, value in schema.items():
        if key in ANNOTATIONS:
            continue
        if key not in ENFORCED:
            yield f"{path}: {key}"
        elif key == "format" and value not in ENFORCED_FORMATS:
            yield f"{path}: format {value!r}"
        elif key in _SCHEMA_MAPS and isinstance(value, dict):
            for name, sub in value.items():
                yield from unsupported_keywords(sub, f"{path}.{key}.{name}")
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            for index, sub in enumerate(value):
                yield from unsupported_keywords(sub, f"{path}.{key}[{index}]")
        elif key in {"items", "additionalProperties"} and isinstance(value, dict):
            yield from unsupported_keywords(value, f"{path}.{key}")
    if "pattern" in schema and ("minLength" in schema or "maxLength" in schema):
        yield f"{path}: minLength/maxLength together with pattern"


def schema_to_grammar(schema: dict[str, Any], *, param: str = "response_format") -> str:
    """A GBNF grammar that accepts exactly the JSON documents ``schema`` describes."""
    if not isinstance(schema, dict):
        raise InvalidInputError("a JSON schema must be an object", param=param)
    problems = list(unsupported_keywords(schema))
    if problems:
        raise InvalidInputError(
            "this JSON schema uses features deskai cannot enforce while generating, so it "
            f"refuses rather than ignore them: {'; '.join(problems[:8])}", param=param)
    try:
        return str(json_schema_to_gbnf(json.dumps(schema)))
    except Exception as exc:  # the converter raises assorted errors on odd schemas
        raise InvalidInputError(f"invalid JSON schema: {exc}", param=param) from None
