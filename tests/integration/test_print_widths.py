"""A print template asking for a huge width, padding or precision, or a
value past the size limit, is a clear 422 when printed, and the server never
builds the string; ordinary formatting, loops and joins print as before.
Over HTTP with the CRM package, on SQLite and PostgreSQL (the ``world`` of
test_printing)."""

from __future__ import annotations

import re

import pytest

from tangram.engines.templates import MAX_SIZE, MAX_WIDTH
from tests.integration.test_printing import BASE, World, template, world  # noqa: F401
from tests.memory import peak_of


@pytest.mark.parametrize("body", [
    "{{ '%0100000000d' % 1 }}",
    "{{ '{:>100000000}'.format(record.title) }}",
    "{{ record.title | center(100000000) }}",
    "{{ '%*d' | format(100000000, 1) }}",
])
def test_a_huge_width_is_refused_when_printed(world: World, body: str) -> None:  # noqa: F811
    res = world.admin.put(f"{BASE}/print-templates/wide",
                          json=template(body="<p>\n" + body + "</p>"))
    assert res.status_code == 200, res.text
    res, peak = peak_of(lambda: world["manager"].get(world.print_url("wide"),
                                                     params={"format": "html"}))
    assert res.status_code == 422, res.text
    error = res.json()
    assert error["code"] == "template_invalid"
    assert "stopped at line 2" in error["message"]
    assert f"100,000,000 characters of width, padding or precision; one operation may ask " \
           f"for at most {MAX_WIDTH:,}" in error["message"]
    assert peak < 50_000_000  # the 100 MB string was never built


def test_ordinary_formatting_still_prints(world: World) -> None:  # noqa: F811
    body = ("[{{ '%05.1f' % 3.14159 }}][{{ '{:,.2f}'.format(1234567.891) }}]"
            "[{{ '{:>6}'.format('ab') }}][{{ '%03d' | format(7) }}]")
    res = world.admin.put(f"{BASE}/print-templates/wide", json=template(body=body))
    assert res.status_code == 200, res.text
    res = world["manager"].get(world.print_url("wide"), params={"format": "html"})
    assert res.status_code == 200, res.text
    assert "[003.1][1,234,567.89][    ab][007]" in res.text


TWICE = "{% set a = a ~ a %}"


@pytest.mark.parametrize("body", [
    "{% set a = 'x' * 1000000 %}" + TWICE * 10 + "\n{{ a | length }}",
    "{% set a = 'x' * 1000000 %}\n{{ (record.title * 100).replace('', a) | length }}",
    "{% set a = 'x' * 1000000 %}\n{{ ('{0}' * 1000).format(a) | length }}",
    "{% set a = 'x' * 1000000 %}{% set l = [a] %}" + "{% set l = l + l %}" * 10
    + "\n{{ l | join | length }}",
])
def test_a_huge_value_is_refused_when_printed(world: World, body: str) -> None:  # noqa: F811
    # Each asks for a gigabyte or more (the doubling on the first line: its
    # fourth step), though the page would print a number.
    res = world.admin.put(f"{BASE}/print-templates/huge", json=template(body="<p>" + body))
    assert res.status_code == 200, res.text
    res, peak = peak_of(lambda: world["manager"].get(world.print_url("huge"),
                                                     params={"format": "html"}))
    assert res.status_code == 422, res.text
    error = res.json()
    assert error["code"] == "template_invalid"
    assert re.search(r"stopped at line [12]: .* would make a text of [\d,]+ characters; a "
                     f"template may build texts of at most {MAX_SIZE:,}", error["message"])
    assert peak < 50_000_000


def test_ordinary_loops_and_joins_still_print(world: World) -> None:  # noqa: F811
    body = ("{% set ns = namespace(parts=[]) %}{% for p in related.plans %}"
            "{% set ns.parts = ns.parts + ['%s:%s' % (loop.index, p.installment)] %}{% endfor %}"
            "[{{ ns.parts | join(',') }}][{{ ('ab' ~ 'c') * 2 }}][{{ 'a-b'.replace('-', '+') }}]")
    res = world.admin.put(f"{BASE}/print-templates/huge", json=template(
        body=body, related=[{"key": "plans", "form": "payment_plan", "via": "contract",
                             "sort": ["installment"]}]))
    assert res.status_code == 200, res.text
    res = world["manager"].get(world.print_url("huge"), params={"format": "html"})
    assert res.status_code == 200, res.text
    assert "[1:1,2:2][abcabc][a+b]" in res.text
