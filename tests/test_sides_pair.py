"""How `sides.pair` keeps each side's modules its own around its calls (no GPU, no git)."""

import os
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
    imports = []

    def head_call():  # the head's import at call time, of a module neither side had
        if "pairpkg.tuning" not in sys.modules:
            imports.append(1)
            module = types.ModuleType("pairpkg.tuning")
            module.__file__ = str(tmp_path / "h" / "pairpkg" / "tuning.py")
            sys.modules["pairpkg.tuning"] = module
        return sys.modules["pairpkg.tuning"]

    def base_call():
        return sys.modules.get("pairpkg.tuning")

    both = pair(head, base, NAMES, head_call, base_call)
    first = both.today()
    assert "pairpkg.tuning" not in sys.modules  # not left between calls
    assert head.modules["pairpkg.tuning"] is first  # kept for the head's own calls
    assert not head.lazy and not base.lazy  # no full swap for anyone's later calls
    assert both.other() is None  # the base never sees the head's module
    assert both.today() is first and imports == [1]  # imported once, not at each call


def test_a_module_the_other_side_imports_as_it_runs_is_imported_again_through_the_runs_machinery(
    monkeypatch, tmp_path
):
    head, base = _side("today", tmp_path / "h"), _side("base", tmp_path / "b")
    monkeypatch.setitem(sys.modules, "pairpkg", head.modules["pairpkg"])

    def base_call():
        if "pairpkg.tuning" not in sys.modules:
            module = types.ModuleType("pairpkg.tuning")
            module.__file__ = str(tmp_path / "b" / "pairpkg" / "tuning.py")
            sys.modules["pairpkg.tuning"] = module
        return sys.modules["pairpkg.tuning"]

    both = pair(head, base, NAMES, lambda: sys.modules.get("pairpkg.tuning"), base_call)
    both.other()  # imported through whatever machinery the process had: not taken
    assert base.lazy and "pairpkg.tuning" not in base.modules
    kept = both.other()  # once more, inside the full swap, which keeps it
    assert not base.lazy and base.modules["pairpkg.tuning"] is kept
    assert both.other() is kept
    assert both.today() is None  # the head never sees the base's module


def test_pytests_own_test_variable_is_not_swapped_but_a_sides_variable_is(monkeypatch, tmp_path):
    # The base's snapshot predates the test, so pytest's PYTEST_CURRENT_TEST differs
    # between the sides; a variable today's code set differs too.
    head, base = _side("today", tmp_path / "h"), _side("base", tmp_path / "b")
    monkeypatch.setitem(sys.modules, "pairpkg", head.modules["pairpkg"])
    monkeypatch.setenv("PYTEST_CURRENT_TEST", "tests/x.py::t (call)")
    monkeypatch.setenv("CONV3D_SET_BY_HEAD", "1")
    head.env = dict(os.environ)
    later = ("PYTEST_CURRENT_TEST", "CONV3D_SET_BY_HEAD")
    base.env = {k: v for k, v in os.environ.items() if k not in later}

    def seen():
        return os.environ.get("PYTEST_CURRENT_TEST"), os.environ.get("CONV3D_SET_BY_HEAD")

    both = pair(head, base, NAMES, seen, seen)
    assert both.other() == ("tests/x.py::t (call)", None)
    assert both.today() == ("tests/x.py::t (call)", "1")
    assert seen() == ("tests/x.py::t (call)", "1")  # put back after the base's call
