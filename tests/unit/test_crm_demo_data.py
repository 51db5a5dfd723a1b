"""The CRM's demo company is package data made by a developer tool of the
package (apps_catalog/crm/tools/generate_demo.py): the committed files are
exactly its output, and the platform never imports the catalog."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
CRM = ROOT / "apps_catalog" / "crm"


def _generator() -> ModuleType:
    path = CRM / "tools" / "generate_demo.py"
    spec = importlib.util.spec_from_file_location("crm_generate_demo", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_demo_files_are_the_generators_output():
    wanted = _generator().files()
    demo = CRM / "data" / "demo"
    committed = {p.name: p.read_text(encoding="utf-8") for p in demo.glob("*.json")}
    assert sorted(committed) == sorted(wanted), (
        "data/demo differs from the generator's files; run "
        "`uv run python apps_catalog/crm/tools/generate_demo.py` and commit the result")
    stale = [name for name in wanted if committed[name] != wanted[name]]
    assert stale == [], (f"{stale} differ from the generator's output; run "
                         "`uv run python apps_catalog/crm/tools/generate_demo.py`")
    assert sum(len(t.encode()) for t in committed.values()) < 4_000_000


def test_the_generator_is_deterministic():
    gen = _generator()
    assert gen.files() == gen.files()


def test_the_platform_never_imports_the_apps_catalog():
    offenders = []
    for path in sorted((ROOT / "tangram").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names
                          if n.split(".")[0] == "apps_catalog"]
    assert offenders == []
