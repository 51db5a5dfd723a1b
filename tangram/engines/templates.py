"""jinja2 in its sandbox: the one template language of the platform.

Notification texts (``tangram.engines.notify``), print templates
(``tangram.engines.printing``) and the templates of app packages are written
by app builders, so they run in jinja2's :class:`SandboxedEnvironment`: a
template reads the variables it is given and nothing else. This module owns
that environment, so every user of templates refuses the same escapes
(``''.__class__.__mro__``, ``record.__init__.__globals__``) with the same
clear error, and reports syntax errors with their line.

Every render has a time budget (``RENDER_SECONDS``): each loop step, call,
``{% set %}`` and printed value checks it, so a runaway template (``{% for i
in range(100000) %}{% for j in range(100000) %}…``) stops with
:class:`RenderTooLong` instead of running for hours. Nothing is computed
when a template is only compiled (no constant folding: ``{{ 'a' * 100000000
}}`` costs nothing to check), and a repetition or power too large to compute
is refused when it runs — so is a width, padding or precision past
``MAX_WIDTH`` (``'%0100000000d' % 1``, ``'{:>100000000}'.format(x)``,
``'x'.center(100000000)``, ``|indent``, ``|tojson(indent)``, ``|batch(n,
fill)``), before Python builds the string.

No value a template builds may be larger than ``MAX_SIZE`` characters, nor a
list longer than ``MAX_ITEMS`` items: doubling a text a few times (``{% set a
= a ~ a %}``), or one ``s.replace('x', s)``, ``sep.join(items)``, ``%`` or
``format`` with a long value used many times, would otherwise ask for
gigabytes in one step. Wherever the size of a step's result follows from its
operands (``~``, ``+``, ``*``, ``%``, ``format``, ``replace``, ``join``,
``|wordwrap``, ``|slice``, ``|list``, ``lipsum``, a list turned into text) it
is refused before it is built; the result of any other call or filter (which
can only grow a text by a bounded factor: ``|forceescape``, ``.upper()``) is
measured as soon as it is made, so nothing past the limit is kept (a text
with Markup escaping, which grows by up to 6 characters for one, too).

Nor may one render build more than ``MAX_RENDER_SIZE`` characters and
``MAX_RENDER_ITEMS`` list items in all: every value a step above makes (and
a slice, a macro's output, a list's new items) counts once, when it is made,
so a loop keeping a new long text each step stops long before it holds
gigabytes.

    env = sandbox(html=True)
    problem = template_problem("{{ ''.__class__ }}")  # "line 1: … '__class__' …"
"""

from __future__ import annotations

import json
import operator
import re
import time
import types
from collections.abc import Callable, ItemsView, Iterable, Iterator, Mapping, Sized
from contextvars import ContextVar
from decimal import Decimal
from functools import update_wrapper
from itertools import chain, islice
from typing import Any

from jinja2 import (
    ChainableUndefined,
    StrictUndefined,
    TemplateError,
    TemplateRuntimeError,
    TemplateSyntaxError,
    Undefined,
    UndefinedError,
    nodes,
    pass_context,
    pass_environment,
    pass_eval_context,
)
from jinja2 import filters as jinja_filters
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.runtime import BlockReference, Context, LoopContext, Macro
from jinja2.sandbox import SandboxedEnvironment, SandboxedEscapeFormatter, SandboxedFormatter
from jinja2.utils import Namespace, generate_lorem_ipsum
from markupsafe import Markup, soft_str

from tangram.errors import DefinitionInvalid

__all__ = ["MAX_ITEMS", "MAX_RENDER_ITEMS", "MAX_RENDER_SIZE", "MAX_REPEAT", "MAX_SIZE",
           "MAX_WIDTH", "RENDER_SECONDS",
           "RenderTooLong", "SecurityError", "TemplateError", "TemplateInvalid",
           "TemplateSyntaxError", "UndefinedError",
           "endless_recursion", "loads_templates", "record_fields_read", "sandbox",
           "template_problem", "unsafe_access"]

# Seconds of CPU one render may take (print templates, notification and
# action texts alike); documented in docs/print.md. A real print renders in
# milliseconds; the PDF layout that follows is not counted. CPU time of the
# rendering thread, not the wall clock: a busy server must not turn a
# template that renders on a quiet one into an error.
RENDER_SECONDS = 1.0
# Longest string or list ``*`` may build, and the largest integer ``**`` may
# (in bits): past these a single operation would take seconds or gigabytes,
# which no deadline can interrupt.
MAX_REPEAT = 1_000_000
MAX_POWER_BITS = 100_000
# Characters of width, padding and precision one formatting operation may ask
# for, all its fields together: ``'%0100000000d' % 1`` is 100 MB built in one
# step, just as ``'a' * 100000000``; so are ``'{0:>900000}' * 120`` formatted
# once, tab stops, ``|indent`` on every line and ``|tojson`` indentation.
MAX_WIDTH = MAX_REPEAT
# Largest text a template may build, in characters — also what one print may
# produce (``printing.render.MAX_OUTPUT`` is this), so nothing larger could be
# printed anyway — and longest list, in items. A real template's values are a few
# thousand characters; a step past these would take gigabytes at once.
MAX_SIZE = 10_000_000
MAX_ITEMS = MAX_REPEAT
# What one render may build in all, its values together: characters of text
# and items of lists (tuples, dicts, sets). The limits above are per value, so
# a loop keeping a new 10 MB text each step (``{{ keep.append(s ~ '') }}``)
# would otherwise hold gigabytes before the time budget stops it. Every value
# a step makes counts once, when it is made, even if it is dropped soon after:
# at most 100-400 MB of text (1-4 bytes a character) and 80 MB of references.
# A dense 1,000-row print builds about 1 million characters and 100,000 items
# (tests/unit/test_template_totals.py measures it); 100 times that is room
# for templates that build far more than they print.
MAX_RENDER_SIZE = 10 * MAX_SIZE
MAX_RENDER_ITEMS = 10 * MAX_ITEMS


class TemplateInvalid(DefinitionInvalid):
    """A template does not parse, or uses something the sandbox refuses."""

    code = "template_invalid"


