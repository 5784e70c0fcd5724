"""Reading an urlencoded form as a dependency, so page routes stay synchronous."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request


async def read_form(request: Request) -> dict[str, str]:
    """The text fields of the posted form (the last value wins for repeated names)."""
    form = await request.form()
    return {key: value for key, value in form.items() if isinstance(value, str)}


FormDep = Annotated[dict[str, str], Depends(read_form)]
