"""POST /v1/responses, GET/DELETE /v1/responses/{id}, GET /v1/responses/{id}/input_items."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
