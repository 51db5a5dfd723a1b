"""No value a template builds may be larger than ``MAX_SIZE`` characters (a
list: ``MAX_ITEMS`` items): a few steps of doubling, or one ``replace``,
``join``, ``%`` or ``format``, would otherwise ask for gigabytes at once,
which no time budget can interrupt. Every sandboxed render refuses such a
step before building its value, and renders ordinary templates as before."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from tangram.engines import templates
from tangram.engines.notify.templates import render_template
from tangram.engines.printing.render import render_text
from tangram.engines.templates import (
    MAX_ITEMS,
    MAX_SIZE,
    RenderTooLong,
    TemplateInvalid,
    sandbox,
)
from tests.memory import peak_of

S = "{% set s = 'x' * 1000000 %}"  # one million characters
# A tuple holding the same million characters 1,024 times: small to build
# (1,024 references), a gigabyte as text.
SHARED = S + ("{% set ns = namespace(t=(s,)) %}{% for i in range(10) %}"
              "{% set ns.t = ns.t + ns.t %}{% endfor %}")
TWICE = "{% set a = a ~ a %}"

ATTACKS = [
    # doubling, a step at a time: 1 GB after ten steps
    S + "{% set a = s %}" + TWICE * 10,
    S + "{% set a = s %}" + "{% set a = a + a %}" * 10,
    S + "{% set a = s | safe %}" + TWICE * 10,
    "{% set a = ['x'] %}" + "{% set a = a + a %}" * 30,  # 2**30 items, 8 GB of references
    "{% set a = ('x',) %}" + "{% set a = a + a %}" * 30,
    "{% set a = ['x'] %}{% for i in range(30) %}{{ a.extend(a) or '' }}{% endfor %}",
    S + "{% macro twice(n) %}{% if n %}{{ twice(n - 1) }}{{ twice(n - 1) }}{% else %}{{ s }}"
        "{% endif %}{% endmacro %}{{ twice(10) }}",
    S + "{% set a %}{{ s }}{{ s }}{% endset %}" + "{% set a %}{{ a }}{{ a }}{% endset %}" * 9,
    S + "{% set a = s %}{% filter upper %}" + "{{ a }}" * 1024 + "{% endfilter %}",
    # one step
    S + "{{ s.replace('x', s) }}",
    S + "{{ s | replace('x', s) }}",
    S + "{{ (s | safe).replace('x', s) }}",
    S + "{{ s.join(['a'] * 1000) }}",
    SHARED + "{{ ''.join(ns.t) }}",
    SHARED + "{{ ns.t | join }}",
    SHARED + "{{ ns.t | map('upper') | join }}",
    SHARED + "{{ ns.t | map('upper') | list | length }}",  # new texts, a megabyte each
    SHARED + "{{ ns.t | map('replace', 'x', 'y') | sort | length }}",
    SHARED + "{% set ns.d = [{'a': s}] * 1024 %}",
    S + "{% set ns = namespace(d=[{'a': s}]) %}{% for i in range(10) %}"
        "{% set ns.d = ns.d + ns.d %}{% endfor %}{{ ns.d | join(attribute='a') }}",
    S + "{{ ('x ' * 500000) | wordwrap(1, wrapstring=s) }}",
    S + "{{ ('%s' * 300000) % ((s,) * 300000) }}",
    S + "{{ ('%(s)s' * 1000) % {'s': s} }}",
    SHARED + "{{ ('%s' * 1024) % ns.t }}",
    SHARED + "{{ ('%s' * 1024) | format(*ns.t) }}",
    S + "{{ ('{0}' * 1000).format(s) }}",
    S + "{{ '" + "{0}" * 1000 + "'.format(s) }}",
    S + "{{ ('{s}' * 1000).format_map({'s': s}) }}",
    S + "{{ ('{0!r}' * 1000).format(s) }}",
    S + "{{ s.translate({120: s}) }}",
    "{{ ['x' * 1000000] * 1000000 }}",
    "{{ [[0] * 1000] * 1000000 }}",
    # lists of many items
    "{{ [1] | slice(100000000) | list }}",
    "{% set a = 'a,' * 500000 %}{{ (a ~ a ~ a ~ a).split(',') | length }}",
    "{% set a = 'a ' * 500000 %}{{ (a ~ a ~ a ~ a).split() | length }}",
    "{% set a = '\\n' * 1000000 %}{{ (a ~ a ~ a ~ a).splitlines() | length }}",
    "{% set a = 'x' * 1000000 %}{{ (a ~ a ~ a ~ a) | list | length }}",
    SHARED + "{% set ns.l = [[0] * 1000000] %}{% for i in range(10) %}"
             "{% set ns.l = ns.l + ns.l %}{% endfor %}{{ ns.l | sum(start=[]) | length }}",
    "{{ range(100000000) | list }}",
    # text made by the globals
    "{{ lipsum(100000000) }}",
    "{{ lipsum(1, min=100000000, max=100000001) }}",
    # a list held once and printed, or turned into text, a thousand times over
    SHARED + "{{ ns.t }}",
    SHARED + "{{ ns.t ~ '' }}",
    SHARED + "{{ ns.t | string }}",
    SHARED + "{{ ns.t | tojson }}",
    SHARED + "{{ '%s' % (ns.t,) }}",
    SHARED + "{{ '{}'.format(ns.t) }}",
    SHARED + "{{ ns }}",
]


def _peak(render):
    return peak_of(render)[1]


@pytest.mark.parametrize("source", ATTACKS)
def test_a_huge_value_is_refused_before_it_is_built(source):
    env = sandbox(html=False, undefined="lenient")  # as flow actions build theirs

    def render():
        with pytest.raises((RenderTooLong, OverflowError),
                           match="characters|items|more than|too big"):
            env.from_string(source).render()

    # Each would take a gigabyte or more (or run for hours) if it were built.
    assert _peak(render) < 50_000_000


@pytest.mark.parametrize("source", [
    S + "{% set a = s | safe %}" + TWICE * 10,
    S + "{{ ((s | safe) ~ (s | safe)).replace('x', s) }}",
    SHARED + "{{ ns.t | join('<br>' | safe) }}",
    S + "{{ (('{0}' | safe) * 1000).format(s | safe) }}",
    SHARED + "{{ ns.t | e }}",
])
def test_markup_is_refused_alike(source):
    env = sandbox(html=True)

    def render():
        with pytest.raises(RenderTooLong, match="characters"):
            env.from_string(source).render()

    assert _peak(render) < 50_000_000


@pytest.mark.parametrize("source", [
    "{% set a = '&' * 1000000 %}" + "{% set a = a | forceescape %}" * 10,
    "{% set a = '\\\\' * 1000000 %}" + "{% set a = a.encode('unicode_escape').decode() %}"
                                          * 10,
    "{% set a = '\\\\' * 1000000 %}" + "{% set a = a | tojson %}" * 10,
])
def test_growth_by_a_factor_stops_at_the_first_step_past_the_limit(source):
    # Escaping or encoding grows a text by a bounded factor; the value past
    # the limit is refused as soon as it is made, so it cannot grow further.
    env = sandbox(html=False)

    def render():
        with pytest.raises(RenderTooLong, match="characters"):
            env.from_string(source).render()

    assert _peak(render) < 200_000_000  # 10 GB and more after the steps written


def test_the_limits_are_inclusive():
    env = sandbox(html=False)

    def length(source):
        return int(env.from_string(source + "{{ a | length }}").render())

    half = "{% set h = 'x' * " + str(MAX_SIZE // 10) + " %}{% set h = h ~ h ~ h ~ h ~ h %}"
    assert length(half + "{% set a = h ~ h %}") == MAX_SIZE
    assert length(half + "{% set a = h + h %}") == MAX_SIZE
    assert length(half + "{% set a = h.replace('x', 'yy') %}") == MAX_SIZE
    assert length(half + "{% set a = [h, h] | join %}") == MAX_SIZE
    assert length(half + "{% set a = '%s%s' % (h, h) %}") == MAX_SIZE
    assert length(half + "{% set a = '{0}{0}'.format(h) %}") == MAX_SIZE
    assert length("{% set a = 'x' * 1000 %}{% set a = ([a] * 1000) | join %}") == 1_000_000
    assert length(f"{{% set a = ('x' * {MAX_ITEMS}) | list %}}") == MAX_ITEMS
    for source in (half + "{% set a = h ~ h ~ 'x' %}",
                   half + "{% set a = h + h + 'x' %}",
                   half + "{% set a = (h ~ 'x').replace('x', 'yy') %}",
                   half + "{% set a = [h, h, 'x'] | join %}",
                   half + "{% set a = '%s%s.' % (h, h) %}",
                   half + "{% set a = '{0}{0}.'.format(h) %}",
                   f"{{% set a = ('x' * {MAX_ITEMS} ~ 'x') | list %}}",
                   f"{{% set a = [0] | slice({MAX_ITEMS + 1}) | list %}}"):
        with pytest.raises(RenderTooLong):
            env.from_string(source).render()


def test_the_error_names_the_operation_and_the_limit():
    env = sandbox(html=False)
    with pytest.raises(RenderTooLong) as caught:
        env.from_string(S + "{{ s.replace('x', s) }}").render()
    assert str(caught.value) == (
        "replace() would make a text of 1,000,000,000,000 characters; a template may build "
        f"texts of at most {MAX_SIZE:,}")
    with pytest.raises(RenderTooLong, match=r"^'~' would make a text of 16,000,000 characters"):
        env.from_string(S + "{% set a = s %}" + TWICE * 10).render()
    with pytest.raises(RenderTooLong, match=r"^slice\(100000000\) would make a list of "
                                            r"100,000,000 items; a template may build "
                                            f"lists of at most {MAX_ITEMS:,}$"):
        env.from_string("{{ [1] | slice(100000000) | list }}").render()
    with pytest.raises(RenderTooLong, match=r"^printing a tuple would make a text of"):
        env.from_string(SHARED + "{{ ns.t }}").render()


def test_statements_check_the_time_budget(monkeypatch):
    # A budget already used up: rendering any statement stops.
    monkeypatch.setattr(templates, "RENDER_SECONDS", -1.0)
    env = sandbox(html=False)
    for source in ("{% set a = 1 %}done", "{% set a %}x{% endset %}done"):
        with pytest.raises(RenderTooLong, match="ran for more than"):
            env.from_string(source).render()


def test_the_whole_output_of_a_render_is_capped():
    env = sandbox(html=False)
    source = "{% set a = 'x' * 1000000 %}{% for i in range(11) %}{{ a }}{% endfor %}"

    def render():
        with pytest.raises(RenderTooLong, match="output"):
            env.from_string(source).render()

    assert _peak(render) < 50_000_000
    assert len(env.from_string(source.replace("11", "10")).render()) == MAX_SIZE


ORDINARY = """\
{%- macro cell(value, cls='') -%}
<td{% if cls %} class="{{ cls }}"{% endif %}>{{ value }}</td>
{%- endmacro -%}
{%- set ns = namespace(total=0, names=[], lines=()) -%}
<h1>{{ record.title | upper }} · {{ '%s-%04d' % (record.code, record.seq) }}</h1>
<p>{{ '客户：{}（{}）'.format(record.account, record.region | join('/')) }}</p>
<table>
{%- for row in rows %}
  {%- set ns.total = ns.total + row.amount %}
  {%- set ns.names = ns.names + [row.name] %}
  {%- set ns.lines = ns.lines + (loop.index,) %}
  <tr class="{{ loop.cycle('odd', 'even') }}">{{ cell(loop.index) }}{{ cell(row.name ~ ' ×' ~ row.qty) }}
  {{- cell('{:,.2f}'.format(row.amount), 'num') }}{{ cell(row.note | default('—') | replace(';', '；')) }}</tr>
{%- else %}
  <tr><td>none</td></tr>
{%- endfor %}
</table>
{% set summary %}{{ rows | length }} 行，合计 {{ '%.2f' | format(ns.total) }}{% endset -%}
<p>{{ summary }} / {{ ns.names | join('、') }} / {{ ns.lines | list }} / {{ rows | sum(attribute='qty') }}</p>
<p>{{ rows | map(attribute='name') | map('lower') | join(', ') }}</p>
{% for group in rows | groupby('kind') -%}
<h2>{{ group.grouper }}</h2><p>{{ group.list | map(attribute='name') | join(' ') }}</p>
{% endfor -%}
{% for batch in rows | batch(2, '-') %}[{% for r in batch %}{{ r.name if r.name else r }}{% if not loop.last %},{% endif %}{% endfor %}]{% endfor %}
{% for part in rows | slice(2) %}<{{ part | length }}>{% endfor %}
<pre>{{ record.remark | wordwrap(20) }}</pre>
<p>{{ record.remark.split(' ')[:3] | join('_') }} {{ 'a,b,,c'.split(',') }} {{ record.title.replace('合同', '协议') }}</p>
<p>{{ ('-' * 10) ~ '|' ~ 'x'.center(7, '*') ~ '|' ~ ([1, 2] * 2) | join }}</p>
<p>{{ '{name}={value:08.3f}'.format_map({'name': 'rate', 'value': 2.5}) }} {{ 2 ** 10 }} {{ 17 % 5 }} {{ today }}</p>
<script>var data = {{ {'n': ns.names, 'total': ns.total | string} | tojson }};</script>
{% filter upper %}{% for i in range(3) %}{{ i }}{{ 'ab' + 'c' }}{% endfor %}{% endfilter %}
{{ rows | selectattr('qty', 'gt', 1) | map(attribute='name') | list | length }} {{ rows | sort(attribute='amount', reverse=true) | first | attr('name') }}
{%- for k, v in {'b': 2, 'a': 1} | dictsort %} {{ k }}:{{ v }}{% endfor %} {{ [3, 1, 2] | unique | sort | reverse | list }} {{ 'Hello' | truncate(3, true, '…', 0) }}
{{ record.missing.field }}|{{ record.html | safe }}|{{ '<b>' }}|{{ 'a\\tb' | indent(2, true) }}|{{ 'x y' | urlencode }}|{{ {'id': 'x&y'} | xmlattr }}
"""  # noqa: E501

ROWS = [
    {"name": "Server", "qty": 2, "amount": Decimal("1200.50"), "note": "rack;2U", "kind": "hw"},
    {"name": "License", "qty": 1, "amount": Decimal("800.00"), "note": None, "kind": "sw"},
    {"name": "Support", "qty": 3, "amount": Decimal("99.99"), "note": "24/7", "kind": "sw"},
]
RECORD = {"title": "私有化部署合同", "code": "HT", "seq": 7, "account": "上海华创",
          "region": ["上海市", "浦东新区"], "html": "<i>ok</i>",
          "remark": "The quick brown fox jumps over the lazy dog and keeps running far away"}

# What the template printed before the size checks existed.
PRINTED = (
    '<h1>私有化部署合同 · HT-0007</h1>\n<p>客户：上海华创（上海市/浦东新区）</p>\n<table>\n'
    '  <tr class="odd"><td>1</td><td>Server ×2</td><td class="num">1,200.50</td>'
    '<td>rack；2U</td></tr>\n'
    '  <tr class="even"><td>2</td><td>License ×1</td><td class="num">800.00</td>'
    '<td>None</td></tr>\n'
    '  <tr class="odd"><td>3</td><td>Support ×3</td><td class="num">99.99</td>'
    '<td>24/7</td></tr>\n</table>\n'
    '<p>3 行，合计 2100.49 / Server、License、Support / [1, 2, 3] / 6</p>\n'
    '<p>server, license, support</p>\n<h2>hw</h2><p>Server</p>\n'
    '<h2>sw</h2><p>License Support</p>\n[Server,License][Support,-]\n<2><1>\n'
    '<pre>The quick brown fox\njumps over the lazy\ndog and keeps\nrunning far away</pre>\n'
    '<p>The_quick_brown [&#39;a&#39;, &#39;b&#39;, &#39;&#39;, &#39;c&#39;] 私有化部署协议</p>\n'
    '<p>----------|***x***|1212</p>\n<p>rate=0002.500 1024 2 2026-03-01</p>\n'
    '<script>var data = {"n": ["Server", "License", "Support"], "total": "2100.49"};'
    '</script>\n0ABC1ABC2ABC\n2  a:1 b:2 [3, 2, 1] He…\n'
    '|<i>ok</i>|&lt;b&gt;|  a\tb|x%20y| id="x&amp;y"')


def test_an_ordinary_print_template_renders_as_before():
    variables = {"record": RECORD, "rows": ROWS, "today": date(2026, 3, 1)}
    assert render_text(ORDINARY, variables) == PRINTED
    # A thousand rows: loops, macros, joins and namespaces work as they did.
    rows = [{**ROWS[i % 3], "name": f"n{i}"} for i in range(1000)]
    printed = render_text(ORDINARY, {**variables, "rows": rows})
    assert printed.count("<tr class=") == 1000
    assert "1000 行，合计 700663.67" in printed


def test_print_and_notification_texts_report_a_huge_value_as_an_invalid_template():
    source = S + "<p>\n{{ s.replace('x', s) }}</p>"
    with pytest.raises(TemplateInvalid, match="stopped at line 2: replace.*at most 10,000,000"):
        render_text(source, {})
    with pytest.raises(TemplateInvalid, match="at most 10,000,000"):
        render_template(S + "{{ ('{0}' * 1000).format(s) }}", {})


def test_joining_with_markup_is_measured_as_escaped():
    # '~' with a Markup part escapes the others as it joins them: a '"' grows
    # to '&#34;'. Measured before the join that is 5,000,001 characters; made,
    # 25,000,001 — refused, not kept (a list could keep many of them).
    env = sandbox(html=True)
    quotes = "{% set q = '\"' * 1000000 %}{% set q = q ~ q ~ q ~ q ~ q %}"
    with pytest.raises(RenderTooLong, match=r"^'~' would make a text of 25,000,001 characters"):
        env.from_string(quotes + "{% set a = ('.' | safe) ~ q %}{{ a | length }}").render()
    assert env.from_string(quotes + "{{ (('.' | safe) ~ q[:1000]) | length }}").render() == \
        "5001"
