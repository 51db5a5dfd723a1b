"""Errors with catalog messages (``i18n.Msg``): English in ``message``, the
caller's language in the rendered body; the catalog speaks both languages."""

from __future__ import annotations

import string

import pytest

from tangram.errors import (
    Conflict,
    ErrorItem,
    LimitExceeded,
    RateLimited,
    TangramError,
    ValidationFailed,
)
from tangram.i18n import ERROR_MESSAGES, MESSAGES, Msg, status_word

# Params only the Chinese text reads (the raiser passes them along).
ZH_ONLY_PARAMS = {"expected_zh", "levels_zh", "field_label"}


def _names(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


@pytest.mark.parametrize("key", sorted({**MESSAGES, **ERROR_MESSAGES}))
def test_every_message_speaks_zh_and_en_with_the_same_params(key):
    entry = ERROR_MESSAGES.get(key) or MESSAGES[key]
    assert set(entry) == {"en", "zh"}
    assert _names(entry["zh"]) - _names(entry["en"]) <= ZH_ONLY_PARAMS


def test_error_messages_are_not_field_codes():
    # A key in both would say one thing as a field's error and another as an error's.
    assert set(ERROR_MESSAGES) & set(MESSAGES) == set()


def test_an_unknown_key_fails_where_the_error_is_raised():
    with pytest.raises(KeyError, match="task_decidd"):
        Msg("task_decidd")


def test_message_is_english_and_the_body_follows_the_language():
    exc = Conflict(Msg("task_decided", status=status_word("approved")),
                   details={"current_version": 3})
    assert exc.message == str(exc) == "this task was already decided (approved)"
    assert exc.as_dict() == {"code": "conflict", "details": {"current_version": 3},
                             "message": "this task was already decided (approved)"}
    assert exc.as_dict("zh")["message"] == "该任务已被处理（已同意）"
    assert exc.as_dict("en")["message"] == exc.message
    # A plain text stays as raised in every language.
    assert TangramError("as raised").as_dict("zh")["message"] == "as raised"


def test_params_that_are_labels_or_words_follow_the_language():
    text = Msg("withdraw_after_action", node={"zh": "经理审批", "en": "manager"})
    assert text.render("en") == ("this request cannot be withdrawn: an approver already "
                                 "acted at node 'manager'")
    assert text.render("zh-CN") == "审批人已在「经理审批」环节处理，无法撤回"
    assert status_word("my_outcome") == "my_outcome"  # a flow's own outcome: as it is


def test_error_items_render_in_the_language_of_the_body():
    item = ErrorItem.localized("required", Msg("comment_required"), field="comment")
    assert item.message == "a comment needs text"
    exc = ValidationFailed([item, ErrorItem(code="x", message="plain")])
    assert exc.as_dict("zh") == {"code": "validation_failed", "message": "2 处填写有误",
                                 "errors": [{"code": "required", "field": "comment",
                                             "message": "请填写评论内容"},
                                            {"code": "x", "message": "plain"}]}
    assert exc.as_dict()["errors"][0]["message"] == "a comment needs text"


def test_validation_summary_keeps_the_language_it_was_raised_in():
    exc = ValidationFailed([ErrorItem(code="x", message="m")], language="zh")
    assert exc.message == "1 处填写有误" and exc.language == "zh"
    assert exc.as_dict("en")["message"] == "1 validation error(s)"


def test_rate_limited_and_limit_exceeded_without_a_catalog_message():
    locked = RateLimited("Too many failed sign-ins for 'li'; try again in 2 minute(s).")
    locked.retry_after = 61
    assert locked.as_dict("en")["message"] == locked.message
    assert locked.as_dict("zh")["message"] == "尝试次数过多，请 2 分钟后再试。"
    assert RateLimited("later").as_dict("zh")["message"] == "尝试次数过多，请稍后再试。"
    big = LimitExceeded("file is larger than 50 MB")
    assert big.as_dict("en")["message"] == "file is larger than 50 MB"
    assert big.as_dict("zh")["message"] == "内容超出大小上限：file is larger than 50 MB"
