"""Baseline files a pull request cannot turn into a pass: every value the gate refuses, the
store's hygiene (no lock or temporary file left, modes kept), and check-baselines."""

import json
import os
import stat
import subprocess
import sys

import pytest

from pytest_conv3d_perf import baseline
from pytest_conv3d_perf.baseline import (
    MAX_HALFWIDTH_PCT,
    BaselineEntry,
    BaselineError,
    BaselineStore,
    Measured,
    parse,
)
from pytest_conv3d_perf.verdict import Verdict

GOOD = {"median_ms": 1.0, "ci_low_ms": 0.99, "ci_high_ms": 1.01, "samples": 100, "l2": "flush"}


def doc(**fields) -> str:
    return json.dumps({"schema": 1, "gpu": "G", "cases": {"a": {**GOOD, **fields}}})


@pytest.mark.parametrize(
    "text, message",
    [
        (doc(ci_low_ms=float("nan")), "case 'a': field 'ci_low_ms': expected a finite number"),
        (doc(median_ms=float("inf")), "case 'a': field 'median_ms': expected a finite number"),
        (doc(ci_high_ms=10**400), "case 'a': field 'ci_high_ms': expected a finite number"),
        (doc(median_ms=-1.0, ci_low_ms=-2.0), "case 'a': field 'median_ms': must be positive"),
        (doc(ci_low_ms=1.01, ci_high_ms=0.99), "case 'a': fields 'ci_low_ms', 'ci_high_ms'"),
        (doc(ci_low_ms=-0.5), "the interval [-0.5, 1.01] must be positive and hold the median"),
        (doc(ci_low_ms=0.5, ci_high_ms=1.5), f"wider than ±{MAX_HALFWIDTH_PCT:g}%"),
        (doc(samples=0), "case 'a': field 'samples': expected a positive integer"),
        (doc(samples=True), "case 'a': field 'samples': expected a positive integer"),
        (doc(reference_ci_ms=[2.0, 1.0]), "field 'reference_ci_ms': expected two ordered"),
        (doc(sm_mhz=-1980), "case 'a': field 'sm_mhz': must be positive"),
        (doc(extra=1), "case 'a': unknown field 'extra'"),
        (json.dumps({"schema": True, "cases": {}}), "field 'schema': expected an integer"),
        (json.dumps({"schema": "1", "cases": {}}), "field 'schema': expected an integer"),
        (json.dumps({"schema": 2, "cases": {}}), "schema version 2 is not known"),
        ("[" * 100_000 + "]" * 100_000, "nested deeper than 32 levels"),
        ('{"schema": 1, "cases": []}', "field 'cases' must be an object"),
        ("[1, 2]", "not a conv3d-perf baseline file"),
    ],
)
def test_each_bad_value_is_refused_with_one_line_naming_it(text, message):
    with pytest.raises(BaselineError) as info:
        parse("gpu.json", text)
    assert message in str(info.value)
    assert str(info.value).startswith("gpu.json: ")
    assert "\n" not in str(info.value)


def entry_doc(name: str = "a", **fields) -> str:
    return json.dumps({"schema": 1, "gpu": "G", "cases": {name: {**GOOD, **fields}}})


