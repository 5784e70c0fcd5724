"""Work that sibling layers reading one input share: computed once per input tensor, each layer handed its part."""

from __future__ import annotations

from typing import Any

import torch


class PerInputParts:
    """Subclasses compute every member's part from an input at once (compute); part() hands each member its own.

    A member called with another tensor than the one its group computed for gets a fresh computation, so no layer
    ever gets another input's part, and once every member took its part nothing is held past the block.
    """

    def __init__(self, members: list[Any]) -> None:
        self.members = members
        self._input: torch.Tensor | None = None
        self._parts: dict[int, torch.Tensor] = {}

    def compute(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every member's part for input x, in the order of members."""
        raise NotImplementedError

    def part(self, member: Any, x: torch.Tensor) -> torch.Tensor:
        if x is not self._input or id(member) not in self._parts:
            parts = self.compute(x)
            self._input, self._parts = x, {id(m): p for m, p in zip(self.members, parts, strict=True)}
        part = self._parts.pop(id(member))
        if not self._parts:
            self._input = None  # every member took its part: hold no activations past the block
        return part
