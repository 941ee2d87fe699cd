"""The source keeps its shape: short files, short functions, no private names across packages.

Limits from the developers' guide: no source file over 500 lines, no function over 80 lines of
code (blank lines, comments and docstrings not counted), and no name starting with ``_``
imported from another package of qsmiron (a package's private helpers stay inside it).
``python tests/test_code_shape.py`` prints the figures.
"""

from __future__ import annotations

import ast
import io
import sys
import tokenize
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "src" / "qsmiron"
MAX_FILE_LINES = 500
MAX_FUNCTION_CODE_LINES = 80


def _code_lines(text: str) -> set[int]:
    """Line numbers holding code: not blank, not only a comment, not inside a docstring."""
    lines: set[int] = set()
    docstrings: set[int] = set()
    tree = ast.parse(text)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
                    and isinstance(body[0].value.value, str):
                docstrings.update(range(body[0].lineno, body[0].end_lineno + 1))
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                          tokenize.ENDMARKER):
            continue
        lines.update(range(token.start[0], token.end[0] + 1))
    return lines - docstrings


def function_lengths() -> list[tuple[int, str]]:
    """(code lines, ``file:function``) of every function and method of the package."""
    out = []
    for path in sorted(SOURCE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        code = _code_lines(text)
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                span = range(node.lineno, node.end_lineno + 1)
                out.append((len(code.intersection(span)), f"{path.relative_to(SOURCE)}:{node.name}"))
    return sorted(out, reverse=True)


def file_lengths() -> list[tuple[int, str]]:
    return sorted(((len(path.read_text(encoding="utf-8").splitlines()), str(path.relative_to(SOURCE)))
                   for path in SOURCE.rglob("*.py")), reverse=True)


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _package_of(module: str) -> str:
    """``qsmiron.recon.invert.tv_admm`` -> ``qsmiron.recon.invert``: the package a module is in."""
    return module.rsplit(".", 1)[0]


def _owner(source: str, names: list[str]) -> str | None:
    """The package whose private part an import reaches: the package holding the first private
    module of ``source``, else (private names) the package of ``source``; None when nothing is private."""
    parts = source.split(".")
    for index, part in enumerate(parts):
        if _is_private(part):
            return ".".join(parts[:index])
    if names:
        module = SOURCE.parent.joinpath(*parts)
        return source if module.is_dir() else _package_of(source)
    return None


def private_imports() -> list[str]:
    """``file: from X import ...`` reaching a private module or name of a package the file is not in."""
    found = []
    for path in sorted(SOURCE.rglob("*.py")):
        relative = path.relative_to(SOURCE.parent).with_suffix("")
        module = ".".join(relative.parts).removesuffix(".__init__")
        own = module if path.name == "__init__.py" else _package_of(module)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom) or not (node.module or "").startswith("qsmiron"):
                continue
            owner = _owner(node.module, [a.name for a in node.names if _is_private(a.name)])
            if owner is not None and not (own == owner or own.startswith(owner + ".")):
                found.append(f"{path.relative_to(SOURCE)}: from {node.module} import "
                             f"{', '.join(a.name for a in node.names)}")
    return found


def test_no_source_file_is_over_500_lines():
    too_long = [(n, name) for n, name in file_lengths() if n > MAX_FILE_LINES]
    assert not too_long, too_long


def test_no_function_is_over_80_lines_of_code():
    too_long = [(n, name) for n, name in function_lengths() if n > MAX_FUNCTION_CODE_LINES]
    assert not too_long, too_long


def test_no_private_name_is_imported_from_another_package():
    assert private_imports() == []


def test_the_counters_see_a_long_function_and_a_private_import(tmp_path, monkeypatch):
    """The checks can fail: a 90-line function and a private import across packages are found."""
    package = tmp_path / "qsmiron"
    (package / "a").mkdir(parents=True)
    (package / "b").mkdir()
    body = "\n".join(f"    x{i} = {i}" for i in range(90))
    (package / "a" / "long.py").write_text(f'def f():\n    """Doc."""\n{body}\n')
    (package / "b" / "user.py").write_text("from qsmiron.a.long import _helper\n")
    monkeypatch.setattr(sys.modules[__name__], "SOURCE", package)
    assert function_lengths()[0] == (91, "a/long.py:f")  # the def line and 90 statements
    assert private_imports() == ["b/user.py: from qsmiron.a.long import _helper"]


if __name__ == "__main__":
    files, functions = file_lengths(), function_lengths()
    print(f"{len(files)} source files; longest: " + ", ".join(f"{name} {n}" for n, name in files[:5]))
    print(f"files over {MAX_FILE_LINES} lines: {sum(n > MAX_FILE_LINES for n, _ in files)}")
    print(f"{len(functions)} functions; longest (code lines): "
          + ", ".join(f"{name} {n}" for n, name in functions[:5]))
    print(f"functions over {MAX_FUNCTION_CODE_LINES} code lines: "
          f"{sum(n > MAX_FUNCTION_CODE_LINES for n, _ in functions)}")
    print(f"private names imported across packages: {len(private_imports())}")
    for line in private_imports():
        print("  " + line)
