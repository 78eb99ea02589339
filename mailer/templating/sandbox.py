"""The bounded Jinja2 sandbox that email templates run in (what the limits are and why:
mailer/templating/__init__.py): the budget of one render, the filters, the environment, and the
compile-time pass that refuses what can't be bounded and counts every loop and `~`."""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from jinja2 import StrictUndefined, nodes, pass_context, pass_eval_context
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.filters import FILTERS, do_join, do_replace
from jinja2.meta import find_undeclared_variables
from jinja2.runtime import Undefined, markup_join, str_join
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

MAX_SUBJECT_SOURCE_CHARS = 2_000
MAX_BODY_SOURCE_CHARS = 100_000  # each of text and html
MAX_VARIABLES_BYTES = 65_536  # as compact UTF-8 JSON
MAX_VARIABLES_DEPTH = 10  # the variables object is level 1
MAX_RANGE = 1_000
MAX_LOOP_ITERATIONS = 10_000  # per render, every loop of the three parts together
MAX_SEQUENCE_ITEMS = 10_000  # a list made by `+` or `*`
MAX_INT_BITS = 256  # an integer made by `*` or `**`
MAX_FORMAT_WIDTH = 1_000  # a width or precision in a `%` format
PARTS = ("subject", "text", "html")
SAFE_METHODS = frozenset(
    "upper lower title capitalize casefold swapcase strip lstrip rstrip startswith endswith "
    "split rsplit splitlines partition rpartition removeprefix removesuffix count find rfind "
    "index rindex isdigit isalpha isalnum isspace islower isupper istitle isdecimal isnumeric "
    "items keys values get".split()
)
REFUSED_STATEMENTS = {
    nodes.Macro: "macros", nodes.CallBlock: "call blocks", nodes.Block: "blocks",
    nodes.Extends: "extends", nodes.Include: "include", nodes.Import: "import",
    nodes.FromImport: "import",
}  # fmt: skip
_BUILTIN_TYPES = (str, list, dict, tuple, int, float)
_FORMAT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d*))?")


# The budget of one render -----------------------------------------------------------------


class OverBudget(Exception):
    """One of the bounds was passed; says which."""


class Missing(UndefinedError):
    """A value the template used is missing: its `name`, and the `owner` it was looked up in
    (Jinja's `missing` for a top-level variable)."""

    def __init__(self, message: str, name: Any, owner: Any) -> None:
        super().__init__(message)
        self.name, self.owner = name, owner


@dataclass
class Budget:
    iterations: int = MAX_LOOP_ITERATIONS
    chars: int = 0

    def charge(self, *, chars: int = 0, iterations: int = 0) -> None:
        self.iterations -= iterations
        self.chars -= chars
        if self.iterations < 0:
            raise OverBudget(f"more than {MAX_LOOP_ITERATIONS} loop iterations in one render")
        if self.chars < 0:
            raise OverBudget(f"more than {settings.MAX_MESSAGE_BYTES} characters produced")


BUDGET: ContextVar[Budget | None] = ContextVar("template_budget", default=None)


def _charge(*, chars: int = 0, iterations: int = 0) -> None:
    budget = BUDGET.get()
    if budget is None:  # compiling: never fold a counted operation into a constant
        raise nodes.Impossible()
    budget.charge(chars=chars, iterations=iterations)


def _size(value: Any) -> int:
    return len(value) if isinstance(value, str) else len(str(value))


def _finalize(value: Any) -> Any:
    """Every `{{ ... }}` output is counted (str() of an undefined value raises its error)."""
    _charge(chars=_size(value))
    return value


@pass_context
def _each(context, iterable, literal_chars: int):
    """What every loop iterates through (_Bounded wraps it in): one iteration and the loop
    body's literal text counted per item."""
    _charge()
    for item in iterable:
        _charge(iterations=1, chars=literal_chars)
        yield item


@pass_context
def _concat(context, items: list) -> str:
    """`a ~ b`, counted before it is joined; escaped like Jinja's own join when autoescaping."""
    _charge(chars=sum(_size(item) for item in items))
    return (markup_join if context.eval_ctx.autoescape else str_join)(items)


@pass_eval_context
def _bounded_join(eval_ctx, value, d: str = "", attribute=None):
    items = list(value)
    if attribute is not None:
        items = [eval_ctx.environment.getitem(item, attribute) for item in items]
    _charge(chars=sum(_size(i) for i in items) + len(str(d)) * max(0, len(items) - 1))
    return do_join(eval_ctx, items, d)


