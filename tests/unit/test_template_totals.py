"""One render may build at most ``MAX_RENDER_SIZE`` characters and
``MAX_RENDER_ITEMS`` list items in all: the limits of one value
(``MAX_SIZE``, ``MAX_ITEMS``) alone would let a loop keep a new 10 MB text
each step, gigabytes before the time budget stops it. Proven by the peak of
what Python allocated (tracemalloc), never by time."""

from __future__ import annotations

import pytest

from tangram.engines import templates
from tangram.engines.notify.templates import render_template
from tangram.engines.printing.render import render_text
from tangram.engines.templates import (
    MAX_ITEMS,
    MAX_RENDER_ITEMS,
    MAX_RENDER_SIZE,
    RenderTooLong,
    TemplateInvalid,
    sandbox,
)
from tests.memory import peak_of
from tests.unit.test_template_sizes import ORDINARY, RECORD, ROWS

# A text of 9,000,000 characters (MAX_SIZE is 10,000,000) and a list to keep values in.
TEXT = ("{% set s = 'x' * 1000000 %}{% set s = s ~ s ~ s ~ s ~ s ~ s ~ s ~ s ~ s %}"
        "{% set keep = [] %}")
LIST = "{% set l = [0] * 900000 %}{% set keep = [] %}"  # MAX_ITEMS is 1,000,000
STEPS = 30  # 270 MB of text (216 MB of references) kept if nothing stopped it


def keeping(value: str, setup: str = TEXT, steps: int = STEPS) -> str:
    """A template that makes ``value`` anew ``steps`` times and keeps each one."""
    return (setup + f"{{% for i in range({steps}) %}}{{{{ keep.append({value}) or '' }}}}"
            "{% endfor %}{{ keep | length }}")


KEPT_TEXTS = [
    keeping("s ~ ''"),
    keeping("s + '.'"),
    keeping("s.upper()"),
    keeping("s | upper"),
    keeping("s[1:]"),
    keeping("'%s.' % s"),
    keeping("'{}.'.format(s)"),
    keeping("s.replace('x', 'y')"),
    keeping("s.split('x', 1)"),
    keeping("m()", TEXT + "{% macro m() %}{{ s }}.{% endmacro %}"),
    keeping("[s, '.'] | join"),
    TEXT + f"{{% for i in range({STEPS}) %}}{{% set b %}}{{{{ s }}}}.{{% endset %}}"
           "{{ keep.append(b) or '' }}{% endfor %}",
    # each call of a macro keeps its own, until the deepest returns
    TEXT + "{% macro deeper(n) %}{% set t = s ~ '' %}{% if n %}{{ deeper(n - 1) }}{% endif %}"
           f"{{% endmacro %}}{{{{ deeper({STEPS}) | length }}}}",
    # a scoped block renders in a context of its own, but as part of this render
    TEXT + f"{{% for i in range({STEPS}) %}}{{% block b scoped %}}{{{{ keep.append(s ~ '') "
           "or '' }}{% endblock %}{% endfor %}",
]
KEPT_ITEMS = [
    keeping("l[1:]", LIST),
    keeping("l + [1]", LIST),
    keeping("l | list", LIST),
    keeping("l.copy()", LIST),
    keeping("l * 1", LIST),
    keeping("cycler(*l)", LIST),  # the arguments, kept by the cycler
    keeping("l | map('default', *l)", LIST),  # kept by the generator
    # 120 copies of a dict of 100,000 keys: 600 MB
    keeping("namespace(d)", LIST + "{% set d = {}.fromkeys(range(100000)) %}", steps=120),
]


@pytest.mark.parametrize("source", KEPT_TEXTS + KEPT_ITEMS)
def test_a_render_that_keeps_building_is_refused_past_its_total(source):
    env = sandbox(html=False, undefined="lenient")

    def render():
        with pytest.raises(RenderTooLong, match="one render may build at most") as caught:
            env.from_string(source).render()
        return str(caught.value)

    message, peak = peak_of(render)
    # 216 MB and more kept without the total; refused once the total passes,
    # so no more than the total (1 byte a character here, 8 an item) and a
    # few values of the steps around it (their copies on the way) are held.
    assert peak < max(MAX_RENDER_SIZE, 8 * MAX_RENDER_ITEMS) + 10 * 8 * MAX_ITEMS, message


