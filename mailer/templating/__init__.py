"""Stored email templates rendered safely: Jinja2's sandbox with every cost bounded, no DB.

Templates are code written by an account, run on our workers, so (README: HTTP API):
- Sandboxed (jinja2.sandbox.ImmutableSandboxedEnvironment): no underscore attributes, no
  mutation of lists or dicts, and of the methods of text, lists and dicts only SAFE_METHODS.
  An attempt is a SecurityError: TemplateUnsafe, refused when saved if it is written out.
- Strict: a variable the template uses and the variables lack is an error naming it.
- Escaped: the HTML part autoescapes, the subject and the text part do not.
- Bounded: sources (MAX_SUBJECT_SOURCE_CHARS, MAX_BODY_SOURCE_CHARS) and variables
  (MAX_VARIABLES_BYTES, MAX_VARIABLES_DEPTH) are capped; range() gives at most MAX_RANGE
  items; one render may run MAX_LOOP_ITERATIONS loop iterations in all and produce at most
  MAX_MESSAGE_BYTES characters, counted as it goes (every output, `~`, `+`, `*`, `%` and
  filter result, and each iteration's literal text); integers stay under MAX_INT_BITS; macros,
  blocks, includes, imports and recursive loops (unbounded recursion) are refused when saved.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from jinja2.exceptions import SecurityError, TemplateError, TemplateSyntaxError
from jinja2.utils import missing

from mailer.errors import InvalidInput, MessageTooLarge
from mailer.validation import control_character, invalid_text

from .sandbox import (
    BUDGET,
    MAX_BODY_SOURCE_CHARS,
    MAX_LOOP_ITERATIONS,
    MAX_RANGE,
    MAX_SUBJECT_SOURCE_CHARS,
    MAX_VARIABLES_BYTES,
    MAX_VARIABLES_DEPTH,
    PARTS,
    Budget,
    Missing,
    OverBudget,
    Refused,
    compiled,
)

NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]{0,99}")  # a template's name
NAME_HELP = (
    "1 to 100 characters: lower-case letters, digits, '.', '_' and '-', starting with a "
    "letter or a digit (e.g. welcome, order-shipped.v2)."
)

__all__ = [
    "MAX_BODY_SOURCE_CHARS",
    "MAX_LOOP_ITERATIONS",
    "MAX_RANGE",
    "MAX_SUBJECT_SOURCE_CHARS",
    "MAX_VARIABLES_BYTES",
    "MAX_VARIABLES_DEPTH",
    "NAME_HELP",
    "NAME_PATTERN",
    "PARTS",
    "Rendered",
    "TemplateInvalid",
    "TemplateRenderFailed",
    "TemplateTooExpensive",
    "TemplateUnsafe",
    "TemplateVariableMissing",
    "check_variables",
    "render",
    "source_problems",
    "variable_names",
]


class TemplateInvalid(InvalidInput):
    """A template can't be saved: `errors` names each bad field (name, subject, text, html)."""


class TemplateUnsafe(InvalidInput):
    """The template reached for something the sandbox forbids (jinja2's SecurityError)."""


class TemplateVariableMissing(InvalidInput):
    """The template uses a variable the request did not give; `errors` names it
    (`variables.first_name`)."""


class TemplateTooExpensive(InvalidInput):
    """Rendering went past one of the bounds above; `errors` names the part."""


class TemplateRenderFailed(InvalidInput):
    """The template failed while rendering (a type error, division by zero, ...)."""


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str

    def parts(self) -> dict[str, str]:
        """subject, text and html as an email's fields (mailer.validation.OutgoingEmail)."""
        return {"subject": self.subject, "text": self.text, "html": self.html}


# Checking and rendering -------------------------------------------------------------------


def source_problems(part: str, source: str) -> list[str]:
    """What keeps `source` from being saved as the template's `part` (subject, text or html):
    its size, characters, syntax (with the line) and what the sandbox can't bound."""
    limit = MAX_SUBJECT_SOURCE_CHARS if part == "subject" else MAX_BODY_SOURCE_CHARS
    if not isinstance(source, str):
        return ["must be text."]
    if len(source) > limit:
        return [f"is {len(source)} characters long; at most {limit} are allowed."]
    if problem := (control_character(source, allow_tab=True) if part == "subject" else None):
        return [f"must be one line: it contains {problem}."]
    if problem := invalid_text(source):
        return [f"contains {problem}."]
    try:
        compiled(source, part == "html")
    except TemplateSyntaxError as exc:
        return [f"line {exc.lineno}: {exc.message}"]
    except Refused as exc:
        return exc.problems
    return []


def variable_names(source: str, *, html: bool = False) -> list[str]:
    """The top-level variables a template source uses, sorted ([] if it does not compile)."""
    try:
        return sorted(compiled(source, html)[1]) if source else []
    except (TemplateSyntaxError, Refused):
        return []


def check_variables(variables: Any) -> None:
    """InvalidInput naming `variables` unless it is a JSON object of text, numbers, booleans,
    null, lists and objects, within MAX_VARIABLES_DEPTH and MAX_VARIABLES_BYTES."""
    problem = _variables_problem(variables)
    if problem:
        raise InvalidInput({"variables": [problem]})


