"""Text that may reach a header, a database or a JSON parser: the characters each may hold, and
JSON (request bodies, metadata) walked without recursion, within its depth and size limits."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from django.conf import settings

# Characters -----------------------------------------------------------------------------------

# Unicode category Cc (C0, DEL, C1: NEL is U+0085), Zl (U+2028), Zp (U+2029) and lone surrogates.
# Header-bound text may hold none of them, except TAB in a header value or the subject.
_UNSAFE_STRICT = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_UNSAFE_HEADER = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
# Anywhere else (bodies, metadata): no NUL (no database stores it in text) and valid Unicode.
_UNSAFE_ANYWHERE = re.compile(r"[\x00\ud800-\udfff]")
_LINE_BREAKS = "\r\n\x85\u2028\u2029"


def _describe(char: str) -> str:
    code = f"U+{ord(char):04X}"
    if char in _LINE_BREAKS:
        return f"a line break ({code})"
    if char == "\x00":
        return f"a NUL character ({code})"
    if "\ud800" <= char <= "\udfff":
        return f"a lone surrogate ({code}), which is not valid Unicode"
    return f"a control character ({code})"


def _found(pattern: re.Pattern, value: str) -> str | None:
    match = pattern.search(value)
    return _describe(match.group()) if match else None


def control_character(value: str, *, allow_tab: bool = False) -> str | None:
    """What makes `value` unfit for a header, an address or a name ("a line break (U+000A)",
    "a NUL character (U+0000)", ...), or None: Cc (TAB only if allowed), Zl, Zp, surrogates."""
    return _found(_UNSAFE_HEADER if allow_tab else _UNSAFE_STRICT, value)


def invalid_text(value: str) -> str | None:
    """What text may hold nowhere (a NUL, a lone surrogate), or None."""
    return _found(_UNSAFE_ANYWHERE, value)


def show(value: str, limit: int = 60) -> str:
    """A value for an error message: quoted, escaped, and cut short when long."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}… ({len(value)} characters)"


# JSON -----------------------------------------------------------------------------------------


def json_too_deep_message() -> str:
    return (
        f"The JSON body is nested more than {settings.MAX_JSON_DEPTH} levels deep; "
        "send flatter JSON."
    )


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether objects/arrays nest more than `limit` levels (the outermost is level 1).
    Iterative: no recursion, however deep the value."""
    stack = [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def json_depth_problem(data: Any, raw: bytes | str = b"") -> str | None:
    """A message when parsed JSON nests deeper than MAX_JSON_DEPTH, else None. With the raw
    text, a body with few brackets is passed without walking it."""
    limit = settings.MAX_JSON_DEPTH
    if raw:
        opening = (b"[", b"{") if isinstance(raw, bytes) else ("[", "{")
        if raw.count(opening[0]) + raw.count(opening[1]) <= limit:
            return None
    if _deeper_than(data, limit):
        return json_too_deep_message()
    return None


def parse_json(raw: bytes | str) -> Any:
    """json.loads for a request body: ValueError with a reason for invalid JSON, and for
    nesting deeper than MAX_JSON_DEPTH (never a RecursionError)."""
    try:
        data = json.loads(raw)
    except RecursionError:
        raise ValueError(json_too_deep_message()) from None
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError among them
        raise ValueError(f"The body is not valid JSON: {exc}.") from None
    if problem := json_depth_problem(data, raw):
        raise ValueError(problem)
    return data


def metadata_problem(metadata: Any) -> str | None:
    """Metadata must be a JSON object within the size, depth and key limits, holding only
    finite numbers and text without NUL or lone surrogates. Walks it once, iteratively, and
    stops at the first limit passed."""
    if not isinstance(metadata, dict):
        return "Metadata must be a JSON object."
    max_depth, max_keys = settings.MAX_METADATA_DEPTH, settings.MAX_METADATA_KEYS
    max_bytes = settings.MAX_METADATA_BYTES
    keys = items = 0
    stack: list[tuple[Any, int, str]] = [(metadata, 1, "metadata")]
    while stack:
        value, depth, where = stack.pop()
        items += 1
        if items > max_bytes:  # every item takes at least a byte of JSON
            break
        if isinstance(value, dict | list):
            if depth > max_depth:
                return (
                    f"Metadata may nest at most {max_depth} levels deep (the metadata object "
                    f"is level 1); {where} is level {depth}."
                )
            if isinstance(value, list):
                if items + len(value) > max_bytes:
                    items = max_bytes + 1
                    break
                stack.extend((v, depth + 1, f"{where}[{i}]") for i, v in enumerate(value))
                continue
            keys += len(value)
            if keys > max_keys:
                return f"Metadata may have at most {max_keys} keys, counted through nested objects."
            for key, child in value.items():
                if not isinstance(key, str):
                    return f"Metadata keys must be text; {where} has {key!r}."
                if problem := invalid_text(key):
                    return f"The metadata key {show(key)} contains {problem}."
                stack.append((child, depth + 1, f"{where}.{key[:40]}"))
        elif isinstance(value, str):
            if problem := invalid_text(value):
                return f"{where} contains {problem}."
        elif isinstance(value, float):
            if not math.isfinite(value):
                return f"{where} is {value!r}; JSON has no NaN or Infinity: send a number."
        elif value is not None and not isinstance(value, int):  # int includes bool
            return f"{where} is a {type(value).__name__}; use JSON values only."
    size = items  # a lower bound: every item takes at least a byte
    if size <= max_bytes:
        try:
            size = len(json.dumps(metadata, ensure_ascii=False, separators=(",", ":")).encode())
        except (ValueError, RecursionError):
            size = max_bytes + 1
    if size > max_bytes:
        return f"Metadata may be at most {max_bytes} bytes as JSON."
    return None
