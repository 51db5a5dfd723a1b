"""Texts no database can store are refused by every text field type,
whichever way they arrive (API, import, flow): NUL and lone UTF-16 surrogates."""

from __future__ import annotations

import pytest

from tangram.engines.forms.fieldtypes import FIELD_KINDS, FieldProblem
from tangram.i18n import message
from tangram.metamodel import fields as fm


def _field(type_: str) -> fm.FieldBase:
    return fm.FIELD_MODELS[type_].model_validate({"type": type_, "key": "t",
                                                  "label": {"en": "T", "zh": "标题"}})


@pytest.mark.parametrize("type_", ["text", "long_text", "rich_text", "email", "url", "tags"])
@pytest.mark.parametrize("value", ["a\ud800b", "\udfff"])
def test_a_lone_surrogate_is_refused(type_, value):
    with pytest.raises(FieldProblem) as info:
        FIELD_KINDS[type_].convert(_field(type_), [value] if type_ == "tags" else value)
    assert info.value.code == "type"
    expected = info.value.params["expected"]
    assert "surrogate" in expected or "cannot be stored" in expected
    assert "标题" in message("type", "zh", label="标题", **info.value.params)


def test_a_paired_surrogate_is_a_whole_character():
    assert FIELD_KINDS["text"].convert(_field("text"), "😀") == "😀"
