"""What a source file imports, read from its syntax tree (also imports inside functions)."""

from __future__ import annotations

import ast
from pathlib import Path


def absolute_imports_of(path: Path) -> set[str]:
    """Module names of every absolute import in `path`; relative imports stay inside a package."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found