# Each value once switched the gate off or reached git or the summary (issue 26).
@pytest.mark.parametrize(
    "fields, where",
    [
        ({"process_sd": 1e6}, "field 'process_sd': expected a number in 0..0.1276"),
        ({"process_sd": -0.01}, "field 'process_sd': expected a number in 0..0.1276"),
        ({"call_process_sd": 7.0}, "field 'call_process_sd': expected a number in 0..1"),
        ({"sm_mhz": 1e300}, "field 'sm_mhz': must lie in 100..5000 MHz"),
        ({"sm_mhz": 3}, "field 'sm_mhz': must lie in 100..5000 MHz"),
        ({"environment": {"commit": "HEAD"}}, "field 'environment': key 'commit': expected 40"),
        ({"environment": {"commit": "--output=/tmp/x"}}, "key 'commit': expected 40 lowercase"),
        ({"environment": {"commit": "A" * 40}}, "key 'commit': expected 40 lowercase hex"),
        ({"kernel_file": "/etc/passwd"}, "field 'kernel_file': expected a relative path"),
        ({"kernel_file": "../../etc/passwd"}, "field 'kernel_file': expected a relative path"),
        ({"kernel_file": "kernels/a\u202e.py"}, "field 'kernel_file': expected a relative path"),
        (
            {"call_ms": 1.0, "call_ci_ms": [1.5, 2.0]},
            "field 'call_ci_ms': [1.5, 2.0] does not hold",
        ),
        ({"call_ms": 1.0, "call_ci_ms": [1e-9, 1e9]}, "field 'call_ci_ms': wider than ±50%"),
        ({"reference_ms": 3.0, "reference_ci_ms": [1.0, 2.0]}, "'reference_ci_ms': [1.0, 2.0]"),
        ({"reference_ci_ms": [1.0, 2.0]}, "field 'reference_ci_ms': an interval without"),
        ({"samples": 10**4000}, "field 'samples': expected a positive integer up to 1000000000"),
        ({"processes": 10**6}, "field 'processes': expected a positive integer up to 1000"),
        (
            {"median_ms": 1e300, "ci_low_ms": 1e300, "ci_high_ms": 1e300},
            "field 'median_ms': must lie in 0.0001..100000 ms",
        ),
        (
            {"median_ms": 5e-324, "ci_low_ms": 5e-324, "ci_high_ms": 5e-324},
            "field 'median_ms': must lie in 0.0001..100000 ms",
        ),
        ({"reference_ms": 1e9}, "field 'reference_ms': must lie in"),
        ({"environment": {"l2_bytes": 10**40}}, "field 'environment': holds a number out of range"),
        ({"autotune": {"BLOCK_M": "x" * 5000}}, "field 'autotune': holds a string longer than"),
        ({"l2": "flush\nnew line"}, "field 'l2': expected up to 100 of"),
    ],
)
def test_values_that_switch_the_gate_off_are_refused_naming_file_case_and_field(fields, where):
    with pytest.raises(BaselineError) as info:
        parse("gpu.json", entry_doc(**fields))
    assert str(info.value).startswith("gpu.json: case 'a': ")
    assert where in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "name", ["a\nb", "a\rb", "[x](https://evil.example)", "a\u202eb", "a\u200bb", "", "a b", "é"]
)
def test_case_names_outside_the_safe_set_are_refused(name):
    with pytest.raises(BaselineError) as info:
        parse("gpu.json", entry_doc(name))
    message = str(info.value)
    assert "the case name must be 1-100 of A-Z a-z 0-9 _ . -" in message
    # The name is shown escaped: no raw newline, CR or bidi character reaches the line.
    assert message.isprintable()


@pytest.mark.parametrize(
    "text, message",
    [
        (
            '{"schema": 1, "gpu": "G", "cases": {"a": '
            + json.dumps(GOOD)[:-1]
            + ', "median_ms": 9.0}}}',
            "gpu.json: case 'a': field 'median_ms' appears twice",
        ),
        (
            '{"schema": 1, "gpu": "G", "cases": {"a": '
            + json.dumps(GOOD)
            + ', "a": '
            + json.dumps(GOOD)
            + "}}",
            "gpu.json: case 'a' appears twice",
        ),
        (
            '{"schema": 1, "gpu": "G", "gpu": "H", "cases": {}}',
            "gpu.json: key 'gpu' appears twice",
        ),
        (
            '{"schema": 1, "gpu": "G", "cases": {"a": '
            + json.dumps(GOOD)[:-1]
            + ', "environment": {"commit": "'
            + "a" * 40
            + '", "commit": "HEAD"}}}}',
            "field 'environment': key 'commit'",
        ),
        ('{"schema": 1, "gpu": 7, "cases": {}}', "gpu.json: field 'gpu': expected a GPU's name"),
        (
            '{"schema": 1, "gpu": "G", "cases": {}, "thresholds": {"fail": 90}}',
            "gpu.json: unknown top-level key 'thresholds'",
        ),
    ],
)
def test_duplicate_keys_unknown_keys_and_a_non_string_gpu_are_refused(text, message):
    with pytest.raises(BaselineError) as info:
        parse("gpu.json", text)
    assert message in str(info.value)


def test_a_large_file_is_refused_from_its_first_bytes(tmp_path, monkeypatch):
    path = tmp_path / "gpu.json"
    with open(path, "wb") as fh:
        fh.truncate(100 * 1024 * 1024)  # sparse: 100 MB on paper, nothing on disk
    reads: list[int] = []
    real_open = open

    def counting_open(*args, **kwargs):
        fh = real_open(*args, **kwargs)
        real_read = fh.read

        def read(size=-1):
            reads.append(size)
            return real_read(size)

        fh.read = read
        return fh

    monkeypatch.setattr(baseline, "open", counting_open, raising=False)
    entries, problems = baseline.read_file(path)
    assert entries == {}
    assert problems == [
        f"{path}: larger than {baseline.MAX_FILE_BYTES} bytes; the file was left as it is"
    ]
    assert reads == [baseline.MAX_FILE_BYTES + 1]


def test_a_pipe_is_not_read(tmp_path):
    os.mkfifo(tmp_path / "gpu.json")
    assert baseline.read_file(tmp_path / "gpu.json")[1] == [
        f"{tmp_path / 'gpu.json'}: not a regular file"
    ]


