"""The house's floors: no module imports one from a layer above it (parsed, not imported, so lazy
imports inside functions count too)."""

from __future__ import annotations

import ast
from pathlib import Path

import slifmr

SRC = Path(slifmr.__file__).resolve().parent
# package -> packages it must never import (directly or lazily)
FORBIDDEN = {
    "graphs": ("data", "models", "callbacks", "report", "prepare", "features"),
    "metrics": ("data", "models", "callbacks", "report", "prepare"),
    "data": ("models", "callbacks", "report"),
    "models": ("data", "callbacks", "report", "prepare"),
    "callbacks": ("data", "report", "prepare"),
}


def is_entry_point(top: str) -> bool:
    """``python -m slifmr.<top>`` runs it: a module with a ``__main__`` guard or a package with
    ``__main__.py``. Only these may import the report (it only reads records)."""
    if (SRC / top / "__main__.py").exists():
        return True
    f = SRC / f"{top}.py"
    return f.exists() and '__name__ == "__main__"' in f.read_text()


def package_of(path: Path) -> str:
    return ".".join(("slifmr", *path.relative_to(SRC).with_suffix("").parts[:-1]))


def imported_modules(source: str, package: str) -> set[str]:
    """Every absolute ``slifmr.*`` module a source file of ``package`` imports (relative ones resolved)."""
    tree = ast.parse(source)
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base]) if base else ".".join(parts)
            out.add(base)
    return {m for m in out if m == "slifmr" or m.startswith("slifmr.")}


def modules() -> list[tuple[str, Path]]:
    """(top-level package or module name under slifmr, file) of every source file."""
    return [(p.relative_to(SRC).parts[0].removesuffix(".py"), p) for p in sorted(SRC.rglob("*.py"))]


def test_imports_parse_relative_and_lazy_ones():
    """The parser sees what the rule needs: lazy imports in functions and relative imports."""
    src = "import torch\ndef g():\n    from slifmr.data import cache\n    from ..models import base\n    from . import knn\n"
    assert imported_modules(src, "slifmr.graphs") == {"slifmr.data", "slifmr.models", "slifmr.graphs"}


def test_entry_points_are_recognised():
    assert is_entry_point("train") and is_entry_point("report") and is_entry_point("prepare")
    assert not is_entry_point("runner") and not is_entry_point("models")


def test_no_module_imports_a_layer_above_it():
    bad = []
    for top, path in modules():
        for mod in imported_modules(path.read_text(), package_of(path)):
            parts = mod.split(".")
            target = parts[1] if len(parts) > 1 else ""
            if target in FORBIDDEN.get(top, ()):
                bad.append(f"{path.relative_to(SRC)} imports {mod}")
            if target == "report" and not is_entry_point(top):
                bad.append(f"{path.relative_to(SRC)} imports {mod} (only entry points may read the report)")
    assert not bad, "\n".join(bad)
