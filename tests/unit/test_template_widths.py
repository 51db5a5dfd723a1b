"""A width, padding or precision asks Python for a string of that size in one
step, which no time budget can interrupt (``'%0100000000d' % 1`` is 100 MB
at once). Every sandboxed render refuses one over ``MAX_WIDTH`` before
building it, whichever way it is written, and formats ordinary values as
before."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from tangram.engines.notify.templates import render_template
from tangram.engines.printing.render import render_text
from tangram.engines.templates import MAX_WIDTH, RenderTooLong, TemplateInvalid, sandbox
from tests.memory import peak_of

HUGE = 100_000_000

ATTACKS = [
    # printf-style: the % operator and the format filter
    f"{{{{ '%0{HUGE}d' % 1 }}}}",
    f"{{{{ '%{HUGE}s' % 'x' }}}}",
    f"{{{{ '%.{HUGE}f' % 1.5 }}}}",
    f"{{{{ '%*d' % ({HUGE}, 1) }}}}",
    f"{{{{ '%*d' % (-{HUGE}, 1) }}}}",
    f"{{{{ '%.*f' % ({HUGE}, 1.5) }}}}",
    f"{{{{ '%(n)0{HUGE}d' % {{'n': 1}} }}}}",
    "{{ ('%(n)900000d' * 120) % {'n': 1} }}",  # each under the limit, 108 MB in all
    f"{{{{ '%0{HUGE}d' | format(1) }}}}",
    f"{{{{ '%*s' | format({HUGE}, 'x') }}}}",
    f"{{{{ '%(n){HUGE}s' | format(n='x') }}}}",
    # str.format and format_map
    f"{{{{ '{{:>{HUGE}}}'.format(1) }}}}",
    f"{{{{ '{{:0{HUGE}}}'.format(1) }}}}",
    f"{{{{ '{{:.{HUGE}f}}'.format(1.5) }}}}",
    f"{{{{ '{{0:>{{1}}}}'.format('x', {HUGE}) }}}}",  # the width comes from a value
    f"{{{{ '{{n:>{HUGE}}}'.format_map({{'n': 1}}) }}}}",
    "{{ ('{0:>900000}' * 120).format(1) }}",
    f"{{% set f = '{{:>{HUGE}}}'.format %}}{{{{ f(1) }}}}",
    # padding methods, reached as attributes, items or through |attr
    f"{{{{ 'x'.center({HUGE}) }}}}",
    f"{{{{ 'x'.ljust({HUGE}, '-') }}}}",
    f"{{{{ 'x'.rjust({HUGE}) }}}}",
    f"{{{{ '7'.zfill({HUGE}) }}}}",
    f"{{{{ '\\t'.expandtabs({HUGE}) }}}}",
    "{{ ('\\t' * 1000).expandtabs(tabsize=100000) }}",
    f"{{{{ 'x'['center']({HUGE}) }}}}",
    f"{{{{ ('x' | attr('rjust'))({HUGE}) }}}}",
    f"{{{{ 'x'.encode().center({HUGE}) }}}}",
    f"{{{{ '%0{HUGE}d'.encode() % 1 }}}}",
    # filters
    f"{{{{ 'x' | center({HUGE}) }}}}",
    f"{{{{ 'x' | indent({HUGE}, true) }}}}",
    "{{ ('\\n' * 1000) | indent(100000, blank=true) }}",
    f"{{{{ [1] | tojson({HUGE}) }}}}",
    "{{ ([1] * 1000) | tojson(100000) }}",
    f"{{{{ [1] | batch({HUGE // 5}, 0) | list }}}}",
]


def _peak(render):
    return peak_of(render)[1]


@pytest.mark.parametrize("source", ATTACKS)
def test_a_huge_width_is_refused_before_it_is_built(source):
    env = sandbox(html=False, undefined="lenient")  # as flow actions build theirs

    def render():
        with pytest.raises(RenderTooLong, match=f"at most {MAX_WIDTH:,}"):
            env.from_string(source).render()

    assert _peak(render) < 20_000_000  # 100 MB or more if it were built


@pytest.mark.parametrize("source", [
    f"{{{{ ('%0{HUGE}d' | safe) % 1 }}}}",
    f"{{{{ ('{{:>{HUGE}}}' | safe).format(1) }}}}",
    f"{{{{ ('{{n:>{HUGE}}}' | safe).format_map({{'n': 1}}) }}}}",
    f"{{{{ ('x' | safe).center({HUGE}) }}}}",
    f"{{{{ ('x' | safe) | indent({HUGE}, true) }}}}",
])
def test_markup_is_refused_alike(source):
    env = sandbox(html=True)

    def render():
        with pytest.raises(RenderTooLong, match=f"at most {MAX_WIDTH:,}"):
            env.from_string(source).render()

    assert _peak(render) < 20_000_000


def test_the_limit_is_on_one_operation_and_inclusive():
    env = sandbox(html=False)
    render = env.from_string

    assert len(render(f"{{{{ '{{:>{MAX_WIDTH}}}'.format(1) }}}}").render()) == MAX_WIDTH
    assert len(render(f"{{{{ '%{MAX_WIDTH}d' % 1 }}}}").render()) == MAX_WIDTH
    assert len(render(f"{{{{ 'x'.center({MAX_WIDTH}) }}}}").render()) == MAX_WIDTH
    # Two operations just under the limit each are two operations.
    half = MAX_WIDTH // 2 + 1
    assert len(render(f"{{{{ '%{half}d' % 1 }}}}{{{{ '%{half}d' % 1 }}}}").render()) == 2 * half
    for source in (f"{{{{ '{{:>{MAX_WIDTH + 1}}}'.format(1) }}}}",
                   f"{{{{ '%{MAX_WIDTH + 1}d' % 1 }}}}",
                   f"{{{{ '%{half}d%{half}d' % (1, 2) }}}}",
                   f"{{{{ '{{:>{half}}}{{:>{half}}}'.format(1, 2) }}}}",
                   f"{{{{ 'x'.center({MAX_WIDTH + 1}) }}}}"):
        with pytest.raises(RenderTooLong):
            render(source).render()


def test_the_error_names_the_operation():
    env = sandbox(html=False)
    with pytest.raises(RenderTooLong) as caught:
        env.from_string(f"{{{{ 'Total: %0{HUGE}d' % 1 }}}}").render()
    message = str(caught.value)
    assert "'Total: %0100000000d' % …" in message
    assert f"{HUGE:,} characters" in message
    with pytest.raises(RenderTooLong, match=r"center\(100000000\)"):
        env.from_string(f"{{{{ 'x'.center({HUGE}) }}}}").render()
    # A long format is shortened in the message.
    with pytest.raises(RenderTooLong) as caught:
        env.from_string("{{ ('{0:>900000}' * 120).format(1) }}").render()
    assert len(str(caught.value)) < 300


def test_ordinary_formatting_renders_as_before():
    env = sandbox(html=False)
    cases = {
        "{{ '%05.2f' % 3.14159 }}": "03.14",
        "{{ '%s-%s' % ('a', 'b') }}": "a-b",
        "{{ '%(n)s=%(v)5.1f' % {'n': 'x', 'v': 2} }}": "x=  2.0",
        "{{ '%d%%' % 50 }}": "50%",
        "{{ '%*d|%-*s|%.*f' % (4, 7, 3, 'a', 1, 2.25) }}": "   7|a  |2.2",
        "{{ 10 % 3 }}|{{ 7.5 % 2 }}": "1|1.5",
        "{{ 'Order 20240101: %s' % 'ok' }}": "Order 20240101: ok",
        "{{ '%05d' | format(42) }}|{{ '%(a)s' | format(a=1) }}": "00042|1",
        "{{ '{:,.2f}'.format(1234567.891) }}": "1,234,567.89",
        "{{ '{:>10}'.format('ab') }}|": "        ab|",
        "{{ '{0:{1}}|{0!r}'.format('ab', 5) }}": "ab   |'ab'",
        "{{ '{n:08.3f}'.format_map({'n': 2.5}) }}": "0002.500",
        "{{ '{:%Y年%m月}'.format(day) }}": "2026年03月",
        "{{ '{:.2f}'.format(amount) }}": "1200000.50",
        "{{ 'x'.center(5, '*') }}|{{ '7'.zfill(3) }}|{{ 'a\\tb'.expandtabs(4) }}":
            "**x**|007|a   b",
        "{{ 'ab'.ljust(4) }}|{{ 'ab'.rjust(4) }}|": "ab  |  ab|",
        "{{ 'x' | center(5) }}|{{ 'a\\nb' | indent(2) }}|{{ 'a\\nb' | indent('> ') }}":
            "  x  |a\n  b|a\n> b",
        "{{ [1, 2, 3] | batch(2, 0) | list }}": "[[1, 2], [3, 0]]",
        "{{ {'a': [1]} | tojson(2) }}": '{\n  "a": [\n    1\n  ]\n}',
        "{{ {'a': 1} | tojson }}": '{"a": 1}',
    }
    for source, expected in cases.items():
        assert env.from_string(source).render(
            day=date(2026, 3, 1), amount=Decimal("1200000.5")) == expected, source


def test_escaping_and_the_sandbox_still_apply_to_formatting():
    html = sandbox(html=True)
    assert html.from_string("{{ ('<b>{}</b>' | safe).format(v) }}").render(v="<i>") == \
        "<b>&lt;i&gt;</b>"
    assert html.from_string("{{ ('<b>%s</b>' | safe) % v }}").render(v="<i>") == \
        "<b>&lt;i&gt;</b>"
    assert html.from_string("{{ ('<b>{n}</b>' | safe).format_map(v) }}").render(
        v={"n": "<i>"}) == "<b>&lt;i&gt;</b>"
    with pytest.raises(Exception, match="__class__"):
        html.from_string("{{ '{0.__class__}'.format(1) }}").render()


def test_print_and_notification_texts_report_a_huge_width_as_an_invalid_template():
    source = f"<p>\n{{{{ '%0{HUGE}d' % 1 }}}}</p>"
    with pytest.raises(TemplateInvalid, match="stopped at line 2: .*at most 1,000,000"):
        render_text(source, {})
    with pytest.raises(TemplateInvalid, match="at most 1,000,000"):
        render_template(f"{{{{ '{{:>{HUGE}}}'.format(1) }}}}", {})
