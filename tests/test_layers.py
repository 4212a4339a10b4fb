"""The packages import one way only, downwards, read from the source with `ast` so a new arrow up fails here.

    hemowatch   training                        the roof: composition root and CLI commands (and the demo);
                                                training the model and simulating its commissioning, offline
    monitor   bot   dicomnode   commissioning   receivers (never importing each other) and site commissioning
    store     inference   localbotapi           the store on the foundation; the engine; the local Bot API
    core                                        the foundation: settings, notifier contract, domain vocabulary
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# What each package may import of the project's own packages (besides itself).
MAY_IMPORT: dict[str, set[str]] = {
    "core": set(),
    "store": {"core"},
    "inference": {"core"},
    "training": {"inference", "commissioning"},  # judges the model, and its commissioning, as the product runs them
    "monitor": {"core", "store"},
    "bot": {"core", "store", "inference"},
    "dicomnode": {"core", "store", "inference"},
    "commissioning": {"core", "store", "inference"},
    "localbotapi": set(),  # a stand-in for Telegram itself: knows nothing of HemoWatch
    "hemowatch": {"core", "store", "inference", "monitor", "bot", "dicomnode", "localbotapi", "commissioning"},
    "testsupport": {"core", "localbotapi"},
}
# Modules that stay pure: the alert engine, its rules and NEWS2 know the vocabulary, not the store or the shell.
PURE = {"monitor.engine", "monitor.rules", "monitor.news2"}
PURE_MAY_IMPORT = {"core.notifications", "core.vitals", *PURE}
# Single modules a package may not import although it may import their package.
NEVER = {"inference": {"core.settings"}}
OUTSIDE = {"tests", "benchmarks"}  # may import anything; nothing imports them


def _packages() -> list[str]:
    return sorted(
        path.parent.name for path in ROOT.glob("*/__init__.py") if path.parent.name not in OUTSIDE
    )


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, at the top, inside functions or under TYPE_CHECKING alike."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the module's own package
                parts = path.relative_to(ROOT).with_suffix("").parts[: -node.level]
                base = ".".join(parts)
                found.add(f"{base}.{node.module}" if node.module else base)
            else:
                found.add(node.module or "")
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _own(modules: set[str], packages: list[str]) -> set[str]:
    return {module for module in modules if module.split(".")[0] in packages}


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def test_every_package_has_a_place_in_the_layers() -> None:
    assert set(_packages()) == set(MAY_IMPORT), "give a new top-level package its place in MAY_IMPORT"


@pytest.mark.parametrize("package", sorted(MAY_IMPORT))
def test_a_package_imports_only_the_layers_below_it(package: str) -> None:
    packages = _packages()
    wrong = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for module in _own(_imports(path), packages):
            target = module.split(".")[0]
            if target != package and (target not in MAY_IMPORT[package] or module in NEVER.get(package, set())):
                wrong.append(f"{_module_name(path)} imports {module}")
    assert not wrong, "imports that point up or sideways:\n" + "\n".join(wrong)


def test_the_alert_engine_rules_and_news2_import_no_store_and_no_shell() -> None:
    packages = _packages()
    wrong = []
    for name in sorted(PURE):
        path = ROOT / Path(*name.split(".")).with_suffix(".py")
        for module in _own(_imports(path), packages):
            if not any(module == allowed or module.startswith(f"{allowed}.") for allowed in PURE_MAY_IMPORT):
                wrong.append(f"{name} imports {module}")
    assert not wrong, "\n".join(wrong)


RECEIVERS = ("monitor", "bot", "dicomnode")


def test_receivers_do_not_import_each_other() -> None:
    for receiver in RECEIVERS:
        assert not MAY_IMPORT[receiver] & set(RECEIVERS), f"{receiver} may import another receiver"


@pytest.mark.parametrize("script", sorted(path.stem for path in (ROOT / "benchmarks").glob("*.py")
                                          if path.stem != "__init__"))
def test_a_benchmark_script_shadows_no_module(script: str) -> None:
    """`python benchmarks/x.py` puts benchmarks/ first on sys.path: a script named like a package hides it."""
    assert importlib.util.find_spec(script) is None, f"benchmarks/{script}.py has the name of an importable module"