class RenderTooLong(TemplateRuntimeError):
    """A render used up its time budget, or asked for a value too large to build.
    A jinja2 runtime error, so every renderer reports it like a template that
    failed on its values."""


def _check_deadline(eval_ctx: Any) -> None:
    if time.thread_time() > eval_ctx.deadline:
        raise RenderTooLong(f"the template ran for more than {RENDER_SECONDS:g} s and was "
                            "stopped (a loop that does not end, or one over too many items?)")


class _Built:
    """What one render has built so far (see MAX_RENDER_SIZE)."""

    __slots__ = ("items", "size")

    def __init__(self) -> None:
        self.size = self.items = 0


# The totals of the render running in this thread (or task): the steps that
# build values are called without the render's context (``concat``, methods
# handed out by ``getattr``), so they find its totals here.
_BUILT: ContextVar[_Built | None] = ContextVar("tangram_template_built", default=None)


class _BudgetedContext(Context):
    """Starts the render's clock and its totals of what it builds. A derived
    context (a scoped block, a call in a loop) shares its parent's eval
    context, and so its deadline and totals."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.eval_ctx.deadline = time.thread_time() + RENDER_SECONDS  # type: ignore[attr-defined]
        self.eval_ctx.built = built = _Built()  # type: ignore[attr-defined]
        _BUILT.set(built)

    def derived(self, locals: dict[str, Any] | None = None) -> Context:  # noqa: A002
        # jinja2 makes it as a new context (whose __init__ started totals of
        # its own), then gives it this one's eval context.
        context = super().derived(locals)
        _BUILT.set(self.eval_ctx.built)  # type: ignore[attr-defined]
        return context


@pass_eval_context
def _budgeted(eval_ctx: Any, items: Iterable[Any]) -> Iterator[Any]:
    """What every ``{% for %}`` iterates: its items, checking the clock per step."""
    for item in items:
        _check_deadline(eval_ctx)
        yield item


@pass_eval_context
def _finalize(eval_ctx: Any, value: Any) -> Any:
    # Needing the eval context also keeps jinja2 from evaluating constant
    # output (``{{ 'a' * 100000000 }}``) while compiling, i.e. when saving.
    _check_deadline(eval_ctx)
    if _is_container(value):  # a list printed: its text is made at once
        _refuse_size(f"printing a {type(value).__name__}", _text_size(value))
    return value


def _sized_parts(parts: tuple[Any, ...]) -> tuple[Any, ...]:
    """The parts of ``a ~ b ~ …``, measured before they are joined (the text
    made is measured again, and counted, by ``_made``)."""
    size = 0
    for part in parts:
        size += len(part) if isinstance(part, str) else _text_size(part)
    _refuse_size("'~'", size)
    return parts


_OUTPUT = "the output of the template (or of a macro, {% set %} or {% filter %} block)"


def _concat(parts: Iterable[str]) -> str:
    """``"".join`` of the output of a render, a macro or a block, refused
    past MAX_SIZE before it is joined, and counted into the render's totals."""
    if isinstance(parts, list):
        kept = parts
        size = sum(map(len, parts))
        _refuse_size(_OUTPUT, size)
    else:
        kept = []
        size = 0
        for part in parts:
            size += len(part)
            _refuse_size(_OUTPUT, size, or_more=True)
            kept.append(part)
    _spend_size(_OUTPUT, size)
    return "".join(kept)


def _refuse_width(what: str, width: int) -> None:
    if width > MAX_WIDTH:
        raise RenderTooLong(f"{what} asks for {width:,} characters of width, padding or "
                            f"precision; one operation may ask for at most {MAX_WIDTH:,}")


def _refuse_size(what: str, size: int, *, or_more: bool = False) -> None:
    if size > MAX_SIZE:
        raise RenderTooLong(f"{what} would make a text of {size:,} characters"
                            f"{' or more' * or_more}; a template may build texts of at most "
                            f"{MAX_SIZE:,}")


def _refuse_items(what: str, items: int, *, or_more: bool = False) -> None:
    if items > MAX_ITEMS:
        raise RenderTooLong(f"{what} would make a list of {items:,} items{' or more' * or_more}; "
                            f"a template may build lists of at most {MAX_ITEMS:,}")


def _spend_size(what: str, size: int) -> None:
    """Counts a text of ``size`` characters, made by ``what``, into the
    render's total; refused past MAX_RENDER_SIZE."""
    built = _BUILT.get()
    if built is not None:
        built.size += size
        if built.size > MAX_RENDER_SIZE:
            raise RenderTooLong(f"{what} brings the texts this render has built to "
                                f"{built.size:,} characters; one render may build at most "
                                f"{MAX_RENDER_SIZE:,} in all (print long texts as you go, "
                                "instead of keeping or rebuilding them)")


def _spend_items(what: str, items: int) -> None:
    """Counts ``items`` list (tuple) items, made by ``what``, into the
    render's total; refused past MAX_RENDER_ITEMS. An entry of a dict or set
    counts as ``_ENTRY_ITEMS``."""
    built = _BUILT.get()
    if built is not None:
        built.items += items
        if built.items > MAX_RENDER_ITEMS:
            raise RenderTooLong(f"{what} brings the list items this render has built to "
                                f"{built.items:,}; one render may build at most "
                                f"{MAX_RENDER_ITEMS:,} in all")


_TEXTS = (str, bytes, bytearray)
_ITEMS_VIEW: type[ItemsView[Any, Any]] = type({}.items())
_CONTAINERS: tuple[type[Iterable[Any]] | type[Namespace], ...] = (
    list, tuple, dict, Namespace, set, frozenset, type({}.keys()), type({}.values()), _ITEMS_VIEW)
_LEAVES = (str, int, float, Decimal)  # most values: told apart from containers at once


def _is_container(value: Any) -> bool:
    return not isinstance(value, _LEAVES) and isinstance(value, _CONTAINERS)


_SIZED = (*_TEXTS, list, tuple)
_COLLECTIONS = (list, tuple, dict, set, frozenset)  # made with items, counted as such
# An entry of a dict or set takes about as much memory as 6 items of a list
# (50 bytes: its hash, key and value, and the table's spare room).
_ENTRY_ITEMS = 6
_MADE = (*_TEXTS, *_COLLECTIONS, Namespace)  # what ``_made`` measures


