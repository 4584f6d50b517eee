from __future__ import annotations

import pytest

from deskai.errors import InvalidModelNameError
from deskai.store import ModelName, parse_model_name


@pytest.mark.parametrize(("text", "path", "tag"), [
    ("gemma3", "gemma3", "latest"),
    ("gemma3:270m", "gemma3", "270m"),
    ("user/model:q4_K_M", "user/model", "q4_K_M"),
    ("hf.co/org/repo:Q8_0", "hf.co/org/repo", "Q8_0"),
    ("llama3.2:1b-instruct", "llama3.2", "1b-instruct"),
])
def test_valid_names_parse(text: str, path: str, tag: str) -> None:
    name = parse_model_name(text)
    assert (name.path, name.tag) == (path, tag)
    assert ModelName.from_filename(name.filename) == name


@pytest.mark.parametrize("text", [
    "", "   ", "..", "../x", "a/../b", "/etc/passwd", "a//b", "./a", "a:", ":tag", "a:b/c",
    "a\x00b", "a\nb", "x" * 300, "a:..", ".hidden", "a b", "a:tag:more/x", "-flag",
])
def test_names_that_could_escape_are_refused(text: str) -> None:
    with pytest.raises(InvalidModelNameError):
        parse_model_name(text)


def test_filenames_are_flat_and_distinct() -> None:
    names = ["a:b", "a/b", "a/b:latest", "a:b.json", "a/b.json"]
    filenames = {parse_model_name(n).filename for n in names}
    assert all("/" not in f for f in filenames)
    assert len(filenames) == len({str(parse_model_name(n)) for n in names})
