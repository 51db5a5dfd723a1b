"""Every error code the platform can return is documented in docs/errors.md."""

from pathlib import Path

from tangram.errors import TangramError
from tangram.i18n import MESSAGES

DOC = (Path(__file__).parents[2] / "docs" / "errors.md").read_text()


def _all_error_classes() -> list[type[TangramError]]:
    # Importing the app imports every router, engine and their error classes.
    import tangram.platform.app  # noqa: F401

    out, todo = [], [TangramError]
    while todo:
        cls = todo.pop()
        out.append(cls)
        todo.extend(cls.__subclasses__())
    return out


def test_every_error_class_code_is_documented():
    missing = sorted({f"{cls.__module__}.{cls.__name__}: {cls.code}"
                      for cls in _all_error_classes() if f"`{cls.code}`" not in DOC})
    assert missing == [], "document these codes in docs/errors.md"


def test_every_field_error_code_is_documented():
    missing = [code for code in MESSAGES if f"`{code}`" not in DOC]
    assert missing == []