def _made(what: str, value: Any) -> Any:
    """``value``, just made by a step (a call, a filter, an operator, a
    slice): refused if past the limits of one value — those whose size could
    not be told before the step ran stop here, and go no further — and
    counted into the render's totals."""
    if isinstance(value, _TEXTS):
        if len(value) > MAX_SIZE:  # (a call the fewer for every value made)
            _refuse_size(what, len(value))
        _spend_size(what, len(value))
    elif isinstance(value, _COLLECTIONS):
        _refuse_items(what, len(value))
        _spend_items(what, len(value) if isinstance(value, list | tuple)
                     else _ENTRY_ITEMS * len(value))
    elif isinstance(value, Namespace):  # ``namespace(d)`` copies ``d``
        _made(what, value._Namespace__attrs)  # type: ignore[attr-defined]
    return value


# More arguments than a call written out has: ``f(*items)``, ``f(**d)`` made
# them into a new tuple or dict, which ``cycler`` or a ``|map`` keeps.
_WRITTEN_ARGUMENTS = 32


def _spread(what: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Counts the arguments of a call with more than _WRITTEN_ARGUMENTS."""
    _spend_items(f"the arguments of {what}", len(args) + len(kwargs))


def _made_each(what: str, values: Iterable[Any]) -> Iterator[Any]:
    """``values``, each made afresh (the lists of ``|batch``), counted as made."""
    for value in values:
        yield _made(what, value)


def _parts(value: Any) -> Iterator[Any] | None:
    """What a container prints (a dict: its keys and values), or None."""
    if isinstance(value, list | tuple):
        return iter(value)
    if isinstance(value, dict):
        return chain.from_iterable(value.items())
    if isinstance(value, _ITEMS_VIEW):  # its pairs are made afresh: count what they hold
        return chain.from_iterable(value)
    if isinstance(value, Namespace):
        return _parts(value._Namespace__attrs)  # type: ignore[attr-defined]
    if isinstance(value, _CONTAINERS):
        return iter(value)
    return None


def _scalar_size(value: Any) -> int:
    if isinstance(value, int):  # digits: a bit is less than a third of one
        return value.bit_length() // 3 + 2
    if isinstance(value, float):
        return 24
    try:
        return len(str(value))  # a date, a Decimal, a record (its title), …
    except Exception:  # StrictUndefined: the step itself will say so
        return 0


def _text_size(value: Any, limit: int = MAX_SIZE) -> int:
    """About how many characters ``value`` makes as text: a text its length,
    a number its digits, a list, tuple, dict or namespace one per item plus
    the items' sizes — each time an item appears, as it prints each time (a
    list holding one long text a thousand times). Counting stops past
    ``limit``; a container or value met again is counted from memory, so the
    cost is one step per distinct item, less than printing it."""
    if isinstance(value, _TEXTS):
        return len(value)
    top = None if isinstance(value, _LEAVES) else _parts(value)
    if top is None:
        return _scalar_size(value)
    known: dict[int, int] = {}
    stack: list[list[Any]] = [[id(value), top, 0]]  # [id, items left, size so far]
    counting = {id(value)}
    total = 0  # everything counted so far: the size is at least this
    while True:
        frame = stack[-1]
        for item in frame[1]:
            if isinstance(item, _TEXTS):
                size = len(item)
            elif isinstance(item, int | float):
                size = _scalar_size(item)
            else:
                key = id(item)
                if key in known:
                    size = known[key]
                elif key in counting:  # a list inside itself prints as [...]
                    size = 5
                else:
                    parts = _parts(item)
                    if parts is not None:
                        frame[2] += 1
                        total += 1
                        stack.append([key, parts, 0])
                        counting.add(key)
                        break
                    size = known[key] = _scalar_size(item)
            frame[2] += 1 + size
            total += 1 + size
            if total > limit:
                return total
        else:
            stack.pop()
            counting.discard(frame[0])
            known[frame[0]] = frame[2]
            if not stack:
                return int(frame[2])
            stack[-1][2] += frame[2]


def _listed(values: Any, what: str) -> list[Any] | tuple[Any, ...]:
    """``values`` as a list, refused past MAX_ITEMS items — of an iterator,
    no more than that many are taken."""
    if isinstance(values, list | tuple):
        items = values
    elif isinstance(values, Sized):
        _refuse_items(what, len(values))
        items = list(values)  # type: ignore[call-overload]
    else:
        items = list(islice(values, MAX_ITEMS + 1))
        _refuse_items(what, len(items), or_more=True)
    return items


def _joined_size(items: list[Any] | tuple[Any, ...], separator: int) -> int:
    """Characters of ``items`` joined with a separator of that length."""
    n = len(items)
    return _text_size(items, MAX_SIZE + n) - n + separator * max(n - 1, 0)


def _shown(text: str | bytes | bytearray) -> str:
    """A format for an error message: a long one is cut short."""
    return repr(text) if len(text) <= 40 else repr(text[:36]) + "…"


def _number(digits: str) -> int:
    # More than 18 digits is too wide anyway; int() would refuse past 4300.
    return int(digits) if len(digits) <= 18 else 10 ** 18


def _printf_sizes(fmt: str | bytes | bytearray, values: Any) -> tuple[int, int]:
    """The widths and precisions of a printf-style format together, a ``*``
    read from ``values`` as Python reads it (``'%*d' % (width, n)``); and
    about how long its text is: the format's own text, each value formatted
    (a text or list by its size, so nothing is built), and those widths."""
    text = fmt if isinstance(fmt, str) else bytes(fmt).decode("latin-1")
    args = values if isinstance(values, tuple) else (values,)
    width = index = i = 0
    n = size = len(text)
    while (i := text.find("%", i) + 1) > 0:
        start = i - 1
        if text.startswith("%", i):  # "%%"
            i += 1
            size -= 1
            continue
        key = None
        if text.startswith("(", i):  # "%(name)…", parentheses nest
            depth = 0
            while i < n:
                depth += {"(": 1, ")": -1}.get(text[i], 0)
                i += 1
                if depth == 0:
                    break
            key = text[start + 2:i - 1]
        while i < n and text[i] in "-+ #0":
            i += 1
        for precision in (False, True):
            if precision:
                if not text.startswith(".", i):
                    break
                i += 1
            if text.startswith("*", i):
                i += 1
                value = args[index] if index < len(args) else None
                index += 1
                if isinstance(value, int):  # a negative width pads on the right
                    width += max(value, 0) if precision else abs(value)
            else:
                digits = i
                while i < n and "0" <= text[i] <= "9":
                    i += 1
                if i > digits:
                    width += _number(text[digits:i])
        while i < n and text[i] in "hlL":
            i += 1
        conversion = text[i:i + 1]
        i += 1
        size -= i - start  # the specifier is replaced by its value
        if key is None:
            value = args[index] if index < len(args) else _MISSING
            index += 1
        else:
            try:
                value = values[key if isinstance(fmt, str) else key.encode("latin-1")]
            except Exception:  # not a mapping, or no such key: Python says so
                value = _MISSING
        size += _formatted_size(value, conversion)
    return width, size + width


_MISSING = object()


def _formatted_size(value: Any, conversion: str) -> int:
    if value is _MISSING:
        return 0
    if isinstance(value, _TEXTS + _CONTAINERS):
        return _text_size(value)
    try:  # a number or a date: as Python formats it (a few thousand digits at most)
        return len(f"%{conversion}" % (value,))
    except Exception:
        return 0


def _check_printf(fmt: str | bytes | bytearray, values: Any) -> None:
    width, size = _printf_sizes(fmt, values)
    _refuse_width(f"{_shown(fmt)} % …", width)
    _refuse_size(f"{_shown(fmt)} % …", size)


_SPEC_NUMBER = re.compile(r"\d+")  # Python reads any decimal digits in a format spec


class _WidthCheckingFormatter(SandboxedFormatter):
    """``str.format``/``format_map`` in the sandbox, refusing fields whose
    specs (``{:>100000000}``, ``{0:>{1}}`` with its width filled in) add up to
    more than MAX_WIDTH. Every number of a spec counts: width, precision, and
    digits of a date's spec alike (none of which a real template makes large).
    The fields' text is counted as they are made, a list measured before it
    is turned into text, so ``('{0}' * 1000).format(s)`` stops once it passes
    MAX_SIZE (the format's own text, no longer than that, is added after)."""

    def vformat(self, format_string: str, args: Any, kwargs: Any) -> str:
        self.source = format_string
        self.width = self.size = 0
        return super().vformat(format_string, args, kwargs)

    def _refuse_container(self, value: Any) -> None:
        """A list turned into text: measured before it is."""
        if _is_container(value):
            _refuse_size(f"{_shown(self.source)}.format(…)", self.size + _text_size(value))

    def convert_field(self, value: Any, conversion: str | None) -> Any:
        if conversion is not None:
            self._refuse_container(value)
        return super().convert_field(value, conversion)

    def format_field(self, value: Any, format_spec: str) -> Any:
        self.width += sum(map(_number, _SPEC_NUMBER.findall(format_spec)))
        _refuse_width(f"{_shown(self.source)}.format(…)", self.width)
        self._refuse_container(value)
        text = super().format_field(value, format_spec)
        self.size += len(text)
        _refuse_size(f"{_shown(self.source)}.format(…)", self.size)
        return text


class _WidthCheckingEscapeFormatter(_WidthCheckingFormatter, SandboxedEscapeFormatter):
    """The same checks for autoescaped templates (values escaped as formatted)."""


def _checked_format(env: SandboxedEnvironment, text: str,
                    method: Callable[..., Any]) -> Callable[..., str]:
    """jinja2's ``wrap_str_format`` with our formatter: the same checks of the
    fields' attributes, plus the widths."""
    formatter: _WidthCheckingFormatter
    if isinstance(text, Markup):
        formatter = _WidthCheckingEscapeFormatter(env, escape=text.escape)
    else:
        formatter = _WidthCheckingFormatter(env)
    is_format_map = method.__name__ == "format_map"

    def wrapper(*args: Any, **kwargs: Any) -> str:
        if is_format_map:
            if kwargs:
                raise TypeError("format_map() takes no keyword arguments")
            if len(args) != 1:
                raise TypeError(f"format_map() takes exactly one argument ({len(args)} given)")
            kwargs, args = args[0], ()
        return type(text)(formatter.vformat(text, args, kwargs))

    return update_wrapper(wrapper, method)


_PADDING_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})


