"""Messages of the import engine, in the user's language (codes are stable)."""

from __future__ import annotations

from typing import Any

MESSAGES: dict[str, dict[str, str]] = {
    "relation_not_found": {"en": "{label}: no record titled {value!r} in {target}",
                           "zh": "{label}：{target}中找不到“{value}”"},
    "relation_ambiguous": {"en": "{label}: {count} records in {target} are titled {value!r};"
                                 " use the record id or a unique value instead",
                           "zh": "{label}：{target}中有{count}条记录名为“{value}”，"
                                 "请改用记录ID或唯一值"},
    "user_not_found": {"en": "{label}: no user {value!r}", "zh": "{label}：找不到用户“{value}”"},
    "user_ambiguous": {"en": "{label}: {count} users are named {value!r}; use the username",
                       "zh": "{label}：有{count}个用户名为“{value}”，请改用登录名"},
    "department_not_found": {"en": "{label}: no department {value!r}",
                             "zh": "{label}：找不到部门“{value}”"},
    "department_ambiguous": {"en": "{label}: {count} departments are named {value!r}; use the "
                                   "department id",
                             "zh": "{label}：有{count}个部门名为“{value}”，请改用部门ID"},
    "dedup_ambiguous": {"en": "matches {count} existing records on {fields}; make the match "
                              "fields unique or fix the data",
                        "zh": "按{fields}匹配到{count}条已有记录，无法确定更新哪一条"},
    "formula_uncomputed": {"en": "{label}: the cell holds a formula ({formula}) but the file "
                                 "has no computed value for it; open the file in Excel or WPS "
                                 "and save it, then import it again",
                           "zh": "{label}：单元格是公式（{formula}），但文件中没有它的计算结果；"
                                 "请用 Excel 或 WPS 打开并保存文件后重新导入"},
    "extra_cells": {"en": "the row has values beyond the header's {columns} columns "
                          "({values}); give those columns a title, or, if a value holds the "
                          "delimiter (a comma), put it in double quotes",
                    "zh": "该行在表头的{columns}列之外还有内容（{values}）；请为这些列加上标题，"
                          "或者若某个值中含有分隔符（逗号），请用英文双引号把它括起来"},
    "row_failed": {"en": "row {row}: {error}", "zh": "第{row}行：{error}"},
    "reason_header": {"en": "Errors", "zh": "错误原因"},
}


def text(code: str, language: str, **params: Any) -> str:
    entry = MESSAGES[code]
    template = entry.get(language.split("-")[0]) or entry["en"]
    return template.format(**params)
