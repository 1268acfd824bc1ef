"""Fresh inputs for every timed call, and an output check on a fresh call after the timing:
a kernel that keeps results for repeated arguments is timed on the path a caller with new
tensors takes, and one that returns a kept (stale) result fails (the third red team's cache
attack, tests/test_red_team_3.py). No GPU: the simulated one, CPU tensors and fake sides."""

import json
from pathlib import Path

import torch
import torch.nn.functional as F

from pytest_conv3d_perf import check
from pytest_conv3d_perf.baseline import BaselineEntry
from pytest_conv3d_perf.cases import case_from_mapping
from pytest_conv3d_perf.fixtures import CheckContext, Conv3dPerf
from pytest_conv3d_perf.gate import FailPolicy, GateOutcome, case_result
from pytest_conv3d_perf.measure import Measurement
from pytest_conv3d_perf.sides import Side, pair
from pytest_conv3d_perf.simulated import Noise, SimulatedGpu
from pytest_conv3d_perf.stats import summarize
from pytest_conv3d_perf.timer import host_call_us
from pytest_conv3d_perf.verdict import Assessment, Thresholds, Verdict
from tests.fake_gpu import CONFTEST, FakeProcesses

CASE = case_from_mapping({"name": "tiny", "n": 2, "ic": 3, "oc": 5, "kernel": 3, "input": 6})
CPU = torch.device("cpu")


def honest(x, w, b, stride, padding, dilation):
    return F.conv3d(x, w, b, stride, padding, dilation)


def keeper():
    """A kernel that returns the output it kept for a tensor it has seen (by identity)."""
    kept = {}

    def conv3d(x, w, b, stride, padding, dilation):
        if id(x) not in kept:
            kept[id(x)] = F.conv3d(x, w, b, stride, padding, dilation)
        return kept[id(x)]

    return conv3d


def recorded(log, name):
    """A callable that logs its calls, and a prepare that logs its own."""

    def fn():
        log.append(f"call {name}")

    fn.conv3d_prepare = lambda: log.append(f"prepare {name}")
    return fn


# -- the timers ---------------------------------------------------------------------------


def test_the_simulated_gpu_prepares_each_callable_before_its_timed_call():
    log = []
    gpu = SimulatedGpu(1.0, 3.0, noise=Noise.quiet(), seed=1)
    gpu.sample([recorded(log, "a"), recorded(log, "b")], 5)
    assert log == ["prepare a", "call a", "prepare b", "call b"]


def test_the_call_time_prepares_once_a_loop_never_between_its_calls():
    # The simulated loop's calls all cost its one call's time: one prepare before it, as
    # CudaTimer.call_sample's before each loop; 50 calls a loop add none.
    log = []
    gpu = SimulatedGpu(1.0, 3.0, noise=Noise.quiet(), seed=1)
    gpu.call_sample([recorded(log, "a"), recorded(log, "b")], 10, 50)
    assert log == ["prepare a", "call a", "prepare b", "call b"]


def test_the_stream_hold_is_sized_on_prepared_launches():
    # CudaTimer.calibrate sizes its hold on host_call_us: a kept result launches faster.
    log = []
    host_call_us(recorded(log, "a"), calls=3)
    assert log == ["prepare a", "call a"] * 3


def test_a_callable_without_a_prepare_is_timed_as_before():
    gpu = SimulatedGpu(1.0, 3.0, noise=Noise.quiet(), seed=1)
    assert len(gpu.sample([gpu.runner("kernel")], 3)[0]) == 3


def test_the_prepare_reaches_both_sides_calls_through_the_pairs_wrappers(tmp_path):
    # Sides whose environments differ: pair wraps each call to enter its side's; the
    # wrappers are what the timers see, so they carry the prepare.
    log = []
    mine = Side("today", tmp_path, {}, {"KNOB": "1"})
    theirs = Side("base", tmp_path, {}, {"KNOB": "2"})
    a, b = recorded(log, "today"), recorded(log, "base")
    both = pair(mine, theirs, frozenset(), a, b)
    assert both.today is not a and both.other is not b  # wrapped
    assert both.today.conv3d_prepare is a.conv3d_prepare
    assert both.other.conv3d_prepare is b.conv3d_prepare
    SimulatedGpu(1.0, 1.0, noise=Noise.quiet(), seed=1).sample([both.today, both.other], 3)
    assert log == ["prepare today", "call today", "prepare base", "call base"]


# -- the refill ---------------------------------------------------------------------------


def test_the_refill_draws_new_values_into_the_same_tensor():
    x = check.random_inputs(CASE, CPU, 7).x
    before, where, version = x.clone(), x.data_ptr(), x._version
    caller = torch.get_rng_state()
    refill = check.refill(x, 11)
    refill()
    assert not torch.equal(x, before)
    assert (x.data_ptr(), x.shape, x.dtype) == (where, before.shape, before.dtype)
    assert 0 <= float(x.min()) and float(x.max()) < 1  # as random_inputs draws it
    assert x._version > version  # what a cache keyed by version sees
    first = x.clone()
    refill()
    assert not torch.equal(x, first)  # new values at each call
    assert torch.equal(torch.get_rng_state(), caller)  # the caller's stream did not move
    again = before.clone()
    check.refill(again, 11)()
    assert torch.equal(again, first)  # a seed repeats its draws


# -- the output check ---------------------------------------------------------------------


