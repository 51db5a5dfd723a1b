"""Print templates that could only fail or run away when printed: refused when
saved (include/import/extends), or stopped by the render's time budget with a
clear 422 — while the database stays free for other requests. Over HTTP with
the CRM package, on SQLite and PostgreSQL (the ``world`` of test_printing)."""

from __future__ import annotations

import tracemalloc
from typing import Any

import pytest

from tangram.engines.printing import service as print_service
from tangram.engines.templates import RENDER_SECONDS
from tests.integration.test_printing import BASE, World, template, world  # noqa: F401

NESTED = ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
          "done")


def test_a_runaway_loop_stops_with_a_clear_error_and_locks_nothing(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    engine = world.app.state.engine
    probes: list[str] = []
    render_html = print_service.render_html

    def probing_render(*args: Any, **kwargs: Any) -> str:
        # While the template renders, another connection can take the write lock.
        if engine.dialect.name == "sqlite":
            raw = engine.raw_connection()
            try:
                raw.execute("PRAGMA busy_timeout=200")
                try:
                    raw.execute("BEGIN IMMEDIATE")
                    raw.execute("ROLLBACK")
                    probes.append("free")
                except Exception as exc:
                    probes.append(str(exc))
                raw.execute("PRAGMA busy_timeout=30000")
            finally:
                raw.close()
        return render_html(*args, **kwargs)

    monkeypatch.setattr(print_service, "render_html", probing_render)
    res = world.admin.put(f"{BASE}/print-templates/runaway", json=template(body=NESTED))
    assert res.status_code == 200, res.text
    # Without the budget this request would never come back.
    res = world["manager"].get(world.print_url("runaway"), params={"format": "html"})
    assert res.status_code == 422, res.text
    error = res.json()
    assert error["code"] == "template_invalid"
    assert "stopped at line 1" in error["message"]
    assert f"more than {RENDER_SECONDS:g} s" in error["message"]
    if engine.dialect.name == "sqlite":
        assert probes == ["free"]
    # Nothing is left locked: writes go on at once.
    res = world.admin.post(f"{BASE}/forms/account/records",
                           json={"values": {"name": "运行后新客户"}})
    assert res.status_code == 201, res.text
    # An ordinary template still prints, loops and all.
    body = "{% for p in related.plans %}[{{ loop.index }}]{% endfor %}{{ 'ab' * 2 }}"
    assert world.admin.put(f"{BASE}/print-templates/runaway", json=template(
        body=body, related=[{"key": "plans", "form": "payment_plan", "via": "contract"}])
    ).status_code == 200
    res = world["manager"].get(world.print_url("runaway"), params={"format": "html"})
    assert res.status_code == 200, res.text
    assert "[1][2]abab" in res.text


@pytest.mark.parametrize(("body", "tag"), [
    ("{% include '/etc/passwd' %}", "{% include %}"),
    ("<p>\n{% import 'x.html' as x %}", "{% import %}"),
    ("{% from 'x.html' import m %}", "{% from … import %}"),
    ("{% extends 'base.html' %}", "{% extends %}"),
])
def test_loading_other_templates_is_refused_when_saved(world: World, body: str,  # noqa: F811
                                                       tag: str) -> None:
    res = world.admin.put(f"{BASE}/print-templates/loader", json=template(body=body))
    assert res.status_code == 422, res.text
    error = res.json()
    assert error["code"] == "template_invalid"
    assert f"line {body.count(chr(10)) + 1}: {tag} is not available" in error["message"]
    assert world.admin.get(f"{BASE}/print-templates/loader").status_code == 404


def test_huge_values_cost_nothing_to_save_and_are_refused_when_printed(
        world: World) -> None:  # noqa: F811
    for body, refused in (("{{ 'a' * 100000000 }}", "makes more than 1,000,000"),
                          ("{{ 10 ** 100000000 }}", "too large to compute")):
        tracemalloc.start()
        res = world.admin.put(f"{BASE}/print-templates/huge", json=template(body=body))
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert res.status_code == 200, res.text
        assert peak < 20_000_000  # saving built nothing (100 MB if it folded constants)
        res = world["manager"].get(world.print_url("huge"), params={"format": "html"})
        assert res.status_code == 422, res.text
        assert res.json()["code"] == "template_invalid"
        assert refused in res.json()["message"]
