"""YAML that expands when built: the specs' bomb tests share it."""

from __future__ import annotations

# The classic "billion laughs", ~400 bytes: 9 levels of nine aliases each expand to 9^9 (387 million) strings.
ALIAS_BOMB = "\n".join(
    ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    + [f"{b}: &{b} [{','.join(['*' + a] * 9)}]" for a, b in zip("abcdefgh", "bcdefghi", strict=True)]
    + ["name: *i"]
)
# The same growth through merge keys (<<): each level merges the one below and lists it eight times.
MERGE_BOMB = "\n".join(
    ["a: &a {x0: lol, x1: lol, x2: lol, x3: lol}"]
    + [f"{b}: &{b} {{<<: *{a}, y{i}: [*{a}, *{a}, *{a}, *{a}, *{a}, *{a}, *{a}, *{a}]}}"
       for i, (a, b) in enumerate(zip("abcdefgh", "bcdefghi", strict=True))]
    + ["lora: {target_modules: *i}"]
)
