"""What one pytest run holds once a project uses the plugin: settings, the device, the case
suite, the timed results. Built only when asked for, kept in ``config.stash`` and
registered as a plugin, so its methods are the run's hooks (pytest's junitxml model)."""

from __future__ import annotations

import contextlib
import os
import pickle
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pytest_conv3d_perf import report
from pytest_conv3d_perf.baseline import (
    Action,
    BaselineEntry,
    BaselineError,
    BaselineStore,
    Measurement,
    merge_processes,
    prior_entries,
)
from pytest_conv3d_perf.cases import CaseError, Conv3dCase, case_from_mapping, load_suite, select
from pytest_conv3d_perf.environment import (
    autotune_config,
    config_note,
    git_commit,
    now_utc,
    source_hash,
)
from pytest_conv3d_perf.gate import CaseResult, FailPolicy, Other, case_result, run_gate
from pytest_conv3d_perf.measure import Plan
from pytest_conv3d_perf.runtime import DeviceError, Runtime, select_runtime
from pytest_conv3d_perf.settings import Settings, SettingsError
from pytest_conv3d_perf.sides import (
    RevisionError,
    Revisions,
    Unavailable,
    pair,
    repository_path,
    today,
)
from pytest_conv3d_perf.target import Target, TargetError
from pytest_conv3d_perf.timer import Timer
from pytest_conv3d_perf.verdict import Thresholds, Verdict, parse_percent

run_key = pytest.StashKey["Conv3dRun"]()
USAGE_ERRORS = (SettingsError, CaseError, DeviceError, BaselineError, TargetError)
PROPERTY = "conv3d-perf"  # the user property carrying a case's line to an xdist controller


def activate(config: pytest.Config) -> Conv3dRun:
    """The run's state, built on first use: at configure time when the project or the
    command line asked for the plugin, or when a test first requests one of its fixtures."""
    run = config.stash.get(run_key, None)
    if run is not None:
        return run
    try:
        run = Conv3dRun.start(config)
    except USAGE_ERRORS as exc:
        raise pytest.UsageError(f"conv3d-perf: {exc}") from None
    config.stash[run_key] = run
    config.pluginmanager.register(run, "conv3d-perf-run")
    return run


def deactivate(config: pytest.Config) -> None:
    run = config.stash.get(run_key, None)
    if run is not None:
        del config.stash[run_key]
        config.pluginmanager.unregister(run)
        run.revisions.close()


def _is_xdist_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def _is_xdist_controller(config: pytest.Config) -> bool:
    return not _is_xdist_worker(config) and getattr(config.option, "dist", "no") != "no"


def _pin_xdist_worker(config: pytest.Config) -> None:
    """One xdist worker per GPU: two timings on one GPU would disturb each other."""
    worker = getattr(config, "workerinput", None)
    if worker is None:
        return
    import torch

    count = torch.cuda.device_count()
    index = int(str(worker["workerid"]).lstrip("gw"))
    if count and int(worker.get("workercount", 1)) > count:
        raise DeviceError(
            f"--conv3d-perf with {worker['workercount']} xdist workers but {count} GPU(s): "
            f"use at most one worker per GPU (-n {count})"
        )
    if count:
        torch.cuda.set_device(index)


