"""An embedding service in FastAPI with one resident membatch model.

The shape of the services membatch was made for: one model loaded once
per process and shared by every request, `/embed`, `/health` and
`/memory`, in a container with a memory limit. Refusals (a full queue,
critical memory) become 503 with `Retry-After` instead of the process
being killed; bad input becomes 422 with the reason.

    pip install ./crates/membatch-python fastapi uvicorn
    MEMBATCH_MAX_MEMORY=70% uvicorn examples.python.app:app --port 8000

    curl -s localhost:8000/embed -H 'content-type: application/json' \\
        -d '{"texts": ["a text", "another"]}'

Run one process per container (uvicorn without --workers, or gunicorn
without --preload): the model is made in the process that uses it.
"""

from __future__ import annotations

import math
import os
from contextlib import asynccontextmanager
from typing import AsyncIterator, List, Optional

from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

import membatch


class EmbedRequest(BaseModel):
    texts: List[str] = Field(..., description="The texts to embed.")
    prompt_name: Optional[str] = Field(None, description="One of the model's prompts.")
    dimensions: Optional[int] = Field(None, description="Keep the first N dimensions.")


class EmbedResponse(BaseModel):
    model: str
    dimension: int
    embeddings: List[List[float]]


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # One Service per process: loads the model on the first request and
    # merges concurrent requests into batches. MEMBATCH_* variables set
    # the rest (docs/configuration.md).
    app.state.service = membatch.Service(os.environ.get("EMBED_MODEL"))
    yield
    app.state.service.shutdown()


app = FastAPI(title="embeddings", lifespan=lifespan)


@app.exception_handler(membatch.Error)
async def membatch_error(request, exc: membatch.Error) -> JSONResponse:
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        # Overloaded, MemoryCritical: come back later.
        return JSONResponse(
            {"error": type(exc).__name__, "message": str(exc)},
            status_code=503,
            headers={"Retry-After": str(max(1, math.ceil(retry_after)))},
        )
    if isinstance(
        exc,
        (membatch.InvalidInput, membatch.InvalidConfig, membatch.RequestTooLarge, membatch.TextTooLong),
    ):
        return JSONResponse({"error": type(exc).__name__, "message": str(exc)}, status_code=422)
    if isinstance(exc, (membatch.MemoryLimitError, membatch.ServiceClosed)):
        return JSONResponse({"error": type(exc).__name__, "message": str(exc)}, status_code=503)
    return JSONResponse({"error": type(exc).__name__, "message": str(exc)}, status_code=500)


@app.post("/embed", response_model=EmbedResponse)
async def embed(req: EmbedRequest) -> EmbedResponse:
    if not req.texts:
        raise HTTPException(status_code=422, detail="texts is empty")
    service: membatch.Service = app.state.service
    vectors = await service.aencode(req.texts, prompt_name=req.prompt_name, dimensions=req.dimensions)
    return EmbedResponse(
        model=service.model,
        dimension=int(vectors.shape[1]),
        embeddings=vectors.tolist(),
    )


@app.get("/health")
async def health() -> dict:
    service: membatch.Service = app.state.service
    return {"status": "ok", "model": service.model_state}


@app.get("/memory")
async def memory() -> dict:
    return membatch.memory_report()