@pass_eval_context
def _bounded_replace(eval_ctx, s, old, new, count=None):
    text, old, new = str(s), str(old), str(new)
    found = len(text) + 1 if not old else text.count(old)
    if count is not None:
        found = min(found, max(0, int(count)))
    escaped = 6 if eval_ctx.autoescape else 1  # `"` becomes &#34;: at most six times longer
    _charge(chars=len(text) * escaped + found * len(new) * escaped)
    return do_replace(eval_ctx, s, old, new, count)


def _format(value, *args, **kwargs):
    """The `format` filter (printf-style), through the same bounds as the `%` operator."""
    return _modulo(str(value) if not isinstance(value, str) else value, kwargs or args)


def _modulo(left, right):
    if isinstance(left, str):
        for match in _FORMAT_SPEC.finditer(left):
            for number in match.groups():
                if number == "*" or (number and int(number) > MAX_FORMAT_WIDTH):
                    raise OverBudget(f"a format width or precision over {MAX_FORMAT_WIDTH}")
        result = left % right
        _charge(chars=len(result))
        return result
    return left % right


def _counted(filter_function: Callable) -> Callable:
    """A filter whose text result is counted (each allowed one grows text at most 6 times)."""

    @functools.wraps(filter_function)  # keeps jinja_pass_arg: the same arguments come first
    def counted(*args, **kwargs):
        result = filter_function(*args, **kwargs)
        if isinstance(result, str):
            _charge(chars=len(result))
        return result

    return counted


# Filters whose cost is bounded (batch, slice, center, indent, wordwrap, urlize, xmlattr,
# pprint and forceescape are not: each can make a huge value from a small one).
_ALLOWED_FILTERS = (
    "abs attr capitalize count d default dictsort e escape filesizeformat first float groupby "
    "int items last length list lower map max min random reject rejectattr reverse round safe "
    "select selectattr sort string striptags sum title tojson trim truncate unique upper "
    "urlencode wordcount"
).split()
_FILTERS = {name: _counted(FILTERS[name]) for name in _ALLOWED_FILTERS}
_FILTERS |= {"join": _bounded_join, "replace": _bounded_replace,
             "format": _format, "_each": _each, "_concat": _concat}  # fmt: skip


def _range(*args: int) -> range:
    numbers = range(*args)
    if len(numbers) > MAX_RANGE:
        raise OverBudget(f"range() may give at most {MAX_RANGE} numbers, not {len(numbers)}")
    return numbers


# The sandbox ------------------------------------------------------------------------------


class _StrictUndefined(StrictUndefined):
    """StrictUndefined whose error keeps which value was missing and where it was looked for,
    so the answer can name the variable; an unsafe attribute keeps the SecurityError."""

    __slots__ = ()

    def _fail_with_undefined_error(self, *args: Any, **kwargs: Any):
        if issubclass(self._undefined_exception, SecurityError):
            raise SecurityError(self._undefined_message)
        raise Missing(self._undefined_message, self._undefined_name, self._undefined_obj)


# Undefined's operators are bound to its own method object: point them at the override.
for _name, _value in {**vars(Undefined), **vars(StrictUndefined)}.items():
    if _value is Undefined._fail_with_undefined_error:
        setattr(_StrictUndefined, _name, _StrictUndefined._fail_with_undefined_error)


