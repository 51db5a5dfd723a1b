"""jinja2 in its sandbox: the one template language of the platform.

Notification texts (``tangram.engines.notify``), print templates
(``tangram.engines.printing``) and the templates of app packages are written
by app builders, so they run in jinja2's :class:`SandboxedEnvironment`: a
template reads the variables it is given and nothing else. This module owns
that environment, so every user of templates refuses the same escapes
(``''.__class__.__mro__``, ``record.__init__.__globals__``) with the same
clear error, and reports syntax errors with their line.

Every render has a time budget (``RENDER_SECONDS``): each loop step, call and
printed value checks it, so a runaway template (``{% for i in range(100000)
%}{% for j in range(100000) %}…``) stops with :class:`RenderTooLong` instead
of running for hours. Nothing is computed when a template is only compiled
(no constant folding: ``{{ 'a' * 100000000 }}`` costs nothing to check), and a
repetition or power too large to compute is refused when it runs — so is a
width, padding or precision past ``MAX_WIDTH`` (``'%0100000000d' % 1``,
``'{:>100000000}'.format(x)``, ``'x'.center(100000000)``, ``|indent``,
``|tojson(indent)``, ``|batch(n, fill)``), before Python builds the string.

    env = sandbox(html=True)
    problem = template_problem("{{ ''.__class__ }}")  # "line 1: … '__class__' …"
"""

from __future__ import annotations

import json
import operator
import re
import time
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import update_wrapper
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
    pass_eval_context,
)
from jinja2 import filters as jinja_filters
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment, SandboxedEscapeFormatter, SandboxedFormatter
from markupsafe import Markup, soft_str

from tangram.errors import DefinitionInvalid

