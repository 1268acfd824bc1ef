"""What the globals of a side's modules are bound to, so that code rebinding one in memory
is seen.

The base's modules, once imported, are objects in this process: the tree check reads
their files on disk, and a head that found them through the garbage collector set
``implicit.MS = 1.05`` on the base's kernel module at each of its own calls. Both sides
ran 5% slower and the A/B read `unchanged` (the fourth red team). A global the base's own
calls rebind (a counter, a lazy cache) must not count against the head: one more call of
the base, and an idle wait as long, tell the two apart.

It sees rebinding: a global, a function's code, defaults or closure, a Triton kernel's
Python function. It does not see a change inside an object the module holds (an item of
one of its dicts): the README names that among what code in the kernel package can still
do.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import FunctionType, ModuleType

# (module name, global name) -> what it is bound to. The objects themselves, compared by
# identity: a snapshot of ids let a freed float's address come back for the next one
# bound (a head rebinding a fresh 1.05 each millisecond read as unchanged half the time).
Bindings = dict[tuple[str, str], tuple[object, ...]]

# Python adds it to a module's globals the first time a warning is raised from there.
_IGNORED = frozenset({"__warningregistry__"})
_EMPTY_CELL = object()


def _function_of(value: object) -> FunctionType | None:
    if isinstance(value, FunctionType):
        return value
    # A Triton kernel (JITFunction, Autotuner, Heuristics) runs the Python function it
    # holds as ``fn``. Read from its __dict__: getattr can run arbitrary code.
    if type(value).__module__.split(".")[0] == "triton":
        fn = getattr(value, "__dict__", {}).get("fn")
        return _function_of(fn) if fn is not value else None
    return None


def identity(value: object) -> tuple[object, ...]:
    """The object a global is bound to and, for a function, the code, defaults and
    closure it runs with."""
    fn = _function_of(value)
    if fn is None:
        return (value,)
    cells: list[object] = []
    for cell in fn.__closure__ or ():
        try:
            cells.append(cell.cell_contents)
        except ValueError:
            cells.append(_EMPTY_CELL)
    return (value, fn, fn.__code__, fn.__defaults__, fn.__kwdefaults__, *cells)


def same(a: tuple[object, ...] | None, b: tuple[object, ...] | None) -> bool:
    """Whether two bindings hold the same objects (identity: no object's __eq__ runs)."""
    if a is None or b is None:
        return a is b
    return len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))


def bindings(modules: Mapping[str, ModuleType]) -> Bindings:
    """Each global of each module, and what it is bound to."""
    out: Bindings = {}
    for module_name, module in modules.items():
        for name, value in list(vars(module).items()):
            if name not in _IGNORED:
                out[(module_name, name)] = identity(value)
    return out


def rebound(before: Bindings, after: Bindings) -> list[tuple[str, str]]:
    """The globals bound differently (added and removed ones too), in order."""
    return sorted(k for k in before.keys() | after.keys() if not same(before.get(k), after.get(k)))


def own_rebinding(
    moved: list[tuple[str, str]], now: Bindings, called: Bindings, idle: Bindings
) -> set[tuple[str, str]]:
    """Of ``moved``, the globals that the side's own call rebinds: bound differently after
    one call of it (``called`` against ``now``) and not during an idle wait as long after
    it (``idle`` against ``called``; a thread rebinds them there too)."""
    return {
        k for k in moved if not same(called.get(k), now.get(k)) and same(idle.get(k), called.get(k))
    }


@dataclass
class Watch:
    """A side's module globals against their binding when the side's own code last ran;
    ``own``: those its calls rebind, which no longer count."""

    modules: Mapping[str, ModuleType]
    reference: Bindings | None = None
    own: set[tuple[str, str]] = field(default_factory=set)

    def take(self) -> None:
        """The reference, now: call it right after the side's own call."""
        self.reference = bindings(self.modules)

    def _moved(self, now: Bindings) -> list[tuple[str, str]]:
        """Rebound since the reference, less the side's own: a global of a module that
        came after the reference (the side imported it as it ran), and a package's
        attribute bound to one of the side's own modules (what an import of a submodule
        does) are the side's."""
        if self.reference is None:
            return []
        known = {module for module, _ in self.reference}
        mine = {id(module) for module in self.modules.values()}
        out = []
        for key in rebound(self.reference, now):
            value = now.get(key)
            if key in self.own or key[0] not in known:
                continue
            if value is not None and isinstance(value[0], ModuleType) and id(value[0]) in mine:
                continue
            out.append(key)
        return out

    def since(self) -> list[str]:
        """The globals rebound since the reference, when none of the side's calls ran in
        between (before the first call of a case): other code's work."""
        now = bindings(self.modules)
        moved = self._moved(now)
        self.reference = now
        return [".".join(k) for k in moved]

    def after(self, call: Callable[[], object], wait_s: float = 0.01) -> list[str]:
        """The globals rebound since the reference by code other than the side's own,
        after an A/B in which both sides' calls ran. A global that moved is called the
        side's own when ``call`` (one more call of the side, untimed) rebinds it again
        and an idle wait as long as that call (at least ``wait_s``) does not."""
        now = bindings(self.modules)
        moved = self._moved(now)
        if moved:
            start = time.perf_counter()
            try:
                call()
            except Exception:  # it ran in the A/B; failing now, nothing can be its own
                called = now
            else:
                called = bindings(self.modules)
            time.sleep(max(time.perf_counter() - start, wait_s))
            idle = bindings(self.modules)
            ours = own_rebinding(moved, now, called, idle)
            self.own |= ours
            moved = [k for k in moved if k not in ours]
            now = idle
        self.reference = now
        return [".".join(k) for k in moved]
