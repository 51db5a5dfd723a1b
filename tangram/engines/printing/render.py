"""Template + variables → an HTML page, and that page → a PDF (WeasyPrint).

The template runs in the platform's sandbox (``tangram.engines.templates``)
with a lenient Undefined, so a field hidden from the viewer prints as "",
while anything the sandbox refuses (``''.__class__``, ``record.__init__``) is
an error naming it. The PDF renderer fetches nothing from the network: only
``data:`` URLs and the platform's own files (``/api/files/<id>``, read with the
viewer's permission) are loaded; every other URL is refused and listed.
"""

from __future__ import annotations

import functools
import logging
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from jinja2 import Template, TemplateRuntimeError
from markupsafe import escape

from tangram.engines.printing.filters import filter_functions
from tangram.engines.templates import (
    MAX_SIZE,
    RenderTooLong,
    SecurityError,
    TemplateInvalid,
    TemplateSyntaxError,
    sandbox,
    template_problem,
)
from tangram.errors import LimitExceeded
from tangram.metamodel.printing import Paper, PrintTemplate

log = logging.getLogger(__name__)

# Fonts with Chinese glyphs first (the setup installs fonts-wqy-zenhei on
# Debian; Noto/Source Han where present), then the usual desktop fonts.
FONT_STACK = ('"Noto Sans CJK SC", "Source Han Sans SC", "WenQuanYi Zen Hei", '
              '"WenQuanYi Micro Hei", "PingFang SC", "Microsoft YaHei", "SimSun", '
              '"DejaVu Sans", sans-serif')
DEFAULT_CSS = f"""
html {{ font-family: {FONT_STACK}; font-size: 10.5pt; line-height: 1.5; color: #111; }}
h1 {{ font-size: 18pt; text-align: center; margin: 0 0 12pt; }}
h2 {{ font-size: 13pt; margin: 12pt 0 6pt; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ border: 0.5pt solid #888; padding: 3pt 5pt; text-align: left; vertical-align: top; }}
th {{ background: #f2f2f2; }}
.num {{ text-align: right; white-space: nowrap; }}
"""
BASE_URL = "https://tangram.invalid/"  # relative URLs resolve here; never fetched
_FILE_URL = re.compile(re.escape(BASE_URL) + r"api/files/([0-9a-fA-F-]{36})$")
MAX_FILE_BYTES = 20 << 20
MAX_OUTPUT = MAX_SIZE  # characters of HTML one print may produce: what a template may build

ENVIRONMENT = sandbox(html=True, undefined="lenient", filters=filter_functions())


def check_template_text(source: str) -> str | None:
    """Syntax, unsafe attributes and unknown filters of a print template, or None."""
    return template_problem(source, filters=filter_functions())


@functools.lru_cache(maxsize=256)
def _compiled(source: str) -> Template:
    return ENVIRONMENT.from_string(source)