def _variables_problem(variables: Any) -> str | None:
    if not isinstance(variables, dict):
        return 'must be a JSON object, like {"first_name": "Ann"}.'
    stack: list[tuple[Any, int, str]] = [(variables, 1, "variables")]
    seen = 0
    while stack:
        value, depth, where = stack.pop()
        seen += 1
        if seen > MAX_VARIABLES_BYTES:  # every value takes at least a byte of JSON
            return f"may be at most {MAX_VARIABLES_BYTES} bytes as JSON."
        if isinstance(value, dict | list):
            if depth > MAX_VARIABLES_DEPTH:
                return f"may nest at most {MAX_VARIABLES_DEPTH} levels deep; {where} is deeper."
            if isinstance(value, list):
                stack.extend((v, depth + 1, f"{where}[{i}]") for i, v in enumerate(value))
                continue
            for key, child in value.items():
                if not isinstance(key, str) or invalid_text(key):
                    return f"{where} has a key that is not valid text: {key!r}."
                stack.append((child, depth + 1, f"{where}.{key[:40]}"))
        elif isinstance(value, str):
            if problem := invalid_text(value):
                return f"{where} contains {problem}."
        elif isinstance(value, float) and not math.isfinite(value):
            return f"{where} is {value!r}; JSON has no NaN or Infinity."
        elif value is not None and not isinstance(value, int | float):  # bool is an int
            return f"{where} is a {type(value).__name__}; use JSON values only."
    size = len(json.dumps(variables, ensure_ascii=False, separators=(",", ":")).encode())
    if size > MAX_VARIABLES_BYTES:
        return f"may be at most {MAX_VARIABLES_BYTES} bytes as JSON; these are {size}."
    return None


def render(*, subject: str, text: str, html: str, variables: dict[str, Any]) -> Rendered:
    """The three parts rendered with `variables`, within one budget (module docstring).
    Raises InvalidInput subclasses naming what went wrong: the variables, or the part and its
    line (TemplateInvalid, TemplateUnsafe, TemplateVariableMissing, TemplateTooExpensive,
    TemplateRenderFailed); MessageTooLarge past MAX_MESSAGE_BYTES."""
    check_variables(variables)
    token = BUDGET.set(Budget(chars=settings.MAX_MESSAGE_BYTES))
    try:
        sources = {"subject": subject, "text": text, "html": html}
        out = {part: _render_part(part, source, variables) for part, source in sources.items()}
    finally:
        BUDGET.reset(token)
    if problem := control_character(out["subject"], allow_tab=True):
        raise TemplateRenderFailed(
            {"subject": [f"The rendered subject contains {problem}; a subject is one line."]}
        )
    if len(out["subject"]) > settings.MAX_SUBJECT_CHARS:
        message = (
            f"The rendered subject is {len(out['subject'])} characters long; at most "
            f"{settings.MAX_SUBJECT_CHARS} are allowed."
        )
        raise TemplateRenderFailed({"subject": [message]})
    size = sum(len(value.encode()) for value in out.values())
    if size > settings.MAX_MESSAGE_BYTES:
        message = f"The rendered email is {size} bytes; at most {settings.MAX_MESSAGE_BYTES}."
        raise MessageTooLarge({"template": [message]}, message=message)
    return Rendered(**out)


def _render_part(part: str, source: str, variables: dict[str, Any]) -> str:
    if not source:
        return ""
    if problems := source_problems(part, source):
        raise TemplateInvalid({part: problems})
    template = compiled(source, part == "html")[0]
    try:
        return template.render(variables)
    except Missing as exc:
        key = _variable_path(variables, exc.owner, exc.name)
        where = f"{part}, line {_line(exc)}"
        if key is None:
            raise TemplateVariableMissing(
                {"variables": [f"missing: the template reads {exc.name!r} of a value without it"]},
                message=f"{where}: {exc}.",
            ) from None
        raise TemplateVariableMissing(
            {key: ["missing: the template uses it"]},
            message=f"{where}: the template uses {key}, which the variables don't have.",
        ) from None
    except SecurityError as exc:
        raise TemplateUnsafe({part: [f"line {_line(exc)}: {exc}"]}) from None
    except OverBudget as exc:
        raise TemplateTooExpensive({part: [f"line {_line(exc)}: {exc}."]}) from None
    except (TemplateError, ArithmeticError, LookupError, TypeError, ValueError) as exc:
        # The template's own mistake (1 + "a", a division by zero): the author can fix it.
        raise TemplateRenderFailed({part: [f"line {_line(exc)}: {exc}"]}) from None
    except RecursionError:
        raise TemplateTooExpensive({part: ["it nests too deeply to render."]}) from None


def _line(exc: BaseException) -> int | str:
    """The template line an error was raised at (Jinja rewrites the traceback to it)."""
    line: int | str = "?"
    frame = exc.__traceback__
    while frame is not None:
        if frame.tb_frame.f_code.co_filename == "<template>":
            line = frame.tb_lineno
        frame = frame.tb_next
    return line


def _variable_path(variables: dict[str, Any], owner: Any, name: Any) -> str | None:
    """`variables.user.first_name` for a missing `name` looked up in `owner`: the variables
    themselves when the owner is Jinja's `missing`, else the value of the variables that is
    the owner (by identity); None when the owner is not one of them."""
    if owner is missing:
        return f"variables.{name}"
    stack: list[tuple[Any, str]] = [(variables, "variables")]
    while stack:
        value, path = stack.pop()
        if value is owner:
            return f"{path}[{name}]" if isinstance(name, int) else f"{path}.{name}"
        children = value.items() if isinstance(value, dict) else enumerate(value)
        for key, child in children:
            if isinstance(child, dict | list):
                stack.append((child, f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}"))
    return None
