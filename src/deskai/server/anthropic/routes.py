"""/v1/messages and /v1/messages/count_tokens (Anthropic's Messages API)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