def _checked_padding(text: str | bytes | bytearray, method: Callable[..., Any]
                     ) -> Callable[..., Any]:
    """``text.center(width)`` and its kin, refusing a width past MAX_WIDTH
    (``expandtabs``: its tab size times the tabs)."""
    name = method.__name__

    def checked(*args: Any, **kwargs: Any) -> Any:
        size = args[0] if args else kwargs.get("tabsize", 8) if name == "expandtabs" else None
        if isinstance(size, int):  # anything else: the method's own error
            if name == "expandtabs":
                tabs = text.count("\t") if isinstance(text, str) else text.count(b"\t")
                _refuse_width(f"expandtabs({size}) of {tabs:,} tabs", size * tabs)
            else:
                _refuse_width(f"{name}({size})", size)
        return method(*args, **kwargs)

    return update_wrapper(checked, method)


def _replace_size(text: str | bytes | bytearray, old: Any, new: Any, count: Any = -1) -> int:
    """Length of ``text.replace(old, new, count)``; the occurrences are
    counted only when the result could pass MAX_SIZE."""
    if not (isinstance(old, _TEXTS) and isinstance(new, _TEXTS) and isinstance(count, int)):
        return 0  # the method's own error
    grow = len(new) - len(old)
    if grow <= 0:
        return len(text)
    most = len(text) // len(old) + 1 if old else len(text) + 1
    if len(text) + min(most, count if count >= 0 else most) * grow > MAX_SIZE:
        try:
            most = text.count(old)  # type: ignore[arg-type]
        except TypeError:
            return 0
    return len(text) + min(most, count if count >= 0 else most) * grow


