"""Malformed tool calls: repaired when the intent is unambiguous, rejected otherwise.

Small models wrap JSON in code fences, add prose around it, leave trailing commas or write
Python literals with single quotes. ``loads_lenient`` undoes exactly those (never by guessing
at content); ``check_arguments`` then holds the result to the tool's JSON schema (required
keys, no unknown keys, the declared types). A call that fails either step is rejected whole:
nothing of it runs, and the model is told why.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Mapping
from typing import Any

_FENCE = re.compile(r"^\s*```[A-Za-z0-9_-]*\s*\n?(.*?)\n?\s*```\s*$", re.DOTALL)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")
_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
}


def loads_lenient(text: str) -> Any:
    """The JSON value in ``text`` after the safe repairs, or None when there is none."""
    candidates = [text.strip()]
    fenced = _FENCE.match(text)
    if fenced:
        candidates.append(fenced.group(1).strip())
    braced = _first_object(text)
    if braced:
        candidates.append(braced)
    for cand in candidates:
        for attempt in (cand, _TRAILING_COMMA.sub(r"\1", cand)):
            try:
                return json.loads(attempt)
            except (json.JSONDecodeError, RecursionError):
                pass
            try:  # single-quoted keys and strings, True/False/None: literals only, no code
                value = ast.literal_eval(attempt)
            except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
                continue
            if isinstance(value, dict):
                return value
    return None


def _first_object(text: str) -> str:
    """The first balanced ``{...}`` in ``text`` (strings respected), or ""."""
    start = text.find("{")
    if start < 0:
        return ""
    depth, in_str, escaped = 0, "", False
    for k in range(start, len(text)):
        ch = text[k]
        if in_str:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == in_str:
                in_str = ""
        elif ch in "\"'":
            in_str = ch
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[start : k + 1]
    return ""


def check_arguments(args: object, schema: Mapping[str, Any]) -> str | None:
    """Why ``args`` does not fit the tool's parameter schema, or None when it does."""
    if not isinstance(args, dict):
        return "arguments must be a JSON object"
    props: Mapping[str, Any] = schema.get("properties", {})
    missing = [k for k in schema.get("required", ()) if k not in args]
    if missing:
        return f"missing required argument{'s' if len(missing) > 1 else ''}: {', '.join(missing)}"
    if schema.get("additionalProperties") is False:
        unknown = sorted(str(k)[:40] for k in args if k not in props)
        if unknown:
            return f"unknown argument{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}"
    for key, value in args.items():
        want = props.get(key, {}).get("type")
        types = _TYPES.get(want) if isinstance(want, str) else None
        if types is None:
            continue
        if isinstance(value, bool) and bool not in types:
            return f"argument {key!r} must be {want}"
        if not isinstance(value, types):
            return f"argument {key!r} must be {want}"
    return None
