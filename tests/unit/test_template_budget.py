"""Every sandboxed render has the same budget (print, notification and flow
action texts alike), and checking a template never evaluates it."""

from __future__ import annotations

import tracemalloc

import pytest

from tangram.engines.notify.templates import render_template
from tangram.engines.templates import (
    RENDER_SECONDS,
    RenderTooLong,
    TemplateInvalid,
    sandbox,
    template_problem,
)

NESTED = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
EXPONENTIAL = ("{% macro m(n) %}{% if n %}{{ m(n - 1) }}{{ m(n - 1) }}{% endif %}{% endmacro %}"
               "{{ m(60) }}")


@pytest.mark.parametrize("source", [NESTED, EXPONENTIAL])
def test_a_runaway_notification_text_stops_on_its_budget(source):
    # Without the budget these would run for hours (or forever).
    with pytest.raises(TemplateInvalid, match=f"more than {RENDER_SECONDS:g} s"):
        render_template(source, {})


def test_every_sandbox_is_budgeted():
    env = sandbox(html=False, undefined="lenient")  # as flow actions build theirs
    with pytest.raises(RenderTooLong):
        env.from_string(NESTED).render()
    with pytest.raises(RenderTooLong, match="more than 1,000,000"):
        env.from_string("{{ [0] * 10000000 }}").render()


def test_ordinary_templates_render_as_before():
    env = sandbox(html=True, undefined="lenient")
    source = ("{% for x in items if x %}{{ loop.index }}/{{ loop.length }}{% else %}-"
              "{% endfor %}|{{ 'ab' * 2 }}|{{ 2 ** 10 }}|{{ 3 * 1.5 }}|{{ range(3)|sum }}|"
              "{% autoescape false %}{{ '<b>' }}{% endautoescape %}{{ '<b>' }}")
    assert env.from_string(source).render(items=[1, 0, 2]) == \
        "1/22/2|abab|1024|4.5|3|<b>&lt;b&gt;"
    assert env.from_string("{% for x in [] %}x{% else %}none{% endfor %}").render() == "none"


def test_checking_a_template_does_not_evaluate_it():
    for source in ("{{ 'a' * 100000000 }}", "{{ 10 ** 100000000 }}",
                   "{{ 'a' | center(100000000) }}", "{% set x = 'a' * 100000000 %}"):
        tracemalloc.start()
        assert template_problem(source) is None
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < 20_000_000, source  # nothing was built (100 MB if evaluated)


@pytest.mark.parametrize("source", ["{% include 'x' %}", "{% import 'x' as y %}",
                                    "{% from 'x' import y %}", "{% extends 'x' %}"])
def test_loading_another_template_is_a_problem(source):
    assert "is not available" in template_problem("<p>\n" + source)
    assert template_problem("<p>\n" + source).startswith("line 2:")


@pytest.mark.parametrize("source", [
    "{% macro m() %}{% call m() %}{% endcall %}{% endmacro %}",
    "{% macro m() %}{% for x in m() %}{% endfor %}{% endmacro %}",
    "{% macro m() %}{% if m() %}{% endif %}{% endmacro %}",
    "{% macro m() %}{{ 1 if m() else 2 }}{% endmacro %}",
    "{% macro m() %}{{ m() and 1 }}{% endmacro %}",
])
def test_a_macro_that_always_calls_itself_is_found_wherever_the_call_is(source):
    # The test of an if, the items of a for, the call of a {% call %} block
    # and the left of and/or always run: the recursion never ends.
    assert "always calls itself" in template_problem(source)


@pytest.mark.parametrize("source", [
    "{% macro m(n) %}{{ n and m(n - 1) }}{% endmacro %}{{ m(3) }}",
    "{% macro m(n) %}{{ not n or m(n - 1) }}{% endmacro %}{{ m(3) }}",
    "{% macro m(n) %}{{ m(n - 1) if n else '' }}{% endmacro %}{{ m(3) }}",
    "{% macro m(n) %}{% for x in range(n) %}{{ m(x) }}{% endfor %}{% endmacro %}{{ m(3) }}",
])
def test_a_macro_that_may_stop_calling_itself_is_not_a_problem(source):
    # The right of and/or runs only when the left does not decide.
    assert template_problem(source) is None
    sandbox(html=False).from_string(source).render()