__all__ = ["MAX_REPEAT", "MAX_WIDTH", "RENDER_SECONDS", "RenderTooLong", "SecurityError",
           "TemplateError", "TemplateInvalid", "TemplateSyntaxError", "UndefinedError",
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


class _BudgetedContext(Context):
    """Starts the render's clock. A derived context (a scoped block) shares its
    parent's eval context, and so its deadline."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.eval_ctx.deadline = time.thread_time() + RENDER_SECONDS  # type: ignore[attr-defined]


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
    return value


def _refuse_width(what: str, width: int) -> None:
    if width > MAX_WIDTH:
        raise RenderTooLong(f"{what} asks for {width:,} characters of width, padding or "
                            f"precision; one operation may ask for at most {MAX_WIDTH:,}")


def _shown(text: str | bytes | bytearray) -> str:
    """A format for an error message: a long one is cut short."""
    return repr(text) if len(text) <= 40 else repr(text[:36]) + "…"


def _number(digits: str) -> int:
    # More than 18 digits is too wide anyway; int() would refuse past 4300.
    return int(digits) if len(digits) <= 18 else 10 ** 18


def _printf_width(fmt: str | bytes | bytearray, values: Any) -> int:
    """The widths and precisions of a printf-style format together, a ``*``
    read from ``values`` as Python reads it (``'%*d' % (width, n)``)."""
    if not isinstance(fmt, str):
        fmt = bytes(fmt).decode("latin-1")
    args = values if isinstance(values, tuple) else (values,)
    total = index = i = 0
    n = len(fmt)
    while (i := fmt.find("%", i) + 1) > 0:
        if fmt.startswith("%", i):  # "%%"
            i += 1
            continue
        keyed = fmt.startswith("(", i)
        if keyed:  # "%(name)…", parentheses nest
            depth = 0
            while i < n:
                depth += {"(": 1, ")": -1}.get(fmt[i], 0)
                i += 1
                if depth == 0:
                    break
        while i < n and fmt[i] in "-+ #0":
            i += 1
        for precision in (False, True):
            if precision:
                if not fmt.startswith(".", i):
                    break
                i += 1
            if fmt.startswith("*", i):
                i += 1
                value = args[index] if index < len(args) else None
                index += 1
                if isinstance(value, int):  # a negative width pads on the right
                    total += max(value, 0) if precision else abs(value)
            else:
                start = i
                while i < n and "0" <= fmt[i] <= "9":
                    i += 1
                if i > start:
                    total += _number(fmt[start:i])
        while i < n and fmt[i] in "hlL":
            i += 1
        i += 1  # the conversion
        if not keyed:
            index += 1
    return total


def _check_printf(fmt: str | bytes | bytearray, values: Any) -> None:
    _refuse_width(f"{_shown(fmt)} % …", _printf_width(fmt, values))


_SPEC_NUMBER = re.compile(r"\d+")  # Python reads any decimal digits in a format spec


class _WidthCheckingFormatter(SandboxedFormatter):
    """``str.format``/``format_map`` in the sandbox, refusing fields whose
    specs (``{:>100000000}``, ``{0:>{1}}`` with its width filled in) add up to
    more than MAX_WIDTH. Every number of a spec counts: width, precision, and
    digits of a date's spec alike (none of which a real template makes large)."""

    def vformat(self, format_string: str, args: Any, kwargs: Any) -> str:
        self.source = format_string
        self.width = 0
        return super().vformat(format_string, args, kwargs)

    def format_field(self, value: Any, format_spec: str) -> Any:
        self.width += sum(map(_number, _SPEC_NUMBER.findall(format_spec)))
        _refuse_width(f"{_shown(self.source)}.format(…)", self.width)
        return super().format_field(value, format_spec)


class _WidthCheckingEscapeFormatter(_WidthCheckingFormatter, SandboxedEscapeFormatter):
    pass


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
    return jinja_filters.do_batch(value, linecount, fill_with)


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


class _BudgetedCodeGenerator(CodeGenerator):
    """Compiles ``{% for x in items %}`` as ``for x in environment.budgeted(items)``."""

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        node.iter = nodes.Call(nodes.EnvironmentAttribute("budgeted"), [node.iter], [],
                               None, None, lineno=node.iter.lineno)
        super().visit_For(node, frame)


class _RefusingSandbox(SandboxedEnvironment):
    """jinja2's sandbox hands out an Undefined for an unsafe attribute, which a
    lenient Undefined would print as ""; refuse on access instead, so an
    escape attempt is an error (naming the attribute), never silently empty.
    Renders run on a time budget (see the module's docstring)."""

    code_generator_class = _BudgetedCodeGenerator
    context_class = _BudgetedContext
    intercepted_binops = frozenset({"*", "**", "%"})
    budgeted = staticmethod(_budgeted)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.filters.update(_WIDTH_FILTERS)

    def call(__self, __context: Context, __obj: Any, *args: Any,  # noqa: N805
             **kwargs: Any) -> Any:
        _check_deadline(__context.eval_ctx)  # a macro calling itself twice per call, …
        return super().call(__context, __obj, *args, **kwargs)

    def call_binop(self, context: Context, operator_: str, left: Any, right: Any) -> Any:
        if operator_ == "%":
            if isinstance(left, str | bytes | bytearray):
                _check_printf(left, right)
            return operator.mod(left, right)
        if operator_ == "**":
            if isinstance(left, int) and isinstance(right, int) and abs(left) > 1 \
                    and right * abs(left).bit_length() > MAX_POWER_BITS:
                raise RenderTooLong(f"{left} ** {right} is too large to compute")
            return operator.pow(left, right)
        for seq, times in ((left, right), (right, left)):
            if isinstance(seq, str | list | tuple) and isinstance(times, int) \
                    and len(seq) * times > MAX_REPEAT:
                raise RenderTooLong(f"repeating a {type(seq).__name__} of {len(seq)} "
                                    f"items {times} times makes more than {MAX_REPEAT:,}")
        return operator.mul(left, right)

    def wrap_str_format(self, value: Any) -> Callable[..., Any] | None:
        # jinja2 asks this of every attribute and item it hands out (``.x``,
        # ``["x"]``, ``|attr("x")``), so a method is checked however reached.
        if not isinstance(value, types.MethodType | types.BuiltinMethodType):
            return None
        owner, name = value.__self__, value.__name__
        if isinstance(owner, str | bytes | bytearray) and name in _PADDING_METHODS:
            return _checked_padding(owner, value)
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
    env = _RefusingSandbox(autoescape=html, finalize=_finalize, optimized=False,
                           undefined=StrictUndefined if undefined == "strict"
                           else ChainableUndefined)
    env.filters.update(filters or {})
    return env


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


# Nodes whose body may not run: a call inside them is a recursion that can stop.
_CONDITIONAL = (nodes.If, nodes.For, nodes.CondExpr, nodes.Macro, nodes.CallBlock)


def endless_recursion(source: str) -> tuple[int, str] | None:
    """``(line, macro)`` of a macro that calls itself on every run, directly
    or through other macros (``{% macro m() %}{{ m() }}{% endmacro %}``),
    found without rendering. A call inside ``{% if %}``, ``{% for %}`` or
    ``… if … else …`` may stop, so it does not count; rendering stops a
    deeper recursion anyway (see the printing and notification renderers).
    """
    macros = {m.name: m for m in _PARSER.parse(source).find_all(nodes.Macro)}
    calls: dict[str, set[str]] = {}
    for name, macro in macros.items():
        found: set[str] = set()
        stack: list[nodes.Node] = list(macro.body)
        while stack:
            node = stack.pop()
            if isinstance(node, _CONDITIONAL):
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
