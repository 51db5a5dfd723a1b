"""Message templates: jinja2 in the platform's sandbox (``tangram.engines.templates``),
so a template written by an app builder can read the variables it is given and
nothing else (no attribute escapes such as ``''.__class__.__mro__``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tangram.engines.templates import (
    SecurityError,
    TemplateError,
    TemplateInvalid,
    TemplateSyntaxError,
    UndefinedError,
    sandbox,
)

_env = sandbox(html=False)
_html_env = sandbox(html=True)


def render_template(source: str, variables: Mapping[str, Any], *, html: bool = False) -> str:
    """Render ``source`` with ``variables``; unsafe or broken templates raise
    TemplateInvalid (a DefinitionInvalid) naming the problem.

        render_template("新线索：{{ record.name }}", {"record": {"name": "张三"}})
        # '新线索：张三'
    """
    env = _html_env if html else _env
    try:
        return env.from_string(source).render(**variables)
    except SecurityError as exc:
        raise TemplateInvalid(
            f"the template uses something the sandbox does not allow ({exc}); templates "
            "may only read the variables they are given (record, user, …)") from None
    except TemplateSyntaxError as exc:
        raise TemplateInvalid(f"the template has a syntax error on line {exc.lineno}: "
                              f"{exc.message}") from None
    except UndefinedError as exc:
        raise TemplateInvalid(f"the template refers to an unknown variable: "
                              f"{exc.message}") from None
    except RecursionError:
        raise TemplateInvalid("the template calls a macro within itself too deeply") from None
    except (TemplateError, ArithmeticError, LookupError, TypeError, ValueError) as exc:
        raise TemplateInvalid(f"the template failed on these values: {exc}") from None
