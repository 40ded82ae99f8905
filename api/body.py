"""Reading request bodies and query strings into pydantic models."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from api.errors import Unprocessable, validation_items

M = TypeVar("M", bound=BaseModel)


async def parse_body(request: web.Request, model: type[M]) -> M:
    """The JSON body validated as `model`.

    Malformed JSON, a body that is not UTF-8 or an empty body gives a 422 item of type
    `json_invalid`; a body over the size limit gives 413 (raised by aiohttp while reading).
    """
    raw = await request.read()
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise Unprocessable(validation_items(exc)) from None


def parse_query(query: Mapping[str, str], model: type[M]) -> M:
    """Query parameters validated as `model` (the model decides how strings convert)."""
    try:
        return model.model_validate(dict(query))
    except ValidationError as exc:
        raise Unprocessable(validation_items(exc, prefix="query")) from None
