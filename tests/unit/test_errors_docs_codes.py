"""Every ``errors[].code`` the server can return is documented in docs/errors.md.

The codes are collected from the source, not from a list kept by hand: an AST
walk over ``tangram/`` finds each ``ErrorItem(code="…")`` (and
``ErrorItem.localized("…")``, ``PydanticCustomError("…")``), follows a code
that is a parameter to every call of its function (``self.error(n,
"unreachable", …)``, ``add("data_ref", …)``, ``FieldProblem("max")``) and a
code that is a local variable to the literals assigned to it. A code site the
walk cannot resolve fails the test unless it is one of the few ``DYNAMIC``
sites below, each with its reason — so a new code, or a new way of building
one, cannot reach users undocumented.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from tangram.platform.auth.password_policy import PASSWORD_RULES

ROOT = Path(__file__).parents[2]
PACKAGE = ROOT / "tangram"
DOC = (ROOT / "docs" / "errors.md").read_text()

# Code sites whose code is built at run time: (file, the code expression) →
# the codes it can give. Keyed by the expression's text, not its line.
DYNAMIC: dict[tuple[str, str], set[str]] = {
    # pydantic's own error types (missing, extra_forbidden, literal_error …):
    # an open set owned by pydantic; errors.md documents the common ones and
    # points to pydantic's list. Our own custom types are PydanticCustomError
    # literals, which the walk collects.
    ("tangram/metamodel/storage.py", "err['type']"): set(),
    ("tangram/engines/reports/service.py", "err['type']"): set(),
    ("tangram/engines/reports/alerts.py", "e['type']"): set(),
    # the password policy's rule keys, prefixed (``length`` stays ``length``)
    ("tangram/platform/auth/service.py", "f'password_{code}' if code != 'length' else code"):
        {f"password_{r.key}" if r.key != "length" else "length" for r in PASSWORD_RULES},
    # (code, file, path, name) tuples built just above the ErrorItem
    ("tangram/platform/packages/data.py", "code"): {"data_owner", "data_user"},
    # codes yielded by ``_check_value`` as (path, code, message)
    ("tangram/platform/packages/rows.py", "code"):
        {"data_date", "data_ref", "data_user", "data_file", "data_value"},
    # a field check's (code, params) — "scale", "option", "region_city" … —
    # named by its catalog message: i18n.MESSAGES, whose every key
    # test_errors_docs.py requires in errors.md
    ("tangram/engines/forms/validation.py", "failed.problem[0]"): set(),
    ("tangram/engines/forms/validation.py", "problem[0]"): set(),
    ("tangram/engines/forms/validation.py", "code"): set(),
    # (code, path, name) tuples of named_users(): a $owner or a $user
    ("tangram/platform/packages/loader.py", "code"): {"data_owner", "data_user"},
    # a reference to a definition the package lacks: the kinds definitions
    # refer to (PackageKind.references: form, report, role) and menus link to
    ("tangram/platform/packages/loader.py", "f'unknown_{kind}'"):
        {"unknown_form", "unknown_report", "unknown_role", "unknown_dashboard"},
    # a report whose form cannot be loaded: the loader's error code, else this
    ("tangram/engines/reports/kpi.py", "getattr(exc, 'code', 'form_not_found')"):
        {"form_not_found"},
}


def _literals(node: ast.AST | None) -> list[str] | None:
    """The codes a literal gives — ``"x"``, or ``"x" if … else "y"`` — else None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.IfExp):
        body, orelse = _literals(node.body), _literals(node.orelse)
        return body + orelse if body is not None and orelse is not None else None
    return None


def _argument(call: ast.Call, index: int, name: str) -> ast.AST | None:
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value
    return call.args[index] if 0 <= index < len(call.args) else None


def _called_name(call: ast.Call) -> str | None:
    f = call.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None


class _Module:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = path.relative_to(ROOT).as_posix()
        self.tree = ast.parse(path.read_text())
        self.parent: dict[ast.AST, ast.AST] = {
            child: node for node in ast.walk(self.tree) for child in ast.iter_child_nodes(node)}

    def function_of(self, node: ast.AST) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
        while node in self.parent:
            node = self.parent[node]
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                return node
        return None


