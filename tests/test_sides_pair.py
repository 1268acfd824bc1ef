"""How `sides.pair` keeps each side's modules its own around its calls (no GPU, no git)."""

import sys
import types

from pytest_conv3d_perf.sides import Side, pair

NAMES = frozenset({"pairpkg"})


def _side(label, tree, **attrs):
    package = types.ModuleType("pairpkg")
    package.__file__ = str(tree / "pairpkg" / "__init__.py")
    vars(package).update(attrs)
    return Side(label, tree, {"pairpkg": package}, {})


def test_each_side_finds_its_own_package_by_name_at_call_time(monkeypatch, tmp_path):
    head, base = (
        _side("today", tmp_path / "h", WHO="head"),
        _side("base", tmp_path / "b", WHO="base"),
    )
    monkeypatch.setitem(sys.modules, "pairpkg", head.modules["pairpkg"])
    seen = []
    both = pair(
        head,
        base,
        NAMES,
        lambda: seen.append(sys.modules["pairpkg"].WHO),
        lambda: seen.append(sys.modules["pairpkg"].WHO),
    )
    both.other()
    both.today()
    both.other()
    assert seen == ["base", "head", "base"]
    assert sys.modules["pairpkg"] is head.modules["pairpkg"]  # put back after each call


def test_a_module_one_side_imports_as_it_runs_is_not_left_for_the_other(monkeypatch, tmp_path):
    head, base = _side("today", tmp_path / "h"), _side("base", tmp_path / "b")
    monkeypatch.setitem(sys.modules, "pairpkg", head.modules["pairpkg"])

    def head_call():  # the head's import at call time, of a module neither side had
        sys.modules.setdefault("pairpkg.tuning", types.ModuleType("pairpkg.tuning"))

    def base_call():
        return sys.modules.get("pairpkg.tuning")

    both = pair(head, base, NAMES, head_call, base_call)
    assert not head.lazy
    both.today()
    assert "pairpkg.tuning" not in sys.modules  # it went again
    assert head.lazy  # both sides take the full swap from now on
    assert both.other() is None  # the base never sees the head's module
