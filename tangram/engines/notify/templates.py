"""Message templates: jinja2 in its sandbox, so a template written by an app
builder can read the variables it is given and nothing else (no attribute
escapes such as ``''.__class__.__mro__``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from tangram.errors import DefinitionInvalid

_env = SandboxedEnvironment(autoescape=False, undefined=StrictUndefined)
_html_env = SandboxedEnvironment(autoescape=True, undefined=StrictUndefined)


def render_template(source: str, variables: Mapping[str, Any], *, html: bool = False) -> str:
    """Render ``source`` with ``variables``; unsafe or broken templates raise
    DefinitionInvalid naming the problem.

        render_template("新线索：{{ record.name }}", {"record": {"name": "张三"}})
        # '新线索：张三'
    """
    env = _html_env if html else _env
    try:
        return env.from_string(source).render(**variables)
    except SecurityError as exc:
        raise DefinitionInvalid(
            f"the template uses something the sandbox does not allow ({exc}); templates "
            "may only read the variables they are given (record, user, …)") from None
    except TemplateSyntaxError as exc:
        raise DefinitionInvalid(f"the template has a syntax error on line {exc.lineno}: "
                                f"{exc.message}") from None
    except UndefinedError as exc:
        raise DefinitionInvalid(f"the template refers to an unknown variable: "
                                f"{exc.message}") from None