@dataclass(eq=False)  # a registered plugin must be hashable
class Conv3dRun:
    config: pytest.Config
    settings: Settings
    runtime: Runtime
    scaled: bool
    cases: list[Conv3dCase]
    suite: dict[str, Conv3dCase]
    kernel: Target | None = None
    model: Target | None = None
    timer: Timer | None = None
    timing_off: str = ""  # why timing is off although asked for
    device_info: dict[str, Any] = field(default_factory=dict)
    store: BaselineStore | None = None
    baselines: dict[str, BaselineEntry] = field(default_factory=dict)
    results: list[CaseResult] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)
    # The timed tests the run selected (node ids), written into the report: a run that
    # ends before one of them has a row is incomplete, whatever its exit status says.
    selected: list[str] = field(default_factory=list)
    # An xdist controller: its workers time (one per GPU) and it writes the merged report.
    merging: bool = False
    worker_baselines: set[Path] = field(default_factory=set)
    # What the conv3d_kernel and conv3d_model fixtures returned, with the names they
    # were configured by.
    loaded: list[tuple[object, Target]] = field(default_factory=list)
    # Other revisions' kernels, loaded with their import closures for the A/B, in the
    # environment the run started with (after the device's own settings).
    revisions: Revisions = field(default_factory=lambda: Revisions(Path("."), {}))
    # --conv3d-against as the reports name it: the revision and its commit.
    against_label: str = ""

    @classmethod
    def start(cls, config: pytest.Config) -> Conv3dRun:
        settings = Settings.from_config(config)
        kernel = Target.parse(settings.kernel, "conv3d_kernel") if settings.kernel else None
        model = Target.parse(settings.model, "conv3d_model") if settings.model else None
        modules = [t.module for t in (kernel, model) if t is not None]
        # A CI GPU runner passes --conv3d-require-gpu so a missing GPU fails, never skips.
        runtime = select_runtime("cuda" if settings.require_gpu else settings.device, modules)
        scaled = settings.size == "small" or (settings.size == "auto" and runtime.interpreter)
        suite = load_suite(Path(config.rootpath), settings.case_files)
        chosen = select(suite, settings.case_names)
        run = cls(
            config=config,
            settings=settings,
            runtime=runtime,
            scaled=scaled,
            cases=[c.scaled() if scaled else c for c in chosen],
            suite={c.name: c for c in suite},
            kernel=kernel,
            model=model,
            revisions=Revisions(Path(config.rootpath), os.environ),
        )
        if settings.against:
            if config.getoption("--conv3d-no-ab"):
                raise SettingsError(
                    "--conv3d-no-ab leaves out the A/B that --conv3d-against asks for: "
                    "use one or the other"
                )
            if settings.update:
                raise SettingsError(
                    "--conv3d-against compares with another revision's kernel; a baseline "
                    "update measures this one alone: use one or the other"
                )
            try:
                # Written out now, before any code of the work tree runs: what the head's
                # code does to the repository later cannot change the base's files.
                sha, _, _ = run.revisions.tree(settings.against)
            except RevisionError as exc:
                run.revisions.close()
                raise SettingsError(f"--conv3d-against: {exc}") from None
            except (OSError, subprocess.SubprocessError) as exc:
                run.revisions.close()
                raise SettingsError(
                    f"--conv3d-against: cannot read {settings.against}: {exc}"
                ) from None
            run.against_label = (
                sha[:10] if sha.startswith(settings.against) else f"{settings.against} ({sha[:10]})"
            )
        if settings.perf:
            run._enable_timing()
        return run

    def _enable_timing(self) -> None:
        """Load this GPU's baselines up front, so a bad file stops the run before any work."""
        config = self.config
        if _is_xdist_controller(config):
            # The controller runs no test: it must not hold a GPU the workers time on.
            self.merging = True
            return
        import torch

        if self.runtime.interpreter and torch.cuda.is_available():
            # Interpreter calls of scaled-down cases are no measurement of the GPU kernel,
            # and must never be compared with (or written over) a GPU's baseline.
            self.timing_off = "the kernel runs under Triton's interpreter (TRITON_INTERPRET)"
        _pin_xdist_worker(config)
        timer = config.hook.pytest_conv3d_perf_make_timer(
            config=config, l2=self.settings.l2, runtime=self.runtime
        )
        info = config.hook.pytest_conv3d_perf_device_info(config=config)
        if timer is None or not info:
            self.timing_off = self.timing_off or "no CUDA GPU is visible"
            return
        self.timing_off = ""
        self.timer = timer
        self.device_info = {**info, "commit": git_commit(Path(config.rootpath))}
        self.store = BaselineStore(self.settings.baseline_dir, str(info["gpu"]))
        self.baselines = self.store.load()

    @property
    def timing(self) -> bool:
        return self.settings.perf and self.timer is not None

    @property
    def device(self) -> Any:
        import torch

        return torch.device(self.runtime.device)

    def load(self, target: Target | None, fixture: str) -> object:
        if target is None:
            raise TargetError(
                f"the {fixture} fixture needs {fixture} = module:attribute in the pytest "
                f"configuration (or --{fixture.replace('_', '-')} on the command line)"
            )
        obj = target.load(Path(self.config.rootpath))
        self.loaded.append((obj, target))
        return obj

    def where(self, fn: object) -> tuple[str, str]:
        """The module and attribute path under which the other side's version of ``fn`` is
        looked up: the configured name where ``fn`` is the configured kernel or model (a
        pull request that rebinds it, in its package's __init__ say, is still compared
        with the base's), else the function's own module and qualified name."""
        for obj, target in self.loaded:
            if obj is fn:
                return target.module, target.attribute
        return getattr(fn, "__module__", "") or "", getattr(fn, "__qualname__", "") or ""

    def resolve_case(self, case: Conv3dCase | str | Mapping[str, Any]) -> Conv3dCase:
        """A suite case by name (scaled like the run), a user's own table, or a case."""
        if isinstance(case, Conv3dCase):
            return case
        if isinstance(case, str):
            found = select(list(self.suite.values()), [case])[0]
            return found.scaled() if self.scaled else found
        return case_from_mapping(case)

    def thresholds(self, case: Conv3dCase | None, marker: Mapping[str, Any]) -> Thresholds:
        """A marker over the run's thresholds where asked for (option, ini) over the case's
        own (case file) over the defaults: a case's values are its resolution, and who
        asks for other thresholds on the command line means them for every case."""
        fail, warn = self.settings.fail_pct, self.settings.warn_pct
        if case and not self.settings.thresholds_given:
            fail = case.fail_threshold or fail
            warn = case.warn_threshold or warn
        if marker.get("fail") is not None:
            fail = parse_percent(marker["fail"], "conv3d_perf marker, fail")
        if marker.get("warn") is not None:
            warn = parse_percent(marker["warn"], "conv3d_perf marker, warn")
        return Thresholds(fail, min(warn, fail))

    # -- timing a case -------------------------------------------------------------

    def time_case(
        self,
        name: str,
        nodeid: str,
        call: Callable[[], object],
        reference: Callable[[], object] | None,
        fn: object,
        thresholds: Thresholds,
        flop: int | None = None,
        case: Conv3dCase | None = None,
        replay: Callable[[Any], Callable[[], object]] | None = None,
        verify: Callable[[], str] | None = None,
    ) -> CaseResult | None:
        """Time ``call`` and decide; without timing, run it once as a smoke test.
        ``replay(f)`` makes the same call with another version of ``fn`` (another
        revision's, for the A/B that decides or settles a verdict). ``verify()``, after
        the timing: why a timed call's output is wrong, or ''; the case fails on it."""
        if not self.timing:
            call()
            return None
        assert self.timer is not None
        base = self.baselines.get(name)
        against = self.settings.against
        revision = against or (str(base.environment.get("commit", "")) if base else "")
        counterpart: list[object] = []
        other = None
        if replay is not None and (against or (base is not None and self.settings.stored_ab)):

            def other() -> Other:
                found, twin = self._other(fn, revision, call, replay, bool(against))
                counterpart.append(twin)
                return found

        plan = Plan(
            budget_s=self.settings.budget_s, target_halfwidth_pct=thresholds.target_halfwidth_pct
        )
        out = run_gate(
            self.timer,
            call,
            reference,
            base,
            thresholds,
            plan,
            self.settings.l2,
            progress=self.live(name),
            other=other,
            now=getattr(self.timer, "now", time.perf_counter),
            ab_first=bool(against),
        )
        m = out.measurement
        entry = BaselineEntry(
            median_ms=m.kernel.median,
            ci_low_ms=m.kernel.low,
            ci_high_ms=m.kernel.high,
            samples=m.kernel.n,
            l2=m.l2,
            reference_ms=m.reference.median if m.reference else None,
            reference_ci_ms=[m.reference.low, m.reference.high] if m.reference else None,
            sm_mhz=m.sm_mhz,
            call_ms=m.call.median if m.call else None,
            call_ci_ms=[m.call.low, m.call.high] if m.call else None,
            kernel_hash=source_hash(fn),
            kernel_file=repository_path(fn, Path(self.config.rootpath)),
            autotune=autotune_config(fn),
            case=case.to_dict() if case else None,
            environment={**self.device_info, "date": now_utc()},
        )
        policy = FailPolicy(
            self.settings.unstable_policy, self.settings.new_policy, self.settings.update
        )
        result = case_result(
            out,
            name=name,
            nodeid=nodeid,
            thresholds=thresholds,
            entry=entry,
            baseline=base,
            flop=flop,
            policy=policy,
            wrong_output=verify() if verify is not None else "",
        )
        if out.settled_by == "ab" and counterpart and counterpart[0] is not None:
            # An autotuner picks among near-equal configs by a timing of its own: two
            # copies of one kernel can pick differently in one process (notes/kernel.md).
            label = out.against if against else "the recorded one"
            note = config_note(entry.autotune, autotune_config(counterpart[0]), label)
            if note:
                result.reasons = (*result.reasons, note)
        self.results.append(result)
        return result

    def _other(
        self,
        fn: object,
        revision: str,
        call: Callable[[], object],
        replay: Callable[[Any], Callable[[], object]],
        asked: bool,
    ) -> tuple[Other, object | None]:
        """The other side of the A/B for ``fn``: ``revision``'s code for it, loaded with
        its import closure, making ``call`` (``replay``); or why there is none."""
        module, qualname = self.where(fn)
        source = "--conv3d-against" if asked else "the baseline entry"
        if not revision:
            why = f"{source} names no commit: the stored number decides"
            return Other(None, why=why), None
        side = self.revisions.side(revision, module) if module else Unavailable("no module")
        if isinstance(side, Unavailable):
            if side.tampered:
                return Other(None, why=side.why, tampered=True), None
            if side.missing:
                return Other(None, why=f"{side.why}: nothing to compare with", missing=True), None
            return Other(None, why=f"{side.why}; the stored number decides"), None
        label = self.against_label if asked else f"the kernel as recorded at {side.label}"
        twin = side.counterpart(module, qualname)
        if twin is None:
            why = f"{label} has no {module}.{qualname}: nothing to compare with"
            return Other(None, label, why, missing=True), None
        # Nothing of that side ran since its last call: a global of its modules bound
        # differently now was rebound by other code, the code under test's.
        rebound = side.watch.since() if side.watch else []
        if rebound:
            why = (
                f"{label}'s module globals were rebound in memory since its last call "
                f"({', '.join(rebound[:3])}): by code that ran since, the code under test's"
            )
            return Other(None, label, why, tampered=True), twin
        root = Path(self.config.rootpath)
        names = self.revisions.names(side.tree)
        both = pair(today(root, names), side, names, call, replay(twin))
        try:
            # Its first call: compiles and tunes, shows it runs this case, and whether it
            # imports as it runs.
            both.warm()
        except Exception as exc:
            why = (
                f"{label}'s {qualname} raised {type(exc).__name__} on this case's arguments "
                f"({str(exc)[:120]}): an interface change? the stored number decides"
            )
            return Other(None, label, why), twin
        if side.watch:
            side.watch.take()  # what its own first call on this case bound is its own
        both.other.conv3d_role = "recorded"  # type: ignore[attr-defined]
        today_call = both.today if both.today is not call else None

        def changed() -> tuple[str, ...]:
            tree = self.revisions.tree_changes(side.tree)
            environ = self.revisions.environ_changes()
            memory = side.watch.after(both.other) if side.watch else []
            return (
                *both.changed(),
                *(f"{side.label}'s tree: {c}" for c in tree),
                *(f"the environment mapping: {c}" for c in environ),
                *(f"{side.label}'s {c} rebound in memory" for c in memory),
            )

        return Other(both.other, label, today=today_call, changed=changed), twin

    def _terminal(self) -> Any:
        return self.config.pluginmanager.get_plugin("terminalreporter")

    def say(self, line: str) -> None:
        """A line on the terminal now, in the middle of a test: capture is suspended
        around it, and it starts on a line of its own (after -q's progress marks)."""
        tr = self._terminal()
        if tr is None:
            return
        capture = self.config.pluginmanager.get_plugin("capturemanager")
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            if tr._tw.width_of_current_line:
                tr.write("\n")
            tr.write_line(line)

    def live(self, name: str) -> Callable[[str], None] | None:
        """Status while a case is measured: rewritten in place on a terminal; on a log
        (CI) only the first line, so the log does not fill with status."""
        tr = self._terminal()
        if tr is None:
            return None
        capture = self.config.pluginmanager.get_plugin("capturemanager")
        state = {"first": True}

        def show(status: str) -> None:
            text = f"conv3d-perf {name}: measuring: {status}"
            with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
                if getattr(tr, "isatty", False):
                    if state["first"] and tr._tw.width_of_current_line:
                        tr.write("\n")
                    tr.rewrite(text, erase=True)
                elif state["first"]:
                    if tr._tw.width_of_current_line:
                        tr.write("\n")
                    tr.write_line(text)
            state["first"] = False

        return show

    def finish_line(self, line: str) -> None:
        """The case's result line: over the live status on a terminal."""
        tr = self._terminal()
        if tr is not None and getattr(tr, "isatty", False):
            capture = self.config.pluginmanager.get_plugin("capturemanager")
            with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
                tr.rewrite(line, erase=True)
                tr.write("\n")
            return
        self.say(line)

    # -- hooks ---------------------------------------------------------------------

    def pytest_report_header(self) -> list[str]:
        sizes = "scaled-down cases" if self.scaled else "full-size cases"
        kernel = f"; kernel {self.kernel}" if self.kernel else ""
        lines = [
            f"conv3d-perf: {self.runtime.describe()}, {sizes}, {len(self.cases)} cases{kernel}"
        ]
        if self.timing and self.store:
            known = "" if self.store.exists() else " (no file yet: every case is new)"
            run = Thresholds(self.settings.fail_pct, self.settings.warn_pct)
            own = [c.name for c in self.cases if self.thresholds(c, {}) != run]
            lines.append(
                f"conv3d-perf: timing on; baseline {self.store.path}{known}; fail above "
                f"{self.settings.fail_pct:g}%, warn above {self.settings.warn_pct:g}%"
                + (f" ({', '.join(own)}: their own)" if own else "")
                + f", L2 {self.settings.l2}"
            )
        elif self.merging:
            lines.append(
                "conv3d-perf: timing in the xdist workers, one per GPU; one report merges them"
            )
        elif self.settings.perf:
            lines.append(f"conv3d-perf: timing skipped: {self.timing_off}")
        return lines

    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[Any]) -> None:
        """A baseline update measures; it does not re-run the correctness tests."""
        if not self.settings.perf_only:
            return
        keep = [i for i in items if "conv3d_perf" in getattr(i, "fixturenames", ())]
        dropped = [i for i in items if i not in keep]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = keep

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        """The timed tests this run will run. The kernel's code runs in this process and
        can end it early with status 0 (``pytest.exit``) before the case it slows has a row
        (the fourth red team); the report lists what was selected, so the job's trusted
        handoff fails a report that lacks one."""
        self.selected = [
            i.nodeid for i in session.items if "conv3d_perf" in getattr(i, "fixturenames", ())
        ]

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: Any, call: Any) -> Any:
        """Where a case that cannot be judged fails (``--conv3d-unstable=fail``, CI), a
        timed test that skips (or xfails) fails: the kernel's own code can raise a skip, and
        a skip is no verdict (the red team: a pull request that skipped on the CI GPU
        passed with an empty table)."""
        outcome = yield
        report = outcome.get_result()
        if (
            report.skipped
            and self.timing
            and self.settings.unstable_policy == "fail"
            and "conv3d_perf" in getattr(item, "fixturenames", ())
        ):
            reason = getattr(report, "wasxfail", "") or (
                report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            )
            report.outcome = "failed"
            report.longrepr = (
                f"conv3d-perf: {item.nodeid} did not run to a verdict ({reason}); with "
                "--conv3d-unstable=fail a timed test that skips fails"
            )

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """pytest-xdist: the controller prints each case's line its worker recorded."""
        if not self.merging or report.when != "call":
            return
        for key, value in report.user_properties:
            if key == PROPERTY:
                self.say(str(value))

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: object) -> None:
        """pytest-xdist: a worker finished; its timed results join the controller's."""
        data = getattr(node, "workeroutput", {}).get(PROPERTY)
        if data:
            self.merge_worker(data)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        worker = _is_xdist_worker(self.config)
        try:
            # A worker updates its own GPU's baseline file (under the file lock) and hands
            # its results to the controller, which writes one report for the whole run.
            self.finish(reports=not worker)
        except BaselineError as exc:
            raise pytest.UsageError(f"conv3d-perf: {exc}") from None
        if worker:
            self.config.workeroutput[PROPERTY] = self.worker_output()  # type: ignore[attr-defined]
        elif self.refused and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        lines = self.summary_lines()
        if lines:
            terminalreporter.section("conv3d-perf")
            for line in lines:
                terminalreporter.write_line(line)
        if os.environ.get("GITHUB_ACTIONS") == "true":
            # An annotation names the failing cases on the check itself.
            for line in self.annotations():
                terminalreporter.write_line(line)

    # -- the end of the run --------------------------------------------------------

    @property
    def refused(self) -> list[Action]:
        return [a for a in self.actions if a.action == "refuse"]

    def worker_output(self) -> bytes:
        """What an xdist worker hands the controller. Pickled: both ends are this package,
        in the processes of one pytest run."""
        path = self.store.path if self.store else None
        return pickle.dumps((self.results, self.actions, self.device_info, path, self.selected))

    def merge_worker(self, data: bytes) -> None:
        results, actions, device_info, path, selected = pickle.loads(data)
        self.results.extend(results)
        self.selected.extend(n for n in selected if n not in self.selected)
        self.actions.extend(actions)
        self.device_info = self.device_info or device_info
        if path is not None and results:
            self.worker_baselines.add(path)

    def finish(self, *, reports: bool = True) -> None:
        """Write the baselines (on purpose only) and, unless an xdist worker hands its
        results to the controller instead, the report files."""
        if self.results and self.settings.update and self.store is not None:
            # A case whose timed calls returned a wrong output was timed on a path no
            # caller takes (results kept from earlier calls): its times are not stored.
            measured = {
                r.name: Measurement(r.entry, r.verdict, r.baseline, r.thresholds.max_halfwidth_pct)
                for r in self.results
                if not r.wrong_output
            }
            chosen, notes = merge_processes(measured, prior_entries(list(self.settings.prior_json)))
            for r in self.results:
                if r.name in notes:
                    r.reasons = (*r.reasons, notes[r.name])
            self.actions = self.store.update(
                chosen,
                churn_pct=self.settings.warn_pct / 3,
                force=self.settings.force,
                requested=frozenset(self.settings.case_names),
                dry_run=self.settings.dry_run,
            )
        if not reports or not self.settings.perf:
            return
        s = self.settings
        files = report.ReportFiles(
            json_path=s.json_path,
            benchmark_json_path=s.benchmark_json_path,
            gab_json_path=s.gab_json_path,
            markdown_path=s.markdown_path,
            benchmark_storage=s.benchmark_storage,
            benchmark_save=s.benchmark_save,
        )
        self.written = report.write_reports(self.results, self.meta(), self.actions, files)

    def meta(self) -> dict[str, Any]:
        return {
            "environment": {**self.device_info, "date": now_utc()},
            "l2": self.settings.l2,
            "fail_pct": self.settings.fail_pct,
            "warn_pct": self.settings.warn_pct,
            "baseline_file": str(self.store.path) if self.store else None,
            "baseline_exists": self.store.exists() if self.store else None,
            "against": self.against_label or None,
            "update": self.settings.update,
            "dry_run": self.settings.dry_run,
            "selected": list(self.selected),
        }

    def annotations(self) -> list[str]:
        """GitHub Actions workflow commands for the cases that fail the run."""
        return [
            f"::error title=conv3d-perf {r.verdict.value}::{report.progress_line(r)}"
            for r in report.ordered(self.results)
            if r.fails
        ]

    def summary_lines(self) -> list[str]:
        if not self.results:
            if self.merging:
                return ["the xdist workers timed no case (is a CUDA GPU visible to them?)"]
            return [f"wrote {p}" for p in self.written]
        lines = [
            *report.context_lines(self.meta(), self.results),
            report.text_table(report.HEADER, report.rows(self.results)),
            "",
        ]
        for r in report.ordered(self.results):
            for reason in r.reasons:
                lines.append(f"  {r.name}: {reason}")
        if any(r.verdict is Verdict.IMPROVEMENT for r in self.results):
            lines.append("Faster beyond the threshold: consider `conv3d-perf update-baselines`.")
        if self.actions:
            verb = "would change (dry run)" if self.settings.dry_run else "changed"
            n = sum(a.writes for a in self.actions)
            files = [self.store.path] if self.store else sorted(self.worker_baselines)
            lines += [
                "",
                f"baseline {', '.join(map(str, files))}: {n} entr{'y' if n == 1 else 'ies'} {verb}",
                report.actions_table(self.actions),
            ]
        lines += [f"{a.case}: not stored in the baseline: {a.reason}" for a in self.refused]
        lines += [f"wrote {p}" for p in self.written]
        lines.append(report.headline(self.results))
        return lines