class _Collector:
    """codes: code → places; sinks: (module, callable) → (position, parameter,
    1 when the callable is a method or class called bound); unresolved: code
    expressions the walk cannot follow."""

    def __init__(self) -> None:
        self.modules = [_Module(p) for p in sorted(PACKAGE.rglob("*.py"))]
        self.codes: dict[str, set[str]] = {}
        self.sinks: dict[tuple[str, str], tuple[int, str, int]] = {}
        self.unresolved: set[tuple[str, str]] = set()
        self._seen: set[tuple[str, str, int]] = set()  # calls already followed

    def run(self) -> _Collector:
        for m in self.modules:
            for node in ast.walk(m.tree):
                if isinstance(node, ast.Call) and self._is_code_site(node):
                    self.value(m, _argument(node, 0, "code"), node)
                elif isinstance(node, ast.Assign) and any(  # self.code = code
                        isinstance(t, ast.Attribute) and t.attr == "code"
                        and isinstance(t.value, ast.Name) and t.value.id == "self"
                        for t in node.targets) and not isinstance(node.value, ast.Constant):
                    self.value(m, node.value, node)
        done = -1
        while done != len(self.sinks):  # a sink's callers may make new sinks
            done = len(self.sinks)
            for m in self.modules:
                self._calls(m)
        return self

    @staticmethod
    def _is_code_site(call: ast.Call) -> bool:
        f = call.func
        if isinstance(f, ast.Name):
            return f.id in ("ErrorItem", "PydanticCustomError")
        return (isinstance(f, ast.Attribute) and f.attr == "localized"
                and isinstance(f.value, ast.Name) and f.value.id == "ErrorItem")

    def found(self, code: str, m: _Module, node: ast.AST) -> None:
        self.codes.setdefault(code, set()).add(f"{m.name}:{getattr(node, 'lineno', 0)}")

    def value(self, m: _Module, value: ast.AST | None, site: ast.AST) -> None:
        """Resolve a code expression: a literal, a parameter, a local variable
        given literals, another error's ``.code`` — or unresolved."""
        if (codes := _literals(value)) is not None:
            for code in codes:
                self.found(code, m, site)
            return
        if isinstance(value, ast.Attribute) and value.attr == "code":
            return  # re-raises another error's code, collected where it was made
        fn = m.function_of(site)
        if isinstance(value, ast.Name) and fn is not None:
            if self._sink(m, fn, value.id):
                return
            given = [n.value for n in ast.walk(fn) if isinstance(n, ast.Assign)
                     and any(isinstance(t, ast.Name) and t.id == value.id for t in n.targets)]
            literals = [_literals(g) for g in given]
            if given and all(c is not None for c in literals):
                for g, codes in zip(given, literals, strict=True):
                    for code in codes or ():
                        self.found(code, m, g)
                return
        text = ast.unparse(value) if value is not None else "<none>"
        codes = DYNAMIC.get((m.name, text))
        if codes is None:
            self.unresolved.add((m.name, f"{text} (line {getattr(site, 'lineno', 0)})"))
        for code in codes or ():
            self.found(code, m, site)

    def _sink(self, m: _Module, fn: ast.FunctionDef | ast.AsyncFunctionDef, name: str) -> bool:
        positional = [a.arg for a in fn.args.posonlyargs + fn.args.args]
        if name not in positional + [a.arg for a in fn.args.kwonlyargs]:
            return False
        owner = m.parent.get(fn)
        bound = int(isinstance(owner, ast.ClassDef) and positional[:1] in (["self"], ["cls"]))
        called = owner.name if isinstance(owner, ast.ClassDef) and fn.name == "__init__" \
            else fn.name
        key = (m.name, called)
        if key not in self.sinks:
            index = positional.index(name) if name in positional else -1
            self.sinks[key] = (index, name, bound)
            args = fn.args.posonlyargs + fn.args.args
            defaults = list(zip(args[len(args) - len(fn.args.defaults):], fn.args.defaults))
            defaults += [(a, d) for a, d in zip(fn.args.kwonlyargs, fn.args.kw_defaults)
                         if d is not None]
            for a, d in defaults:
                if a.arg == name:
                    for code in _literals(d) or ():
                        self.found(code, m, d)
        return True

    def _calls(self, m: _Module) -> None:
        # A helper is called from its own module (they are private or methods).
        local = {called: spec for (mod, called), spec in self.sinks.items() if mod == m.name}
        for node in ast.walk(m.tree):
            if not isinstance(node, ast.Call) or (name := _called_name(node)) not in local:
                continue
            if (m.name, name, node.lineno) in self._seen:
                continue
            self._seen.add((m.name, name, node.lineno))
            index, parameter, bound = local[name]
            via_attribute = isinstance(node.func, ast.Attribute)
            if via_attribute != bool(bound) and not name[:1].isupper():
                continue  # a method is called as x.name(…), a function as name(…)
            value = _argument(node, index - bound if bound else index, parameter)
            if value is not None:
                self.value(m, value, node)


def _collect() -> _Collector:
    return _Collector().run()


def _documented(code: str) -> bool:
    return f"`{code}`" in DOC


def test_the_walk_finds_the_codes_it_should():
    """The walk sees literal, helper-passed, class-carried and variable codes."""
    codes = _collect().codes
    assert {"formula_cycle", "default_reads_computed", "fill_from"} <= codes.keys()  # literal
    assert {"unreachable", "loop_without_wait"} <= codes.keys()  # flows' self.error(n, …)
    assert {"data_ref", "data_key", "data_org"} <= codes.keys()  # nested add(code, …)
    assert {"expression_type", "max"} <= codes.keys()  # CalcProblem / FieldProblem(code)
    assert "relation_missing" in codes  # code = "…" then _field_error(…, code)
    assert "duplicate_key" in codes  # PydanticCustomError("duplicate_key", …)
    assert "invalid" in codes  # a helper's default code


def test_every_code_site_is_resolved():
    unresolved = sorted(_collect().unresolved)
    assert unresolved == [], (
        "cannot tell which codes these sites give: use a literal code, or add the site "
        "to DYNAMIC in this test with the codes it gives and why")


def test_every_dynamic_site_still_exists():
    c = _collect()
    sources = {m.name: m.path.read_text() for m in c.modules}
    gone = [site for site in DYNAMIC
            if not any(ast.unparse(n) == site[1] for n in ast.walk(ast.parse(sources[site[0]])))]
    assert gone == [], "remove these sites from DYNAMIC"


def test_every_code_is_documented_in_errors_md():
    missing = {code: sorted(places)[:3] for code, places in _collect().codes.items()
               if not _documented(code)}
    assert missing == {}, "document these errors[].code values in docs/errors.md"


def _sections() -> Iterator[str]:
    yield from (line for line in DOC.splitlines() if line.startswith("#"))


def test_definition_codes_have_their_own_section():
    assert "## Definition and publish errors · 定义与发布错误" in set(_sections())
