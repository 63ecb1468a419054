"""Server-sent events: ``data: {json}`` frames, ``data: [DONE]`` at the end, errors as a last event.

Errors found before the first byte is sent (a schema that does not compile, a prompt too long) still get a
proper HTTP status, because handlers wait for the request's first output before they start the stream.
Once streaming, an error can only travel in-band, as an OpenAI error object in a ``data:`` frame.
"""
from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator

from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from lightllm_struct.server.errors import sse_error

logger = logging.getLogger(__name__)

DONE = "data: [DONE]\n\n"


def sse_event(payload: BaseModel | dict) -> str:
    """One SSE frame; ``None`` fields are kept, as OpenAI's own chunks carry them (``"content": null``)."""
    if isinstance(payload, BaseModel):
        data = payload.model_dump_json()
    else:
        data = json.dumps(payload, ensure_ascii=False)
    return f"data: {data}\n\n"


async def _framed(events: AsyncIterator[str]) -> AsyncIterator[str]:
    try:
        async for event in events:
            yield event
    except Exception as exc:  # noqa: BLE001 -- an error mid-stream goes to the client, not up the stack
        logger.warning("stream failed: %s", exc)
        yield sse_error(exc)
    yield DONE


def sse_response(events: AsyncIterator[str]) -> StreamingResponse:
    """A ``text/event-stream`` response; closing the connection cancels ``events`` (and so aborts)."""
    return StreamingResponse(_framed(events), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