def test_an_update_never_writes_what_a_read_refuses(tmp_path):
    store = BaselineStore(tmp_path, "G")
    odd = BaselineEntry(1.0, 0.999, 1.001, 100, "flush", sm_mhz=1e300)
    [action] = store.update({"a": Measured(odd, Verdict.NEW, None)}, churn_pct=0.3)
    assert action.action == "refuse"
    assert action.reason.startswith("not storable: field 'sm_mhz': must lie in 100..5000 MHz")
    assert not store.path.exists()
    [named] = store.update({"a\nb": Measured(entry(1.0), Verdict.NEW, None)}, churn_pct=0.3)
    assert named.action == "refuse" and "the case name must be" in named.reason


def test_invalid_utf8_is_refused():
    with pytest.raises(BaselineError, match=r"gpu.json: not valid UTF-8 \(byte 12\)"):
        parse("gpu.json", b'{"schema": 1\xff}')


def entry(ms: float, half: float = 0.001) -> BaselineEntry:
    return BaselineEntry(ms, ms * (1 - half), ms * (1 + half), 100, "flush")


def test_update_leaves_only_the_file_and_keeps_its_mode(tmp_path):
    store = BaselineStore(tmp_path, "Some GPU")
    store.update({"a": Measured(entry(1.0), Verdict.NEW, None)}, churn_pct=0.3)
    assert [p.name for p in tmp_path.iterdir()] == ["some-gpu.json"]
    os.chmod(store.path, 0o640)
    # A writer killed between its temporary file and the rename left this behind.
    (tmp_path / ".some-gpu.json.abc123.tmp").write_text("half a file")
    store.update({"a": Measured(entry(2.0), Verdict.REGRESSION, 100.0)}, churn_pct=0.3)
    assert [p.name for p in tmp_path.iterdir()] == ["some-gpu.json"]
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o640
    assert store.load()["a"].median_ms == 2.0


def test_update_refuses_an_interval_wider_than_the_bound_even_forced(tmp_path):
    store = BaselineStore(tmp_path, "G")
    wide = entry(1.0, half=0.06)  # three processes at +6, 0 and -6%
    [action] = store.update({"a": Measured(wide, Verdict.NEW, None)}, churn_pct=0.3, force=True)
    assert action.action == "refuse" and "wider than" in action.reason
    assert not store.path.exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_is_one_line(tmp_path):
    os.chmod(tmp_path, 0o500)
    try:
        with pytest.raises(BaselineError, match="cannot write it"):
            BaselineStore(tmp_path, "G").update(
                {"a": Measured(entry(1.0), Verdict.NEW, None)}, churn_pct=0.3
            )
    finally:
        os.chmod(tmp_path, 0o700)


def test_unwritable_file_is_one_line(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("pytest_conv3d_perf.baseline._atomic_write", refuse)
    with pytest.raises(BaselineError, match="cannot write it \\(Permission denied\\)"):
        BaselineStore(tmp_path, "G").update(
            {"a": Measured(entry(1.0), Verdict.NEW, None)}, churn_pct=0.3
        )


def check_baselines(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "pytest_conv3d_perf.cli", "check-baselines", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
    )


def test_check_baselines_lists_every_problem_and_exits_1(tmp_path):
    folder = tmp_path / "baselines"
    folder.mkdir()
    (folder / "good.json").write_text(doc())
    bad = json.loads(doc(ci_low_ms=float("nan")))
    bad["cases"]["b"] = {**GOOD, "samples": -3}
    (folder / "bad.json").write_text(json.dumps(bad))
    (folder / "binary.json").write_bytes(b"\xff\xfe")
    done = check_baselines(cwd=tmp_path)
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert any("bad.json: case 'a': field 'ci_low_ms'" in line for line in lines)
    assert any("bad.json: case 'b': field 'samples'" in line for line in lines)
    assert any("binary.json: not valid UTF-8" in line for line in lines)
    assert lines[-1] == "conv3d-perf check-baselines: 3 file(s), 3 problems"
    assert "Traceback" not in done.stderr
    ok = check_baselines(str(folder / "good.json"), cwd=tmp_path)
    assert ok.returncode == 0, ok.stdout


def test_the_committed_baselines_pass_the_check():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    done = check_baselines(cwd=root)
    assert done.returncode == 0, done.stdout


def test_diff_baselines_shows_only_printable_text(tmp_path):
    base, head = tmp_path / "base", tmp_path / "head"
    base.mkdir()
    head.mkdir()
    (base / "gpu.json").write_text(entry_doc())
    (head / "gpu.json").write_text(entry_doc(median_ms=1.001))
    (head / "x\u202e\u200b.json").write_text(entry_doc("b\u2066"))
    done = subprocess.run(
        [sys.executable, "-m", "pytest_conv3d_perf.cli", "diff-baselines", str(base), str(head)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "- `gpu.json`: `a: 1.0000 -> 1.0010 ms (+0.10%)`" in lines
    assert all(line.isprintable() for line in lines)
    assert any("the case name must be" in line for line in lines)
