"""Token log-probabilities in OpenAI's two shapes: chat's ``content`` list, completions' table."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from deskai.engine.types import TokenLogprobs
from deskai.server.openai.models import (
    ChatLogprobs,
    CompletionLogprobs,
    TokenLogprob,
    TopLogprob,
)

TokenBytes = Callable[[int], bytes]


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


def to_chat_logprobs(entries: Sequence[TokenLogprobs], token_bytes: TokenBytes) -> ChatLogprobs:
    content = []
    for entry in entries:
        raw = token_bytes(entry.token)
        top = [TopLogprob(token=_text(token_bytes(t)), logprob=lp, bytes=list(token_bytes(t)))
               for t, lp in entry.top]
        content.append(TokenLogprob(token=_text(raw), logprob=entry.logprob, bytes=list(raw),
                                    top_logprobs=top))
    return ChatLogprobs(content=content)


def to_completion_logprobs(entries: Sequence[TokenLogprobs], token_bytes: TokenBytes,
                           *, with_top: bool) -> CompletionLogprobs:
    tokens = [_text(token_bytes(entry.token)) for entry in entries]
    offsets, position = [], 0
    for token in tokens:
        offsets.append(position)
        position += len(token)
    top = ([{_text(token_bytes(t)): lp for t, lp in entry.top} for entry in entries]
           if with_top else None)
    return CompletionLogprobs(tokens=tokens, token_logprobs=[e.logprob for e in entries],
                              top_logprobs=top, text_offset=offsets)
