"""The watch on the other side's module globals (pytest_conv3d_perf.bindings): what counts
as rebinding, and how the side's own rebinding is told from other code's."""

import threading
import time
import types

from pytest_conv3d_perf.bindings import Watch, bindings, identity, own_rebinding, rebound, same


def _module(name="side.kernel", **values):
    module = types.ModuleType(name)
    vars(module).update(values)
    return module


def _fn(scale=1.0):
    def run(x, factor=2.0):
        return x * factor * scale

    return run


def test_a_rebound_global_shows_and_an_equal_value_is_not_the_same_binding():
    module = _module(MS=1.0)
    before = bindings({"k": module})
    module.MS = float("1.05")
    after = bindings({"k": module})
    assert rebound(before, after) == [("k", "MS")]
    # Equal values, other objects: a fresh 1.05 each time is a rebinding each time.
    module.MS = float("1.05")
    assert rebound(after, bindings({"k": module})) == [("k", "MS")]
    assert rebound(after, after) == []


def test_added_and_removed_globals_show():
    module = _module(A=1)
    before = bindings({"k": module})
    del module.A
    module.B = 2
    assert rebound(before, bindings({"k": module})) == [("k", "A"), ("k", "B")]


def test_a_functions_code_defaults_and_closure_are_part_of_its_binding():
    fn = _fn()
    base = identity(fn)
    fn.__defaults__ = (3.0,)
    assert not same(base, identity(fn))
    fn = _fn()
    base = identity(fn)
    fn.__code__ = _fn().__code__.replace(co_consts=fn.__code__.co_consts)
    assert not same(base, identity(fn))
    fn = _fn()
    base = identity(fn)
    fn.__closure__[0].cell_contents = 5.0
    assert not same(base, identity(fn))
    assert same(identity(fn), identity(fn))


def test_a_triton_kernels_python_function_is_part_of_its_binding():
    class JITFunction:  # the shape of triton.runtime.jit.JITFunction: fn in its __dict__
        def __init__(self, fn):
            self.fn = fn

    JITFunction.__module__ = "triton.runtime.jit"
    kernel = JITFunction(_fn())
    base = identity(kernel)
    kernel.fn = _fn()
    assert not same(base, identity(kernel))


def test_no_objects_eq_runs():
    class Loud:
        def __eq__(self, other):
            raise AssertionError("compared by value")

        __hash__ = object.__hash__

    value = Loud()
    assert same(identity(value), identity(value))


def test_own_rebinding_needs_the_call_to_move_it_and_the_idle_wait_not_to():
    now = {("k", "a"): (1,), ("k", "b"): (2,), ("k", "c"): (3,)}
    called = {("k", "a"): (10,), ("k", "b"): (2,), ("k", "c"): (30,)}
    idle = {("k", "a"): (10,), ("k", "b"): (2,), ("k", "c"): (31,)}
    assert own_rebinding([("k", "a"), ("k", "b"), ("k", "c")], now, called, idle) == {("k", "a")}


def test_the_sides_own_counter_is_not_reported_and_other_codes_rebinding_is():
    module = _module(CALLS=0, MS=1.0)

    def call():
        module.CALLS += 1

    watch = Watch({"k": module})
    call()
    watch.take()
    call()  # the A/B: the side's calls, and another's code
    module.MS = 1.05
    assert watch.after(call, wait_s=0.0) == ["k.MS"]
    assert ("k", "CALLS") in watch.own
    call()
    assert watch.after(call, wait_s=0.0) == []  # nothing moved but its own counter


def test_a_side_whose_extra_call_fails_has_nothing_of_its_own():
    module = _module(CALLS=0)
    watch = Watch({"k": module})
    watch.take()
    module.CALLS = 1

    def call():
        raise RuntimeError("gone")

    assert watch.after(call, wait_s=0.0) == ["k.CALLS"]


def test_since_reports_what_moved_while_the_side_did_not_run():
    module = _module(MS=1.0)
    watch = Watch({"k": module})
    assert watch.since() == []  # no reference yet: the side has not run
    module.MS = 1.05
    assert watch.since() == ["k.MS"]
    assert watch.since() == []  # reported once; the reference moved with it


def test_a_thread_rebinding_while_the_side_waits_is_not_the_sides_own():
    module = _module(MS=1.0)
    stop = threading.Event()

    def patch():
        while not stop.is_set():
            module.MS = float("1.05")
            time.sleep(0.001)

    watch = Watch({"k": module})
    watch.take()
    worker = threading.Thread(target=patch, daemon=True)
    worker.start()
    try:
        time.sleep(0.01)
        assert watch.after(lambda: time.sleep(0.01), wait_s=0.05) == ["k.MS"]
    finally:
        stop.set()
        worker.join()
    assert not watch.own


def test_a_module_the_side_imported_as_it_ran_and_its_package_attribute_are_its_own():
    package, tuning = _module("side", __path__=[]), _module("side.tuning", MS=1.0)
    modules = {"side": package}
    watch = Watch(modules)
    watch.take()
    # The side's own import at call time: a new module, bound on its package.
    modules["side.tuning"] = tuning
    package.tuning = tuning
    assert watch.since() == []
    # Another's module bound there, or a global of the new module rebound, is not.
    package.tuning = _module("head.tuning")
    tuning.MS = 1.05
    assert watch.since() == ["side.tuning", "side.tuning.MS"]
