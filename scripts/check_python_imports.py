"""The executor's layering, checked: each part of `lorafleet_executor` imports only the
parts below it (gpu-backend/executor/README.md "Import rules"), kernels/ and protocol/
import only the third-party modules they may, and the product never imports the
reference package. Run by `npm run check`; stdlib only, so it needs no venv.

    python3 scripts/check_python_imports.py [EXECUTOR_DIR]   # default gpu-backend/executor

Exits 1 and prints `file:line: what crosses which rule` for every import that breaks a
rule, 0 when none does. Imports inside functions and under `if TYPE_CHECKING:` count.
"""

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

PRODUCT = "lorafleet_executor"
REFERENCE = "lorafleet_reference"

# Each part of the product and the parts it may import; a module at the package's top
# (errors.py, __main__.py) is a part of its own.
MAY_IMPORT: dict[str, frozenset[str]] = {
    "errors": frozenset(),
    "kernels": frozenset(),
    "fixtures": frozenset(),
    "protocol": frozenset({"errors"}),
    "grammar": frozenset({"errors", "kernels", "protocol"}),
    "model": frozenset({"errors", "kernels"}),
    "parallel": frozenset({"errors", "model"}),
    "step": frozenset({"errors", "protocol", "model", "grammar"}),
    "graphs": frozenset({"errors", "kernels", "model", "step"}),
    "runtime": frozenset(
        {"errors", "kernels", "protocol", "grammar", "model", "parallel", "step", "graphs"}
    ),
    "__init__": frozenset(),
    "__main__": frozenset({"runtime"}),
}
WHY: dict[str, str] = {
    "kernels": "kernels import nothing of the model or the protocol",
    "protocol": "the wire format knows nothing of tensors, the model or the runtime",
    "model": "the model knows nothing of the wire, the processes or the step plans",
    "fixtures": "fixtures are built from nothing of the executor",
    "grammar": "grammars know nothing of the model, the step plans or the processes",
}
# Third-party modules a part may import (the rest: any); the standard library is free.
THIRD_PARTY_ONLY: dict[str, frozenset[str]] = {
    "kernels": frozenset({"torch", "triton", "numpy"}),
    "protocol": frozenset({"numpy"}),
}


@dataclass(frozen=True)
class Violation:
    path: Path
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def part_of(module: str) -> str | None:
    """`lorafleet_executor.model.llama` -> "model"; None outside the product."""
    parts = module.split(".")
    if parts[0] != PRODUCT:
        return None
    return parts[1] if len(parts) > 1 else "__init__"


def imported_modules(tree: ast.Module, module: str, is_package: bool):
    """(line, absolute module name) of every import, submodules named by `from X import
    y` included (y may be a module: both X and X.y are listed)."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if node.module is not None:
                yield node.lineno, target
            # `from . import x` / `from lorafleet_executor import model`: x may be a part
            for alias in node.names:
                yield node.lineno, f"{target}.{alias.name}"


def check_file(root: Path, path: Path) -> list[Violation]:
    module = module_name(root, path)
    importer = part_of(module)
    tree = ast.parse(path.read_text(), str(path))
    found: list[Violation] = []
    seen: set[tuple[int, str]] = set()
    for line, target in imported_modules(tree, module, path.name == "__init__.py"):
        top = target.split(".")[0]
        imported = part_of(target)
        if (line, imported or top) in seen:
            continue  # `from X import y` names X and X.y: one finding a line and part
        seen.add((line, imported or top))
        problem = None
        if top == REFERENCE:
            problem = f"imports {target}: the product never imports the reference package"
        elif top == PRODUCT:
            if imported in ("__init__", importer) or imported in MAY_IMPORT[importer]:
                continue  # `from lorafleet_executor import x`: x is listed on its own
            allowed = ", ".join(sorted(MAY_IMPORT[importer])) or "nothing of the package"
            why = WHY.get(importer, f"{importer}/ may import {allowed}")
            problem = f"{importer}/ imports {target} ({imported}/): {why}"
        elif top not in sys.stdlib_module_names and top not in THIRD_PARTY_ONLY.get(
            importer, (top,)
        ):
            allowed = ", ".join(sorted(THIRD_PARTY_ONLY[importer]))
            problem = (
                f"{importer}/ imports {top}: it may import only the standard library and {allowed}"
            )
        if problem is not None:
            found.append(Violation(path, line, problem))
    return found


def check(root: Path) -> list[Violation]:
    product = root / PRODUCT
    if not product.is_dir():
        raise SystemExit(f"check_python_imports: no {PRODUCT}/ under {root}")
    found: list[Violation] = []
    unruled: set[str] = set()
    for path in sorted(product.rglob("*.py")):
        part = part_of(module_name(root, path))
        if part in MAY_IMPORT:
            found += check_file(root, path)
        elif part not in unruled:
            unruled.add(part)
            rule = f"{part}/ has no import rule: add it to MAY_IMPORT (and the README)"
            found.append(Violation(product / part, 0, rule))
    return found


def main(argv: list[str]) -> int:
    root = Path(argv[1] if len(argv) > 1 else "gpu-backend/executor")
    found = check(root)
    for violation in found:
        print(violation, file=sys.stderr)
    if found:
        print(
            f"check_python_imports: {len(found)} finding(s) against the executor's layering "
            f"(gpu-backend/executor/README.md)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
