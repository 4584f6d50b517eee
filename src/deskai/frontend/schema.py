"""Is a JSON schema one that output could ever match? Checked before any backend compiles it.

A schema that breaks JSON Schema's own rules (``maxLength: -1``, ``required: "a"``) is refused
with jsonschema's meta-schema check; one that is well-formed but unsatisfiable (``minItems``
above ``maxItems``) would make a constrained model spin until ``max_tokens`` — refused too.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from deskai.errors import InvalidInputError

MAX_SCHEMA_DEPTH = 64  # deeper is no schema a person wrote; validators recurse per level
# (lower, upper) keyword pairs whose order a satisfiable schema keeps
_RANGES = (("minItems", "maxItems"), ("minLength", "maxLength"),
           ("minProperties", "maxProperties"), ("minimum", "maximum"),
           ("minContains", "maxContains"))


def check_schema(schema: Any, *, field: str) -> None:
    """Raise a 400 naming ``field`` unless ``schema`` is a valid, satisfiable JSON schema."""
    if not isinstance(schema, dict):
        raise InvalidInputError("a JSON schema must be an object", param=field)
    if _depth(schema) > MAX_SCHEMA_DEPTH:
        raise InvalidInputError(f"this JSON schema nests deeper than {MAX_SCHEMA_DEPTH} "
                                "levels", param=field)
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "".join(f"[{p!r}]" for p in exc.absolute_path) or "the schema"
        raise InvalidInputError(f"invalid JSON schema at {where}: {exc.message}",
                                param=field) from None
    problems = list(_empty_ranges(schema, "$"))
    if problems:
        raise InvalidInputError(f"this JSON schema matches nothing: {'; '.join(problems[:4])}",
                                param=field)


def _depth(value: Any) -> int:
    """How deeply ``value`` nests, counted without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
    return deepest


def _empty_ranges(schema: Any, path: str) -> Iterator[str]:
    if isinstance(schema, list):
        for index, item in enumerate(schema):
            yield from _empty_ranges(item, f"{path}[{index}]")
        return
    if not isinstance(schema, dict):
        return
    for low, high in _RANGES:
        if isinstance(schema.get(low), int | float) and isinstance(schema.get(high), int | float) \
                and schema[low] > schema[high]:
            yield f"{path}: {low} {schema[low]} > {high} {schema[high]}"
    for key, value in schema.items():
        if isinstance(value, dict | list) and key not in ("enum", "const", "examples", "default"):
            yield from _empty_ranges(value, f"{path}.{key}")
