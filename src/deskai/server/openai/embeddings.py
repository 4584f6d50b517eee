"""POST /v1/embeddings: a list of inputs embedded in batches by an embedding model."""

from __future__ import annotations

import asyncio
import base64

import numpy as np
from fastapi import APIRouter, Request

from deskai.errors import InvalidInputError
from deskai.server.generation import leased_model, manager_of
from deskai.server.openai.models import (
    EmbeddingData,
    EmbeddingList,
    EmbeddingRequest,
    EmbeddingUsage,
)

router = APIRouter()


def embedding_inputs(raw: str | list[str] | list[int] | list[list[int]]
                     ) -> list[str] | list[list[int]]:
    """OpenAI's four input shapes → a list of texts or a list of token arrays."""
    if isinstance(raw, str):
        return [raw]
    if all(isinstance(item, int) for item in raw):
        return [list(raw)]  # type: ignore[arg-type]
    return list(raw)  # type: ignore[arg-type]


def encode_vector(vector: np.ndarray, encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":  # little-endian float32, as OpenAI sends it
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return [float(x) for x in vector]


@router.post("/v1/embeddings", response_model=EmbeddingList)
async def create_embeddings(body: EmbeddingRequest, request: Request) -> EmbeddingList:
    async with leased_model(manager_of(request), body.model) as loaded:
        dimensions = loaded.facts.embedding_dimensions
        if body.dimensions is not None and dimensions and body.dimensions != dimensions:
            raise InvalidInputError(f"{loaded.name} makes {dimensions}-dimensional "
                                    "embeddings; it cannot shorten them", param="dimensions")
        result = await asyncio.to_thread(loaded.embed, embedding_inputs(body.input))
    request.state.prompt_tokens = result.prompt_tokens
    data = [EmbeddingData(index=i, embedding=encode_vector(v, body.encoding_format))
            for i, v in enumerate(result.vectors)]
    return EmbeddingList(data=data, model=body.model,
                         usage=EmbeddingUsage(prompt_tokens=result.prompt_tokens,
                                              total_tokens=result.prompt_tokens))
