"""Print template definitions: how one record of a form prints as HTML and PDF.

A print template is data (definition kind ``"print_template"``), shipped in an
app package (``print_templates/<key>.json``) or edited by an app builder. Its
``body`` is a jinja2 template rendered in the sandbox with the record as the
viewer may see it (see docs/print.md for the variables and filters)::

    {"key": "contract_pdf", "label": {"zh": "合同打印", "en": "Contract"},
     "form": "contract",
     "body": "<h1>{{ record.title }}</h1><p>{{ record.amount | rmb_upper }}</p>",
     "paper": {"size": "A4", "orientation": "portrait"},
     "related": [{"key": "plans", "form": "payment_plan", "via": "contract",
                  "sort": ["installment"]}]}

The print engine (``tangram.engines.printing``) checks the form, the related
lists and the template itself when the definition is saved.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from tangram.metamodel.common import Definition, Key, Label
from tangram.metamodel.storage import register_kind

PAPER_SIZES = ("A3", "A4", "A5", "B5", "letter", "legal")
MAX_BODY = 200_000
MAX_RELATED_ROWS = 500


class Margins(Definition):
    """Page margins in millimetres."""

    top: float = Field(15, ge=0, le=100)
    right: float = Field(15, ge=0, le=100)
    bottom: float = Field(15, ge=0, le=100)
    left: float = Field(15, ge=0, le=100)


class Paper(Definition):
    size: Literal["A3", "A4", "A5", "B5", "letter", "legal"] = "A4"
    orientation: Literal["portrait", "landscape"] = "portrait"
    margins: Margins = Field(default_factory=Margins)


class RelatedList(Definition):
    """Records of another form that point at the printed record through a
    relation field (payment plan rows of a contract), read with the viewer's
    row scope and field rules; available to the template as ``related.<key>``."""

    key: Key
    form: Key = Field(description="The form whose records are listed.")
    via: Key = Field(description="Its relation field that points at the printed form.")
    sort: list[str] = Field(default_factory=list, max_length=5, description=(
        "Field keys, \"-\" in front for descending, e.g. [\"installment\"]."))
    limit: int = Field(100, ge=1, le=MAX_RELATED_ROWS)


class PrintTemplate(Definition):
    """A print template of one form (see docs/print.md)."""

    key: Key
    label: Label
    description: Label | None = None
    form: Key = Field(description="The form whose records this template prints.")
    body: str = Field(min_length=1, max_length=MAX_BODY, description=(
        "HTML with jinja2 tags, rendered in the sandbox (docs/print.md)."))
    css: str | None = Field(None, max_length=MAX_BODY, description=(
        "Extra CSS, applied after the platform's default print stylesheet."))
    paper: Paper = Field(default_factory=Paper)
    file_name: str | None = Field(None, max_length=500, description=(
        "A template for the download's file name, e.g. \"{{ record.number }}\" "
        "(default: the template label and the record's title)."))
    related: list[RelatedList] = Field(default_factory=list, max_length=10)

    @model_validator(mode="after")
    def _distinct_related(self) -> PrintTemplate:
        keys = [r.key for r in self.related]
        if len(keys) != len(set(keys)):
            raise ValueError("two related lists share one key")
        return self


register_kind("print_template", PrintTemplate)