class _Sandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox with the bounds above (module docstring)."""

    intercepted_binops = frozenset({"+", "*", "**", "%"})

    def __init__(self, *, autoescape: bool) -> None:
        super().__init__(
            autoescape=autoescape,
            undefined=_StrictUndefined,
            finalize=_finalize,
            cache_size=0,
            auto_reload=False,
        )
        self.filters = dict(_FILTERS)
        self.globals.pop("lipsum", None)  # lipsum(n) writes n paragraphs
        self.globals["range"] = _range

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if not super().is_safe_attribute(obj, attr, value):
            return False
        return not (isinstance(obj, _BUILTIN_TYPES) and callable(value)) or attr in SAFE_METHODS

    def wrap_str_format(self, value: Any) -> None:
        return None  # str.format is not in SAFE_METHODS (its widths are unbounded): refused

    def unsafe_undefined(self, obj: Any, attribute: str) -> Undefined:
        if attribute.startswith("_"):
            why = "names starting with '_' are private"
        else:
            why = "of the methods of text, lists and dicts only simple ones such as upper(), "
            why += "strip() and split() may be called (use the filters)"
        return self.undefined(
            f"access to {attribute!r} of a {type(obj).__name__} is not allowed: {why}",
            name=attribute,
            obj=obj,
            exc=SecurityError,
        )

    def call_binop(self, context, operator: str, left: Any, right: Any) -> Any:
        if operator == "%":
            return _modulo(left, right)
        if operator == "*":
            _check_product(left, right)
        elif operator == "**":
            _check_power(left, right)
        result = self.binop_table[operator](left, right)
        if operator == "+" and isinstance(result, str):
            _charge(chars=len(result))
        if isinstance(result, list | tuple) and len(result) > MAX_SEQUENCE_ITEMS:
            raise OverBudget(f"a list of more than {MAX_SEQUENCE_ITEMS} items")
        return result


def _check_product(left: Any, right: Any) -> None:
    for sequence, times in ((left, right), (right, left)):
        if isinstance(sequence, str | list | tuple) and isinstance(times, int):
            if isinstance(sequence, str):
                _charge(chars=len(sequence) * max(0, times))
            elif len(sequence) * times > MAX_SEQUENCE_ITEMS:
                raise OverBudget(f"a list of more than {MAX_SEQUENCE_ITEMS} items")
            return
    if isinstance(left, int) and isinstance(right, int):
        if left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise OverBudget(f"an integer of more than {MAX_INT_BITS} bits")


def _check_power(base: Any, exponent: Any) -> None:
    if isinstance(base, int) and isinstance(exponent, int) and abs(base) > 1 and exponent > 0:
        if exponent * math.log2(abs(base)) > MAX_INT_BITS:
            raise OverBudget(f"an integer of more than {MAX_INT_BITS} bits")


_ENVIRONMENTS = {False: _Sandbox(autoescape=False), True: _Sandbox(autoescape=True)}


class _Bounded(NodeTransformer):
    """Collects what can't be bounded (REFUSED_STATEMENTS, recursive loops, and attributes the
    sandbox would refuse, written out), and routes every loop and `~` through the budget."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def refuse(self, node: nodes.Node, problem: str) -> None:
        self.problems.append(f"line {node.lineno}: {problem}")

    def visit(self, node: nodes.Node, *args: Any, **kwargs: Any) -> Any:
        if what := REFUSED_STATEMENTS.get(type(node)):
            self.refuse(node, f"{what} can't be used in an email template.")
        return super().visit(node, *args, **kwargs)

    def visit_Getattr(self, node: nodes.Getattr) -> nodes.Node:
        if node.attr.startswith("_"):
            self.refuse(node, f"{node.attr!r} is not allowed: names starting with '_' are private.")
        return self.generic_visit(node)

    def visit_Getitem(self, node: nodes.Getitem) -> nodes.Node:
        key = node.arg.value if isinstance(node.arg, nodes.Const) else None
        if isinstance(key, str) and key.startswith("_"):
            self.refuse(node, f"{key!r} is not allowed: names starting with '_' are private.")
        return self.generic_visit(node)

    def visit_For(self, node: nodes.For) -> nodes.Node:
        if node.recursive:
            self.refuse(node, "recursive loops can't be used in an email template.")
        node = self.generic_visit(node)
        literal = sum(len(data.data) for data in node.find_all(nodes.TemplateData))
        node.iter = nodes.Filter(
            node.iter, "_each", [nodes.Const(literal)], [], None, None, lineno=node.lineno
        )
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        node = self.generic_visit(node)
        items = nodes.List(node.nodes, lineno=node.lineno)
        return nodes.Filter(items, "_concat", [], [], None, None, lineno=node.lineno)


class Refused(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@functools.lru_cache(maxsize=128)
def compiled(source: str, html: bool):
    """(jinja2 Template, top-level variable names it uses) for a source; TemplateSyntaxError
    or Refused. Cached: a template sent many times is compiled once per process."""
    environment = _ENVIRONMENTS[html]
    checker = _Bounded()
    tree = checker.visit(environment.parse(source))
    if checker.problems:
        raise Refused(checker.problems)
    tree.set_environment(environment)
    names = frozenset(find_undeclared_variables(tree) - set(environment.globals))
    code = environment.compile(tree)
    globals_ = environment.make_globals(None)
    return environment.template_class.from_code(environment, code, globals_, None), names