def fresh_call(fn):
    """The check as the gate makes it: a call, new values in x, the call again."""
    inputs = check.random_inputs(CASE, CPU, 3)
    args = (inputs.x, inputs.weight, inputs.bias, CASE.stride, CASE.padding, CASE.dilation)
    fn(*args)
    check.refill(inputs.x, 4)()
    return check.fresh_output_error(fn(*args), inputs, CASE, check.rule_for(None))


def test_the_output_check_passes_an_honest_kernel():
    assert fresh_call(honest) == ""


def test_the_output_check_fails_a_kernel_that_returns_a_kept_result():
    why = fresh_call(keeper())
    assert why.startswith("the output of a timed call on fresh inputs differs from the float64")
    assert "outside fp32" in why and why.endswith("results kept from earlier calls?")
    assert "\n" not in why  # one line in the reports


def test_the_output_check_skips_what_is_no_tensor_and_names_a_wrong_shape():
    inputs = check.random_inputs(CASE, CPU, 3)
    rule = check.rule_for(None)
    assert check.fresh_output_error(object(), inputs, CASE, rule) == ""
    why = check.fresh_output_error(torch.zeros(1), inputs, CASE, rule)
    assert why.startswith("a timed call on fresh inputs: ") and "expected a float32" in why


def test_a_wrong_output_fails_the_case_whatever_its_verdict():
    times = summarize([1.0, 1.01, 0.99])
    out = GateOutcome(
        Verdict.UNCHANGED,
        Measurement(kernel=times, reference=None, elapsed_s=1.0, sm_mhz=None),
        Assessment(Verdict.UNCHANGED, None, reasons=("A/B line",)),
        1,
    )
    entry = BaselineEntry(1.0, 0.99, 1.01, 3, "flush")
    made = {"name": "c", "nodeid": "t", "thresholds": Thresholds(3, 2), "entry": entry}
    made |= {"baseline": None, "flop": None}
    right = case_result(out, policy=FailPolicy(), **made)
    assert not right.fails and right.reasons == ("A/B line",)
    for policy in (FailPolicy(), FailPolicy(updating=True)):
        wrong = case_result(out, policy=policy, wrong_output="stale", **made)
        assert wrong.fails and wrong.reasons == ("stale", "A/B line")
        assert wrong.verdict is Verdict.UNCHANGED and wrong.wrong_output == "stale"


# -- the fixture ----------------------------------------------------------------------------


def perf_case(fn):
    """What Conv3dPerf.case hands time_case, without a run."""
    seen = {}

    def time_case(*args, **kwargs):
        seen.update(zip(("name", "nodeid", "call", "reference"), args), **kwargs)

    context = CheckContext(resolve=lambda c: c, device=CPU, trials=1, seed=5, scaled=True)
    perf = Conv3dPerf(
        time_case=time_case,
        thresholds=lambda case: Thresholds(3, 2),
        context=context,
        nodeid="t",
        test_name="t",
        default_case=None,
        show=lambda line: None,
        record=lambda line: None,
    )
    perf.case(fn, CASE)
    return seen


def test_the_kernel_the_base_and_the_reference_share_one_refill():
    seen = perf_case(honest)
    other = seen["replay"](honest)
    prepare = seen["call"].conv3d_prepare
    assert seen["reference"].conv3d_prepare is prepare and other.conv3d_prepare is prepare
    x = seen["call"]()
    prepare()
    assert not torch.equal(seen["call"](), x)  # the same tensor, refilled
    assert torch.allclose(other(), seen["reference"]())


def test_the_fixtures_check_calls_the_kernel_on_fresh_inputs():
    assert perf_case(honest)["verify"]() == ""
    stale = perf_case(keeper())
    stale["call"]()  # the timed calls kept their result
    assert "kept from earlier calls" in stale["verify"]()


# -- the gate, end to end -------------------------------------------------------------------

KEEPER_TEST = """
import torch

_KEPT = {}


def conv(x, w, b, stride, padding, dilation):
    if id(x) not in _KEPT:
        _KEPT[id(x)] = torch.nn.functional.conv3d(x, w, b, stride, padding, dilation)
    return _KEPT[id(x)]


def test_speed(conv3d_case, conv3d_perf):
    conv3d_perf.case(conv, conv3d_case)
"""


def test_a_stale_output_fails_in_every_report_and_is_not_stored(pytester, monkeypatch, request):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_gate=KEEPER_TEST)
    FakeProcesses(monkeypatch, request.node.name).next()
    result = pytester.runpytest(
        "--conv3d-perf",
        "--conv3d-budget=1",
        "--conv3d-case=n1_oc17_bias",
        "--conv3d-update-baselines",
        "--conv3d-json=report.json",
        "--conv3d-markdown=summary.md",
    )
    assert result.ret == 1, result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "*conv3d-perf n1_oc17_bias:*fresh inputs differs from the float64 truth*",
            "*conv3d-perf: FAILED (*): n1_oc17_bias*",
        ]
    )
    report = json.loads((pytester.path / "report.json").read_text())
    row = report["results"][0]
    assert report["failed"] == ["n1_oc17_bias"] and row["fails"] is True
    assert "kept from earlier calls" in row["reasons"][0]
    assert "fresh inputs differs" in (pytester.path / "summary.md").read_text()
    stored = Path(pytester.path / "baselines" / "fake-gpu-9000.json")
    assert not stored.exists() or "n1_oc17_bias" not in json.loads(stored.read_text())["cases"]
