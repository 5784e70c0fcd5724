"""Reading an urlencoded form as a dependency, so page routes stay synchronous; and its whole-number fields."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.core.errors import StudioError


async def read_form(request: Request) -> dict[str, str]:
    """The text fields of the posted form (the last value wins for repeated names)."""
    form = await request.form()
    return {key: value for key, value in form.items() if isinstance(value, str)}


FormDep = Annotated[dict[str, str], Depends(read_form)]


def whole_number(form: dict[str, str], name: str) -> int:
    """A form field that must be a whole number (at most 10 digits); refused naming the field otherwise."""
    raw = form.get(name, "").strip()
    if not raw.isascii() or not raw.isdigit() or len(raw) > 10:
        raise StudioError("invalid", f"invalid_{name}", f"{name} must be a whole number.", field=name)
    return int(raw)