def _translate_size(text: str, table: Any) -> int:
    """At most the length of ``text.translate(table)``: a character mapped to
    a longer text grows by it each time it occurs."""
    if not isinstance(table, dict | list | tuple):
        return len(text)
    longer = [(key, len(value)) for key, value in
              (table.items() if isinstance(table, dict) else enumerate(table))
              if isinstance(value, str) and len(value) > 1]
    if not longer:
        return len(text)
    bound = len(text) * max(size for _, size in longer)
    if bound <= MAX_SIZE or len(longer) > 64:
        return bound
    return len(text) + sum(text.count(chr(key)) * (size - 1) for key, size in longer
                           if isinstance(key, int) and 0 <= key < 0x110000)


_LINE_BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"


def _split_parts(text: str | bytes | bytearray, name: str, *args: Any, **kwargs: Any
                 ) -> int | None:
    """How many parts ``text.split(…)`` (``rsplit``, ``splitlines``) makes,
    when a cheap count tells; None when only splitting tells."""
    if name == "splitlines":
        if isinstance(text, str):
            return sum(text.count(c) for c in _LINE_BREAKS) - text.count("\r\n") + 1
        return text.count(b"\n") + text.count(b"\r") - text.count(b"\r\n") + 1
    sep = args[0] if args else kwargs.get("sep")
    most = args[1] if len(args) > 1 else kwargs.get("maxsplit", -1)
    if not isinstance(most, int) or 0 <= most < MAX_ITEMS:
        return 0  # few parts, or the method's own error
    if sep is None:
        return None
    try:
        return text.count(sep) + 1  # type: ignore[arg-type]
    except TypeError:
        return 0


def _checked_text_method(text: str | bytes | bytearray, method: Callable[..., Any]
                         ) -> Callable[..., Any]:
    """``replace``, ``join``, ``translate`` and the ``split`` family of a
    text, refusing a result past the limits before it is made."""
    name = method.__name__
    what = f"{name}()"

    def checked(*args: Any, **kwargs: Any) -> Any:
        try:
            if name == "replace":
                _refuse_size(what, _replace_size(text, *args, **kwargs))
            elif name == "join" and len(args) == 1:
                items = _listed(args[0], what)
                _refuse_size(what, _joined_size(items, len(text)))
                args = (items,)
            elif name == "translate" and isinstance(text, str):
                _refuse_size(what, _translate_size(text, *args, **kwargs))
            elif name in _SPLIT_METHODS:
                # New texts, the list's items (counted by ``call``), of at most
                # the text's characters in all.
                _spend_size(what, len(text))
                if len(text) >= MAX_ITEMS:  # a shorter one has fewer parts
                    parts = _split_parts(text, name, *args, **kwargs)
                    if parts is None:  # on whitespace: split no more than that
                        parts_made = method(None, MAX_ITEMS)
                        _refuse_items(what, len(parts_made), or_more=True)
                        return parts_made
                    _refuse_items(what, parts)
        except TypeError:
            pass  # arguments the method refuses: it says so below
        return method(*args, **kwargs)  # measured and counted by ``call`` as made

    return update_wrapper(checked, method)


_SPLIT_METHODS = frozenset({"split", "rsplit", "splitlines"})
_TEXT_METHODS = frozenset({"replace", "join", "translate"}) | _SPLIT_METHODS


def _checked_growth(items: list[Any], method: Callable[..., Any]) -> Callable[..., Any]:
    """``append``, ``insert`` and ``extend`` of a list, refusing one past
    MAX_ITEMS (``l.extend(l)`` doubles it)."""
    name = method.__name__

    def checked(*args: Any, **kwargs: Any) -> Any:
        if name == "extend" and len(args) == 1:
            added = _listed(args[0], "extend()")  # an iterator over the list itself ends
            _refuse_items("extend()", len(items) + len(added))
            _spend_items("extend()", len(added))
            return method(added)
        _refuse_items(f"{name}()", len(items) + 1)
        _spend_items(f"{name}()", 1)
        return method(*args, **kwargs)

    return update_wrapper(checked, method)


_GROWTH_METHODS = frozenset({"append", "insert", "extend"})


# Filters that pad: jinja2's own, after a check of the width.

def _center(value: Any, width: int = 80) -> str:
    if isinstance(width, int):
        _refuse_width(f"center({width})", width)
    return jinja_filters.do_center(value, width)


