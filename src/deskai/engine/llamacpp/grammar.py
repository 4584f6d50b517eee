"""Structured output → llama.cpp GBNF grammar, refusing what the grammar cannot enforce.

``compile_structured`` is the backend's half of the contract's ``StructuredOutput``: a JSON
schema (optionally "or plain text", for ``tool_choice: auto``), a regex, or GBNF as given.

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

from llama_cpp.llama_grammar import SchemaConverter, json_schema_to_gbnf

from deskai.engine.sampling import StructuredOutput
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
# "Or plain text": a JSON document, or text that does not open with ``{`` (so a parser can
# tell the two apart from the first character)
_JSON_OR_TEXT_ROOT = (
    'root ::= deskai-structured | free-text\n'
    'free-text ::= [^{ \\t\\n] [^\\x00]* | [ \\t\\n]+ [^{ \\t\\n] [^\\x00]*\n'
)


def compile_structured(structured: StructuredOutput) -> str:
    """The GBNF grammar that enforces ``structured`` (a 400 naming its field if it cannot)."""
    if structured.grammar is not None:
        return structured.grammar
    if structured.regex is not None:
        return regex_to_grammar(structured.regex, param=structured.field)
    assert structured.json_schema is not None
    schema = structured.json_schema
    if structured.lenient:
        schema = enforceable_part(schema)
    grammar = schema_to_grammar(schema, param=structured.field)
    if not structured.or_text:
        return grammar
    return _JSON_OR_TEXT_ROOT + grammar.replace("root ::=", "deskai-structured ::=", 1)


def regex_to_grammar(pattern: str, *, param: str) -> str:
    """A GBNF grammar whose language is ``pattern`` (matched whole), through llama.cpp's own
    regex translator (the one its JSON-schema ``pattern`` support uses)."""
    anchored = f"{'' if pattern.startswith('^') else '^'}{pattern}" \
               f"{'' if pattern.endswith('$') else '$'}"
    converter = SchemaConverter(prop_order={}, allow_fetch=False, dotall=False,
                                raw_pattern=True)
    try:
        converter._visit_pattern(anchored, "root")
    except Exception as exc:  # the translator raises assorted errors on what it cannot read
        raise InvalidInputError(f"invalid or unsupported regex: {exc}", param=param) from None
    return str(converter.format_grammar())


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


def enforceable_part(schema: Any) -> Any:
    """``schema`` with what the grammar cannot enforce left out (``minimum``, ``format:
    email``, a length beside a pattern…): looser than asked, never refused for it."""
    if not isinstance(schema, dict):
        return schema
    kept: dict[str, Any] = {}
    for key, value in schema.items():
        if key not in ENFORCED and key not in ANNOTATIONS:
            continue
        if key == "format" and value not in ENFORCED_FORMATS:
            continue
        if key in ("minLength", "maxLength") and "pattern" in schema:
            continue
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            value = {name: enforceable_part(sub) for name, sub in value.items()}
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            value = [enforceable_part(sub) for sub in value]
        elif key in {"items", "additionalProperties"}:
            value = enforceable_part(value)
        kept[key] = value
    return kept


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
