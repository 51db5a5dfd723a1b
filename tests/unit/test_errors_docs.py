"""Every error code the platform can return is documented in docs/errors.md."""

from pathlib import Path

from tangram.errors import ALL_ERRORS
from tangram.i18n import MESSAGES

DOC = (Path(__file__).parents[2] / "docs" / "errors.md").read_text()


def test_every_error_class_code_is_documented():
    missing = [cls.code for cls in ALL_ERRORS if f"`{cls.code}`" not in DOC]
    assert missing == []


def test_every_field_error_code_is_documented():
    missing = [code for code in MESSAGES if f"`{code}`" not in DOC]
    assert missing == []