def _template_line(exc: BaseException) -> int | None:
    """The template line a rendering error happened on (jinja2 maps template
    frames to ``<template>``)."""
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def render_text(source: str, variables: Mapping[str, Any], *, where: str = "body") -> str:
    """Render one template text; a refused or broken template raises
    TemplateInvalid naming the problem and its line, and so does one that runs
    out of its time budget (``templates.RENDER_SECONDS``). Output is capped at
    MAX_OUTPUT characters (a runaway loop is an error, not a huge page)."""
    parts: list[str] = []
    size = 0
    try:
        for chunk in _compiled(source).generate(**variables):
            size += len(chunk)
            if size > MAX_OUTPUT:
                raise LimitExceeded(f"the print template's {where} produces more than "
                                    f"{MAX_OUTPUT // 1_000_000} million characters")
            parts.append(chunk)
    except SecurityError as exc:
        raise TemplateInvalid(
            f"the print template's {where} uses something the sandbox does not allow: {exc}; "
            "templates may only read the variables they are given (record, related, …)",
            details={"part": where}) from None
    except TemplateSyntaxError as exc:
        raise TemplateInvalid(f"the print template's {where} has a syntax error at line "
                              f"{exc.lineno}: {exc.message}", details={"part": where,
                                                                      "line": exc.lineno}) \
            from None
    except RenderTooLong as exc:
        line = _template_line(exc)
        raise TemplateInvalid(f"the print template's {where} was stopped"
                              + (f" at line {line}" if line else "") + f": {exc}",
                              details={"part": where, "line": line}) from None
    except RecursionError:
        # A macro that keeps calling itself (the check at save catches the
        # obvious ones; one that stops too late ends here).
        raise TemplateInvalid(f"the print template's {where} calls a macro within itself too "
                              "deeply (a macro that calls itself without end?)",
                              details={"part": where}) from None
    except (ArithmeticError, LookupError, TypeError, ValueError, TemplateRuntimeError) as exc:
        # A value the template did not expect (an empty field in arithmetic):
        # the builder's mistake, reported with its line — not a server error.
        line = _template_line(exc)
        raise TemplateInvalid(f"the print template's {where} failed"
                              + (f" at line {line}" if line else "")
                              + f": {type(exc).__name__}: {exc}",
                              details={"part": where, "line": line}) from None
    return "".join(parts)


def page_css(paper: Paper) -> str:
    m = paper.margins
    return (f"@page {{ size: {paper.size} {paper.orientation}; "
            f"margin: {m.top}mm {m.right}mm {m.bottom}mm {m.left}mm; }}")


def _style(css: str) -> str:
    # A style element ends at the first "</": keep builders' CSS inside it.
    return css.replace("</", "<\\/")


def render_html(template: PrintTemplate, variables: Mapping[str, Any], *,
                language: str = "zh") -> str:
    """The whole HTML page of one print.

        html = render_html(tpl, template_variables(ctx, app="crm", template=tpl,
                                                   record_id=rid))
    """
    body = render_text(template.body, variables)
    title = str(variables.get("record", "")) or template.key
    return ("<!DOCTYPE html>\n"
            f'<html lang="{escape(language)}"><head><meta charset="utf-8">'
            f"<title>{escape(title)}</title>"
            f"<style>{_style(page_css(template.paper))}\n{DEFAULT_CSS}</style>"
            + (f"<style>{_style(template.css)}</style>" if template.css else "")
            + f"</head><body>{body}</body></html>\n")


# --------------------------------------------------------------------------- PDF

FileOpener = Callable[[uuid.UUID], tuple[bytes, str] | None]


@dataclass
class FetchLog:
    """What the PDF renderer asked for and was refused (for logs and tests)."""

    refused: list[str] = field(default_factory=list)


def _fetcher(open_file: FileOpener | None, fetched: FetchLog) -> Any:
    from weasyprint.urls import URLFetcher, URLFetcherResponse, URLFetchingError

    class PlatformOnlyFetcher(URLFetcher):  # type: ignore[misc]
        """data: URLs and the platform's own files; never the network or disk."""

        def fetch(self, url: str, headers: Any = None) -> Any:
            if url[:5].lower() == "data:":
                return super().fetch(url, headers)
            match = _FILE_URL.match(url)
            if match and open_file is not None:
                found = open_file(uuid.UUID(match.group(1)))
                if found is not None:
                    content, content_type = found
                    return URLFetcherResponse(url, body=content,
                                              headers={"Content-Type": content_type})
            fetched.refused.append(url)
            log.info("print: refused to fetch %s", url[:200])
            raise URLFetchingError(f"print templates may not load {url[:200]}")

    return PlatformOnlyFetcher(allowed_protocols=("data", "https"))


def render_pdf(html: str, *, open_file: FileOpener | None = None,
               fetched: FetchLog | None = None) -> bytes:
    """The PDF of a page from :func:`render_html`."""
    from weasyprint import HTML

    log_ = fetched if fetched is not None else FetchLog()
    pdf = HTML(string=html, base_url=BASE_URL,
               url_fetcher=_fetcher(open_file, log_)).write_pdf()
    assert isinstance(pdf, bytes)
    return pdf