def _indent(s: Any, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
    size = len(width) if isinstance(width, str) else width
    if isinstance(size, int) and isinstance(s, str):
        lines = s.count("\n") + 1
        _refuse_width(f"indent({size}) of {lines:,} lines", size * lines)
    return jinja_filters.do_indent(s, width, first, blank)


def _format(value: Any, *args: Any, **kwargs: Any) -> str:
    _check_printf(soft_str(value), kwargs or args)
    return jinja_filters.do_format(value, *args, **kwargs)


def _batch(value: Any, linecount: int, fill_with: Any = None) -> Iterator[list[Any]]:
    if fill_with is not None and isinstance(linecount, int):
        _refuse_width(f"batch({linecount}) filled up", linecount)
    return _made_each("|batch", jinja_filters.do_batch(value, linecount, fill_with))


@pass_eval_context
def _tojson(eval_ctx: Any, value: Any, indent: int | str | None = None) -> Markup:
    size = len(indent) if isinstance(indent, str) else indent
    if isinstance(size, int) and size > 1:
        # Indentation grows with the indent: one more space per level of each line.
        policies = eval_ctx.environment.policies
        dumps = policies["json.dumps_function"] or json.dumps
        kwargs = policies["json.dumps_kwargs"]
        try:
            levels = len(dumps(value, indent=1, **kwargs)) - len(dumps(value, indent=0,
                                                                      **kwargs))
        except (TypeError, ValueError):
            levels = 0  # not JSON: the filter says so
        _refuse_width(f"tojson({size})", size * levels)
    return jinja_filters.do_tojson(eval_ctx, value, indent)  # type: ignore[arg-type]


_WIDTH_FILTERS: dict[str, Callable[..., Any]] = {
    "center": _center, "indent": _indent, "format": _format, "batch": _batch,
    "tojson": _tojson}


# Filters that can make a long text or list in one step: jinja2's own, after
# a check of what they will make.

@pass_eval_context
def _replace(eval_ctx: Any, s: Any, old: Any, new: Any, count: int | None = None) -> str:
    _refuse_size("replace()", _replace_size(soft_str(s), soft_str(old), soft_str(new),
                                            -1 if count is None else count))
    return jinja_filters.do_replace(eval_ctx, s, old, new, count)


@pass_eval_context
def _join(eval_ctx: Any, value: Any, d: str = "", attribute: str | int | None = None) -> str:
    items = _listed(value, "join")
    if attribute is not None:
        get = jinja_filters.make_attrgetter(eval_ctx.environment, attribute)
        items = [get(item) for item in items]
    _refuse_size("join", _joined_size(items, len(soft_str(d))))
    return jinja_filters.sync_do_join(eval_ctx, items, d)


@pass_environment
def _wordwrap(environment: Any, s: Any, width: int = 79, break_long_words: bool = True,
              wrapstring: str | None = None, break_on_hyphens: bool = True) -> str:
    wrap = environment.newline_sequence if wrapstring is None else wrapstring
    if isinstance(s, str) and isinstance(width, int) and width > 0 and isinstance(wrap, str):
        # A line holds at least half the width but for the last of a paragraph.
        paragraphs = _split_parts(s, "splitlines") or 1
        lines = 2 * len(s) // width + 2 * paragraphs
        _refuse_items(f"wordwrap({width}) (its lines)", lines)
        _refuse_size(f"wordwrap({width})", len(s) + lines * len(wrap))
    return jinja_filters.do_wordwrap(environment, s, width, break_long_words, wrapstring,
                                     break_on_hyphens)


def _slice(value: Any, slices: int, fill_with: Any = None) -> Iterator[list[Any]]:
    if isinstance(slices, int):
        _refuse_items(f"slice({slices})", slices)
    return _made_each("|slice", jinja_filters.sync_do_slice(value, slices, fill_with))


@pass_context
def _map(context: Context, value: Any, *args: Any, **kwargs: Any) -> Iterable[Any]:
    values = jinja_filters.sync_do_map(context, value, *args, **kwargs)
    if not args:  # map(attribute=…): values there already
        return values
    # A filter applied to each item makes new values: all together may be no
    # larger than one (``items | map('upper') | list``).
    return _counted(values, f"map({args[0]!r})")


def _counted(values: Iterable[Any], what: str) -> Iterator[Any]:
    size = 0
    for value in values:
        size += _text_size(value)
        _refuse_size(what, size, or_more=True)
        yield value


def _list(value: Any) -> list[Any]:
    return list(_listed(value, "list"))


@pass_environment
def _sum(environment: Any, iterable: Any, attribute: str | int | None = None,
         start: Any = 0) -> Any:
    if not isinstance(start, list | tuple):
        return jinja_filters.sync_do_sum(environment, iterable, attribute, start)
    items = _listed(iterable, "sum")
    if attribute is not None:
        get = jinja_filters.make_attrgetter(environment, attribute)
        items = [get(item) for item in items]
    _refuse_items("sum", len(start) + sum(len(x) for x in items if isinstance(x, Sized)))
    # Joined in one pass: sum() would copy the growing list once per item.
    joined = list(start)
    for item in items:
        if not isinstance(item, type(start)):
            start + item  # the error sum() gives  # noqa: B018
        joined.extend(item)
    return type(start)(joined)


def _lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:  # noqa: A002
    if isinstance(n, int) and isinstance(max, int):
        # Fewer than ``max`` words a paragraph, none longer than 12 letters.
        _refuse_size(f"lipsum({n})", n * (max * 14 + 10) if n > 0 and max > 0 else 0)
    return generate_lorem_ipsum(n, html, min, max)


_SIZE_FILTERS: dict[str, Callable[..., Any]] = {
    "replace": _replace, "join": _join, "wordwrap": _wordwrap, "slice": _slice,
    "list": _list, "sum": _sum, "map": _map}

# Filters that turn their value into text (``items | string`` of a list
# holding one long text many times), some growing it by a factor.
_TEXT_FILTERS = frozenset({
    "capitalize", "center", "e", "escape", "forceescape", "format", "indent", "lower",
    "pprint", "replace", "safe", "string", "striptags", "title", "tojson", "trim",
    "truncate", "upper", "urlencode", "urlize", "wordcount", "wordwrap", "xmlattr"})


def _checked_filter(name: str, f: Callable[..., Any]) -> Callable[..., Any]:
    """Filter ``f`` with its result checked and counted as made (``_made``):
    a text escaped or upper-cased again and again grows by a factor each
    time. A filter that turns its value into text has a list given to it
    measured first."""
    value_at = 0 if getattr(f, "jinja_pass_arg", None) is None else 1
    what = f"|{name}"

    if name not in _TEXT_FILTERS:
        def checked(*args: Any, **kwargs: Any) -> Any:
            if len(args) + len(kwargs) > _WRITTEN_ARGUMENTS:
                _spread(what, args, kwargs)
            return _made(what, f(*args, **kwargs))
        return update_wrapper(checked, f)

    def checked_text(*args: Any, **kwargs: Any) -> Any:
        if len(args) + len(kwargs) > _WRITTEN_ARGUMENTS:
            _spread(what, args, kwargs)
        if len(args) > value_at and _is_container(args[value_at]):
            value = args[value_at]
            _refuse_size(f"|{name} of a {type(value).__name__}", _text_size(value))
        return _made(what, f(*args, **kwargs))

    return update_wrapper(checked_text, f)


def _power(left: Any, right: Any) -> Any:
    if isinstance(left, int) and isinstance(right, int) and abs(left) > 1 \
            and right * abs(left).bit_length() > MAX_POWER_BITS:
        raise RenderTooLong(f"{left} ** {right} is too large to compute")
    return operator.pow(left, right)


def _repeat(left: Any, right: Any) -> Any:
    for seq, times in ((left, right), (right, left)):
        if isinstance(seq, _SIZED) and isinstance(times, int):
            if len(seq) * times > MAX_REPEAT:
                raise RenderTooLong(f"repeating a {type(seq).__name__} of {len(seq)} "
                                    f"items {times} times makes more than {MAX_REPEAT:,}")
            if isinstance(seq, list | tuple) and times > 1:  # and what it holds, as text
                _refuse_size(f"repeating a {type(seq).__name__} of {len(seq)} items "
                             f"{times} times", _text_size(seq, MAX_SIZE // times + 1) * times)
    return operator.mul(left, right)


class _BudgetedCodeGenerator(CodeGenerator):
    """Compiles ``{% for x in items %}`` as ``for x in environment.budgeted(items)``,
    ``{% set %}`` with a look at the clock first, ``a ~ b`` with its parts
    measured before they are joined and the text made counted, and ``a[i:j]``
    with what it makes counted."""

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        node.iter = nodes.Call(nodes.EnvironmentAttribute("budgeted"), [node.iter], [],
                               None, None, lineno=node.iter.lineno)
        super().visit_For(node, frame)

    def visit_Assign(self, node: nodes.Assign, frame: Frame) -> None:
        self.writeline("environment.check_deadline(context.eval_ctx)", node)
        super().visit_Assign(node, frame)

    def visit_AssignBlock(self, node: nodes.AssignBlock, frame: Frame) -> None:
        self.writeline("environment.check_deadline(context.eval_ctx)", node)
        super().visit_AssignBlock(node, frame)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        # jinja2's own (less its constant folding, off in the sandbox anyway),
        # the parts passed through environment.sized_parts and the text made
        # through environment.joined: a Markup part has the others escaped
        # as they are joined, up to 6 characters for one (``"`` → ``&#34;``).
        if frame.eval_ctx.volatile:
            join = "(markup_join if context.eval_ctx.volatile else str_join)"
        else:
            join = "markup_join" if frame.eval_ctx.autoescape else "str_join"
        self.write(f"environment.joined({join}(environment.sized_parts((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))))")

    def visit_Getitem(self, node: nodes.Getitem, frame: Frame) -> None:
        # jinja2 compiles a slice as Python's ``a[i:j]``, past environment.getitem.
        if isinstance(node.arg, nodes.Slice):
            self.write("environment.made_by_slicing(")
            super().visit_Getitem(node, frame)
            self.write(")")
        else:
            super().visit_Getitem(node, frame)


def _call_name(f: Any) -> str:
    return f"{getattr(f, '__name__', None) or type(f).__name__}()"


# Callables that render part of the template: their output is measured and
# counted as it is joined (``concat``).
_RENDERING = (Macro, LoopContext, BlockReference)


class _RefusingSandbox(SandboxedEnvironment):
    """jinja2's sandbox hands out an Undefined for an unsafe attribute, which a
    lenient Undefined would print as ""; refuse on access instead, so an
    escape attempt is an error (naming the attribute), never silently empty.
    Renders run on a time budget (see the module's docstring)."""

    code_generator_class = _BudgetedCodeGenerator
    context_class = _BudgetedContext
    intercepted_binops = frozenset({"*", "**", "%", "+"})
    budgeted = staticmethod(_budgeted)
    check_deadline = staticmethod(_check_deadline)
    sized_parts = staticmethod(_sized_parts)
    concat = staticmethod(_concat)  # type: ignore[assignment]
    joined = staticmethod(lambda value: _made("'~'", value))
    made_by_slicing = staticmethod(lambda value: _made("a slice [i:j]", value))

    def __init__(self, *args: Any, extra_filters: Mapping[str, Callable[..., Any]] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.filters.update(_WIDTH_FILTERS)
        self.filters.update(_SIZE_FILTERS)
        self.filters.update(extra_filters or {})
        for name, f in self.filters.items():
            self.filters[name] = _checked_filter(name, f)
        self.globals["lipsum"] = _lipsum

    def call(__self, __context: Context, __obj: Any, *args: Any,  # noqa: N805
             **kwargs: Any) -> Any:
        _check_deadline(__context.eval_ctx)  # a macro calling itself twice per call, …
        if len(args) + len(kwargs) > _WRITTEN_ARGUMENTS:
            _spread(_call_name(__obj), args, kwargs)
        value = super().call(__context, __obj, *args, **kwargs)
        if isinstance(value, _MADE) and not isinstance(__obj, _RENDERING):
            # ``s.upper()`` again and again, ``s.encode()``, the format's text, …
            _made(_call_name(__obj), value)
        return value

    def call_binop(self, context: Context, operator_: str, left: Any, right: Any) -> Any:
        if operator_ == "*":
            return _made("'*'", _repeat(left, right))
        if operator_ == "**":
            return _power(left, right)
        if operator_ == "+":
            if isinstance(left, _TEXTS) and isinstance(right, _TEXTS):
                _refuse_size("'+'", len(left) + len(right))
            elif isinstance(left, list | tuple) and isinstance(right, list | tuple):
                _refuse_items("'+'", len(left) + len(right))
            value = operator.add(left, right)
        else:
            if isinstance(left, _TEXTS):
                _check_printf(left, right)
            value = operator.mod(left, right)
        # Markup escapes what is added to it, or formatted in: measured as made.
        return _made("'+'" if operator_ == "+" else "'%'", value)

    def wrap_str_format(self, value: Any) -> Callable[..., Any] | None:
        # jinja2 asks this of every attribute and item it hands out (``.x``,
        # ``["x"]``, ``|attr("x")``), so a method is checked however reached.
        if not isinstance(value, types.MethodType | types.BuiltinMethodType):
            return None
        owner, name = value.__self__, value.__name__
        if isinstance(owner, _TEXTS):
            if name in _PADDING_METHODS:
                return _checked_padding(owner, value)
            if name in _TEXT_METHODS:
                return _checked_text_method(owner, value)
        if isinstance(owner, list) and name in _GROWTH_METHODS:
            return _checked_growth(owner, value)
        if isinstance(owner, str) and name in ("format", "format_map"):
            return _checked_format(self, owner, value)
        return super().wrap_str_format(value)

    def unsafe_undefined(self, obj: Any, attribute: str) -> Undefined:
        raise SecurityError(f"access to attribute {attribute!r} of a "
                            f"{type(obj).__name__!r} value is not allowed")

    def getattr(self, obj: Any, attribute: str) -> Any:
        # A record, a row, vars: ``vars.copy`` or ``record.items`` is the value
        # of that key, never the dict method of the same name.
        if isinstance(obj, Mapping) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)


def sandbox(*, html: bool, undefined: str = "strict",
            filters: Mapping[str, Callable[..., Any]] | None = None) -> SandboxedEnvironment:
    """A new sandboxed environment. ``undefined="strict"`` makes an unknown
    variable an error (messages); ``"lenient"`` prints it as "" and lets
    ``a.b.c`` chain through missing parts (print templates, where a field
    hidden from the viewer is simply absent)."""
    return _RefusingSandbox(autoescape=html, finalize=_finalize, optimized=False,
                            undefined=StrictUndefined if undefined == "strict"
                            else ChainableUndefined, extra_filters=filters)


_PARSER = sandbox(html=True)


def unsafe_access(source: str) -> list[tuple[int, str]]:
    """``(line, name)`` of every attribute or item named with a leading
    underscore, found without running the template (the sandbox refuses them
    at render time too; this names them when the template is saved)."""
    found: list[tuple[int, str]] = []
    for node in _PARSER.parse(source).find_all((nodes.Getattr, nodes.Getitem)):
        if isinstance(node, nodes.Getattr):
            name: Any = node.attr
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            name = node.arg.value
        else:
            continue
        if isinstance(name, str) and name.startswith("_"):
            found.append((node.lineno, name))
    return found


def template_problem(source: str, *, filters: Mapping[str, Any] | None = None) -> str | None:
    """What is wrong with ``source`` (syntax, unsafe attribute, unknown filter),
    or None. Parses and compiles; never renders."""
    env = _PARSER if filters is None else sandbox(html=True, filters=filters)
    try:
        unsafe = unsafe_access(source)
        env.from_string(source)
    except TemplateSyntaxError as exc:
        return f"template syntax error at line {exc.lineno}: {exc.message}"
    loading = loads_templates(source)
    if loading:
        line, tag = loading
        return (f"line {line}: {{% {tag} %}} is not available: a template cannot load other "
                "templates or files; write the shared part as a {% macro %} in this template")
    endless = endless_recursion(source)
    if endless:
        line, name = endless
        return (f"line {line}: macro {name!r} always calls itself (directly or through other "
                "macros), so it never ends; call it again only inside an {% if %} or a "
                "{% for %} that eventually stops")
    if unsafe:
        line = unsafe[0][0]
        # A chain is found outside in (``__mro__`` before ``__class__``): name
        # the first line's attributes in the order they are reached.
        names = list(dict.fromkeys(n for ln, n in reversed(unsafe) if ln == line))
        return (f"line {line}: the sandbox does not allow {', '.join(map(repr, names))}; "
                "templates may only read the variables they are given and their fields")
    return None


_LOADING = {nodes.Include: "include", nodes.Import: "import", nodes.FromImport: "from … import",
            nodes.Extends: "extends"}


def loads_templates(source: str) -> tuple[int, str] | None:
    """``(line, tag)`` of the first ``{% include %}``, ``{% import %}`` or
    ``{% extends %}``: the sandbox has no loader, so they could only fail when
    printed."""
    found = list(_PARSER.parse(source).find_all(tuple(_LOADING)))
    if not found:
        return None
    first = min(found, key=lambda n: n.lineno)
    return first.lineno, _LOADING[type(first)]


# Nodes only part of which always runs (a call elsewhere in them is a
# recursion that can stop): the test of an {% if %} or ``… if … else …``, the
# items of a {% for %}, the call of a {% call %} block (not its body), the
# left of ``and``/``or``; of a nested {% macro %}, nothing.
_ALWAYS_RUN: dict[type[nodes.Node], Callable[[Any], list[nodes.Node]]] = {
    nodes.If: lambda node: [node.test], nodes.CondExpr: lambda node: [node.test],
    nodes.For: lambda node: [node.iter], nodes.CallBlock: lambda node: [node.call],
    nodes.And: lambda node: [node.left], nodes.Or: lambda node: [node.left],
    nodes.Macro: lambda node: []}


def endless_recursion(source: str) -> tuple[int, str] | None:
    """``(line, macro)`` of a macro that calls itself on every run, directly
    or through other macros (``{% macro m() %}{{ m() }}{% endmacro %}``),
    found without rendering. A call in the body of an ``{% if %}`` or a
    ``{% for %}``, a branch of ``… if … else …`` or the right of
    ``and``/``or`` may stop, so it does not count; rendering stops a deeper
    recursion anyway (see the printing and notification renderers).
    """
    macros = {m.name: m for m in _PARSER.parse(source).find_all(nodes.Macro)}
    calls: dict[str, set[str]] = {}
    for name, macro in macros.items():
        found: set[str] = set()
        stack: list[nodes.Node] = list(macro.body)
        while stack:
            node = stack.pop()
            always_run = _ALWAYS_RUN.get(type(node))
            if always_run is not None:
                stack.extend(always_run(node))
                continue
            if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name) \
                    and node.node.name in macros:
                found.add(node.node.name)
            stack.extend(node.iter_child_nodes())
        calls[name] = found
    for start, macro in macros.items():
        seen: set[str] = set()
        todo = list(calls[start])
        while todo:
            name = todo.pop()
            if name == start:
                return macro.lineno, start
            if name not in seen:
                seen.add(name)
                todo.extend(calls.get(name, ()))
    return None


def record_fields_read(source: str) -> set[str]:
    """Fields a template reads from ``record`` (``record.x``, ``record["x"]``)."""
    found: set[str] = set()
    tree = _PARSER.parse(source)
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        if not (isinstance(node, nodes.Getattr | nodes.Getitem)
                and isinstance(node.node, nodes.Name) and node.node.name == "record"):
            continue
        if isinstance(node, nodes.Getattr):
            found.add(node.attr)
        elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            found.add(node.arg.value)
    return found