def test_the_error_names_the_step_and_the_total():
    env = sandbox(html=False)
    with pytest.raises(RenderTooLong) as caught:
        env.from_string(keeping("s.upper()")).render()
    assert str(caught.value) == (
        "upper() brings the texts this render has built to 109,000,000 characters; one "
        f"render may build at most {MAX_RENDER_SIZE:,} in all (print long texts as you go, "
        "instead of keeping or rebuilding them)")
    with pytest.raises(RenderTooLong, match=r"^a slice \[i:j\] brings the list items this "
                                            r"render has built to 10,799,999; one render "
                                            f"may build at most {MAX_RENDER_ITEMS:,} in all$"):
        env.from_string(keeping("l[1:]", LIST)).render()


def test_print_and_notification_texts_report_it_as_an_invalid_template():
    source = TEXT + "\n" + keeping("s | upper", "")
    with pytest.raises(TemplateInvalid, match="stopped at line 2: [|]upper brings the texts "
                                              "this render has built to 109,000,000"):
        render_text(source, {})
    with pytest.raises(TemplateInvalid, match="one render may build at most 100,000,000"):
        render_template(source, {})


def test_each_render_has_a_total_of_its_own():
    # 60 MB built, then dropped: fine once, and again in the next render.
    env = sandbox(html=False)
    template = env.from_string(TEXT + "{% for i in range(6) %}{% set t = s ~ '' %}{% endfor %}"
                                      "{{ s | length }}")
    for _ in range(3):
        assert template.render() == "9000000"


def test_a_dense_print_of_a_thousand_rows_stays_well_within_the_totals(monkeypatch):
    # The reference print of test_template_sizes (a macro per cell, joins,
    # groupby, batch, tojson, and two lists grown with '+' a row at a time)
    # with 1,000 rows builds about 230,000 characters and 1,000,000 list items
    # (those two lists: 1 + 2 + … + 1,000 items each). It still prints with
    # the totals cut to a hundredth and a fifth.
    monkeypatch.setattr(templates, "MAX_RENDER_SIZE", MAX_RENDER_SIZE // 100)
    monkeypatch.setattr(templates, "MAX_RENDER_ITEMS", MAX_RENDER_ITEMS // 5)
    rows = [{**ROWS[i % 3], "name": f"n{i}", "note": "备注" * 20} for i in range(1000)]
    printed = render_text(ORDINARY, {"record": RECORD, "rows": rows, "today": None})
    assert printed.count("<tr class=") == 1000


def test_large_legitimate_templates_still_render():
    env = sandbox(html=True)
    # A page of 5,000,000 characters made of 50,000 rows; and a text grown by
    # '~' a row at a time, 1,000 rows of 100 characters: each step's text
    # counts, 50,000,000 characters in all (rows of 200 would pass the total:
    # docs/print.md says to collect with {% set %}…{% endset %} instead).
    page = env.from_string("{% for i in range(50000) %}<tr><td>{{ i }}</td>{{ cell }}</tr>\n"
                           "{% endfor %}").render(cell="<td>" + "x" * 70 + "</td>")
    assert len(page) > 5_000_000
    grown = env.from_string("{% set ns = namespace(t='') %}{% for i in range(1000) %}"
                            "{% set ns.t = ns.t ~ row %}{% endfor %}{{ ns.t | length }}")
    assert grown.render(row="y" * 100) == "100000"
    collected = env.from_string("{% set t %}{% for i in range(1000) %}{{ row }}{% endfor %}"
                                "{% endset %}{{ t | length }}")
    assert collected.render(row="y" * 5000) == "5000000"


@pytest.mark.parametrize("made", ["batch(10)", "slice(10)"])
def test_the_lists_of_batch_and_slice_count_as_made(monkeypatch, made):
    monkeypatch.setattr(templates, "MAX_RENDER_ITEMS", 2_500)
    env = sandbox(html=False)
    # [0] * 1000 makes 1,000 items, and each pass of the loop 1,000 more.
    source = ("{% set l = [0] * 1000 %}{% for i in range(3) %}{% for part in l | " + made
              + " %}{% endfor %}{% endfor %}")
    with pytest.raises(RenderTooLong, match=f"^[|]{made[:5]} brings the list items"):
        env.from_string(source).render()
    assert env.from_string(source.replace("range(3)", "range(1)")).render() == ""
