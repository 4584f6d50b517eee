"""Property-based fuzz of every route's body (hypothesis) over the real app and a fake engine:
surrogates, Unicode digits, huge and non-finite numbers, deep nesting, wrong types. Whatever
arrives, the answer is never a 5xx."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import FAKE_MODEL, AppThread, fake_serving
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROUTES: dict[str, tuple[str, ...]] = {
    "/v1/completions": ("prompt", "max_tokens", "temperature", "top_p", "top_k", "min_p",
                        "seed", "stop", "stream", "n", "logprobs", "logit_bias",
                        "presence_penalty", "grammar", "structured_outputs"),
    "/v1/chat/completions": ("messages", "max_tokens", "max_completion_tokens", "temperature",
                             "stop", "stream", "tools", "tool_choice", "response_format",
                             "logprobs", "top_logprobs", "n", "seed", "stream_options"),
    "/v1/embeddings": ("input", "dimensions", "encoding_format"),
    "/api/generate": ("prompt", "system", "raw", "format", "options", "keep_alive", "stream",
                      "context", "images", "think"),
    "/api/chat": ("messages", "tools", "format", "options", "keep_alive", "stream"),
    "/api/embed": ("input", "keep_alive", "dimensions"),
    "/api/embeddings": ("prompt", "keep_alive"),
    "/api/show": ("verbose",),
    "/api/copy": ("source", "destination"),
}

NASTY_TEXT = st.sampled_from(["\ud800", "x\udfff", "²", "٣", "", " ", "{", "../../etc",
                              "a" * 300, "0", "-1", "1e309", "NaN", "null", "true"])
NUMBERS = st.one_of(st.integers(min_value=-(10**30), max_value=10**30),
                    st.sampled_from([10**400, -(10**400), 2**63, 1e308]),
                    st.floats(allow_nan=True, allow_infinity=True))
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, NASTY_TEXT, st.text(max_size=20))


# "@list:N@" stands for [[[..."x"...]]] and "@schema:N@" for {"items": {"items": ... {}}},
# N deep: written into the JSON text, since hypothesis cannot print (nor shrink) such values
DEEP = re.compile(r'"@(list|schema):(\d+)@"')
OPEN_CLOSE = {"list": ("[", '"x"', "]"), "schema": ('{"items": ', "{}", "}")}


def with_deep_nesting(content: str) -> str:
    def expand(match: re.Match[str]) -> str:
        opening, middle, closing = OPEN_CLOSE[match.group(1)]
        depth = int(match.group(2))
        return opening * depth + middle + closing * depth
    return DEEP.sub(expand, content)


SCHEMA_FIELDS = {"response_format": lambda v: {"type": "json_schema", "json_schema": {
    "schema": v}}, "format": lambda v: v, "structured_outputs": lambda v: {"json": v},
    "tools": lambda v: [{"type": "function", "function": {"name": "f", "parameters": v}}]}

VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.one_of(NASTY_TEXT, st.text(max_size=8)),
                                               children, max_size=4)),
    max_leaves=12,
) | (DEEP_VALUES := st.builds("@{}:{}@".format, st.sampled_from(list(OPEN_CLOSE)),
                                 st.integers(min_value=50, max_value=5000)))


# a valid request for each route; each example changes one or two of its fields
VALID = {"model": FAKE_MODEL, "prompt": "hi", "messages": [{"role": "user", "content": "hi"}],
         "input": "hi", "source": FAKE_MODEL, "destination": "copy:1"}


def nasty(name: str) -> st.SearchStrategy[Any]:
    """Nasty values for ``name``; where it holds a JSON schema, in the schema's place too."""
    wrap = SCHEMA_FIELDS.get(name)
    if wrap is None:
        return VALUES
    return st.one_of(VALUES, VALUES.map(wrap), DEEP_VALUES.map(wrap))


def body_for(fields: tuple[str, ...]) -> st.SearchStrategy[dict[str, Any]]:
    names = ("model", *fields)
    base = {name: VALID[name] for name in names if name in VALID}
    change = st.sampled_from(names).flatmap(
        lambda name: nasty(name).map(lambda value: {name: value}))
    return st.lists(change, min_size=1, max_size=2).map(
        lambda changes: {**base, **{k: v for c in changes for k, v in c.items()}})


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppThread]:
    with fake_serving(tmp_path_factory.mktemp("fuzz") / "home") as (app, _):
        yield app


@pytest.mark.parametrize("path", list(ROUTES))
def test_no_body_gets_a_5xx(server: AppThread, path: str, tmp_path: Path) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as http:

        @settings(max_examples=150, deadline=None,
                  suppress_health_check=[HealthCheck.function_scoped_fixture,
                                         HealthCheck.too_slow])
        @given(body=body_for(ROUTES[path]))
        def check(body: dict[str, Any]) -> None:
            # NaN/Infinity: Python's JSON parser reads them, so a server meets them
            content = with_deep_nesting(json.dumps(body, allow_nan=True))
            response = http.post(path, content=content)
            assert response.status_code < 500, (response.status_code, response.text[:300])

        check()
