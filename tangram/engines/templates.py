"""jinja2 in its sandbox: the one template language of the platform.

Notification texts (``tangram.engines.notify``), print templates
(``tangram.engines.printing``) and the templates of app packages are written
by app builders, so they run in jinja2's :class:`SandboxedEnvironment`: a
template reads the variables it is given and nothing else. This module owns
that environment, so every user of templates refuses the same escapes
(``''.__class__.__mro__``, ``record.__init__.__globals__``) with the same
clear error, and reports syntax errors with their line.

    env = sandbox(html=True)
    problem = template_problem("{{ ''.__class__ }}")  # "line 1: … '__class__' …"
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from jinja2 import (
    ChainableUndefined,
    StrictUndefined,
    TemplateError,
    TemplateSyntaxError,
    Undefined,
    UndefinedError,
    nodes,
)
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from tangram.errors import DefinitionInvalid

__all__ = ["SecurityError", "TemplateError", "TemplateInvalid", "TemplateSyntaxError",
           "UndefinedError",
           "endless_recursion", "record_fields_read", "sandbox", "template_problem",
           "unsafe_access"]


class TemplateInvalid(DefinitionInvalid):
    """A template does not parse, or uses something the sandbox refuses."""

    code = "template_invalid"


class _RefusingSandbox(SandboxedEnvironment):
    """jinja2's sandbox hands out an Undefined for an unsafe attribute, which a
    lenient Undefined would print as ""; refuse on access instead, so an
    escape attempt is an error (naming the attribute), never silently empty."""

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
    env = _RefusingSandbox(autoescape=html,
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
