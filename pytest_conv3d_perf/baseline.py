"""Stored baselines: one JSON file per GPU model, validated on read, merged by pure
functions, written atomically under a file lock."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import stat
import tempfile
from collections import Counter
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from pytest_conv3d_perf import spread
from pytest_conv3d_perf.stats import Z_95
from pytest_conv3d_perf.verdict import Timing, Verdict

SCHEMA_VERSION = 1


class BaselineError(RuntimeError):
    """A baseline file that cannot be used; it is never overwritten because of it."""


def gpu_slug(name: str) -> str:
    """'NVIDIA GeForce RTX 4090' -> 'nvidia-geforce-rtx-4090'."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "unknown-gpu"


@dataclass
class BaselineEntry:
    median_ms: float
    ci_low_ms: float
    ci_high_ms: float
    samples: int
    l2: str
    reference_ms: float | None = None
    reference_ci_ms: list[float] | None = None
    sm_mhz: float | None = None
    # Per call in a caller's loop (host work included); older files have none.
    call_ms: float | None = None
    call_ci_ms: list[float] | None = None
    kernel_hash: str = ""
    # The timed function's source file, relative to the repository, so the gate can load
    # it as it was at the recorded commit; older entries have none.
    kernel_file: str = ""
    # How many fresh processes the stored median was taken over, and how far their
    # medians spread (relative standard deviation; device time and call time).
    processes: int | None = None
    process_sd: float | None = None
    call_process_sd: float | None = None
    autotune: dict[str, Any] | None = None
    case: dict[str, Any] | None = None
    environment: dict[str, Any] = field(default_factory=dict)

    @property
    def rel_halfwidth(self) -> float:
        """Half the interval's width over the median."""
        return (self.ci_high_ms - self.ci_low_ms) / 2 / self.median_ms

    def timing(self) -> Timing:
        ref_hw = 0.0
        if self.reference_ms and self.reference_ci_ms:
            ref_hw = (self.reference_ci_ms[1] - self.reference_ci_ms[0]) / 2 / self.reference_ms
        call_hw = 0.0
        if self.call_ms and self.call_ci_ms:
            call_hw = (self.call_ci_ms[1] - self.call_ci_ms[0]) / 2 / self.call_ms
        return Timing(
            median_ms=self.median_ms,
            halfwidth=self.rel_halfwidth,
            ref_median_ms=self.reference_ms,
            ref_halfwidth=ref_hw,
            sm_mhz=self.sm_mhz,
            call_ms=self.call_ms,
            call_halfwidth=call_hw,
            process_sd=spread.stored_sd(spread.device_sd(self.median_ms), self.process_sd),
            call_process_sd=(
                spread.stored_sd(spread.call_sd(self.call_ms, self.median_ms), self.call_process_sd)
                if self.call_ms
                else 0.0
            ),
        )

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


# The widest interval a baseline may hold, as a half-width in percent of the median: wider,
# and a 4% slowdown hides inside it as `unstable` (an interval widened by processes that
# disagreed by +-6% did exactly that). Twice the default fail threshold's resolution.
MAX_HALFWIDTH_PCT = 2.0
# Processes of one recording that disagree by more than the widest interval a baseline may
# hold (tiny kernels land in one of two places from one process to the next: ±2.5-3.5% at
# 95% on the H100's 13-18 us cases; ±5.6-12.5% on three of the H200's first recording,
# notes/gate-quality.md) are stored all the same, with their spread: a comparison with such
# an entry is too wide to call a change, so the A/B against the recorded code decides, and
# a new GPU model's first recording holds every case. Refused, they stayed `new`, and passed.
# Beyond this bound the GPU is not measuring at all (another job on it, a clock stuck low):
# the update refuses, and a file that holds more is refused on read.
MAX_PROCESS_SPREAD_PCT = 25.0
# Deeper than any baseline file; json.loads on hostile nesting would raise RecursionError.
_MAX_DEPTH = 32
# Larger than any baseline file (the suite's 16 cases take about 30 KB): a file is refused from its
# first MAX_FILE_BYTES + 1 bytes, never read whole (a 100 MB file took 2.6 s and 330 MB).
MAX_FILE_BYTES = 4 * 1024 * 1024
# A --conv3d-json report carries every result besides its entry.
MAX_REPORT_BYTES = 32 * 1024 * 1024

# What a recording can hold; a value outside is an edited file, and several such values once
# switched the gate off (a spread of 1e6 or a clock of 1e300 made a 30% slowdown `unstable`).
TIME_RANGE_MS = (1e-4, 1e5)  # 0.1 us to 100 s a call
SM_MHZ_RANGE = (100.0, 5000.0)  # idle clocks read 200-345 MHz; boost clocks stay under 3.5 GHz
MAX_SAMPLES = 10**9
MAX_PROCESSES = 1000
# An update refuses processes that disagree by more than MAX_PROCESS_SPREAD_PCT at 95%.
MAX_PROCESS_SD = MAX_PROCESS_SPREAD_PCT / 100 / Z_95
# Call times are mostly host work: the H100's committed file holds a call spread of 0.35
# and a call interval of ±26% (tiny_odd, n1_oc17_bias). The call time's `unstable` never
# changes a case's verdict and the reference is reported only, so their bounds are loose.
MAX_CALL_PROCESS_SD = 1.0
MAX_SIDE_HALFWIDTH_PCT = 50.0  # the reference's and the call's intervals
# Strings and numbers inside the free-form fields (case, autotune, environment).
_MAX_TEXT = 1000
_MAX_NUMBER = 1e18

CASE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")
_COMMIT = re.compile(r"[0-9a-f]{40}")
_TOKEN = re.compile(r"[A-Za-z0-9_.:-]{0,100}")
_TOP_LEVEL = ("schema", "gpu", "cases")
_FIELDS = {f.name: f for f in fields(BaselineEntry)}
_REQUIRED = [
    name for name, f in _FIELDS.items() if f.default is MISSING and f.default_factory is MISSING
]


class _JsonObject(dict):
    """A JSON object that remembers the keys it held more than once: json.loads keeps the
    last, while a reviewer reading the file sees the first."""

    repeated: tuple[str, ...] = ()


def _json_object(pairs: list[tuple[str, Any]]) -> _JsonObject:
    obj = _JsonObject(pairs)
    if len(obj) < len(pairs):
        counts = Counter(key for key, _ in pairs)
        obj.repeated = tuple(sorted(key for key, n in counts.items() if n > 1))
    return obj


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _finite(value: Any) -> bool:
    try:
        return _is_number(value) and math.isfinite(float(value))
    except OverflowError:
        return False


# Each rule: None for a good value, else why it is refused (with the value).
def _within(value: Any, low: float, high: float, unit: str) -> str | None:
    if not _finite(value):
        return f"expected a finite number, got {_short(value)}"
    if not value > 0 and low > 0:
        return f"must be positive, got {_short(value)}"
    if not low <= value <= high:
        return f"must lie in {low:g}..{high:g}{unit}, got {_short(value)}"
    return None


def _count(value: Any, high: int) -> str | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 < value <= high
    return None if ok else f"expected a positive integer up to {high}, got {_short(value)}"


def _number(value: Any) -> str | None:
    return None if _finite(value) else f"expected a finite number, got {_short(value)}"


def _spread(value: Any, high: float) -> str | None:
    if not _finite(value) or not 0 <= value <= high:
        return f"expected a number in 0..{high:.4g}, got {_short(value)}"
    return None


def _interval(value: Any) -> str | None:
    ok = (
        isinstance(value, list)
        and len(value) == 2
        and all(_finite(v) for v in value)
        and 0 < value[0] <= value[1]
    )
    return None if ok else f"expected two ordered positive numbers, got {_short(value)}"


def _token(value: Any) -> str | None:
    if isinstance(value, str) and _TOKEN.fullmatch(value):
        return None
    return f"expected up to 100 of A-Z a-z 0-9 _ . : -, got {_short(value)}"


def _repository_path(value: Any) -> str | None:
    """'' (recorded outside git) or a path inside the repository: the gate hands it to
    `git show COMMIT:PATH`."""
    if isinstance(value, str) and not (
        value
        and (
            value.startswith("/")
            or "\\" in value
            or len(value) > 255
            or not value.isprintable()
            or any(part in ("", ".", "..") for part in value.split("/"))
        )
    ):
        return None
    return f"expected a relative path inside the repository, got {_short(value)}"


def _environment(value: Any) -> str | None:
    if not isinstance(value, dict):
        return f"expected dict, got {_short(value)}"
    commit = value.get("commit", "")
    # The gate loads the kernel as it was at this commit: "HEAD" compared the head with
    # itself, and "--output=/path" reached git as an option.
    if commit and not (isinstance(commit, str) and _COMMIT.fullmatch(commit)):
        return f"key 'commit': expected 40 lowercase hex digits, got {_short(commit)}"
    return _free_form(value)


def _free_form(value: Any) -> str | None:
    """Any JSON whose numbers are finite and bounded and whose strings are short."""
    if isinstance(value, dict):
        return next(filter(None, map(_free_form, value.values())), None)
    if isinstance(value, list):
        return next(filter(None, map(_free_form, value)), None)
    if isinstance(value, str) and len(value) > _MAX_TEXT:
        return f"holds a string longer than {_MAX_TEXT} characters"
    if _is_number(value) and not (_finite(value) and abs(value) <= _MAX_NUMBER):
        return f"holds a number out of range, {_short(value)}"
    return None


def _optional_dict(value: Any) -> str | None:
    return _free_form(value) if isinstance(value, dict) else f"expected dict, got {_short(value)}"


_RULES: dict[str, Any] = {
    "median_ms": lambda v: _within(v, *TIME_RANGE_MS, " ms"),
    "ci_low_ms": _number,
    "ci_high_ms": _number,
    "samples": lambda v: _count(v, MAX_SAMPLES),
    "l2": _token,
    "reference_ms": lambda v: _within(v, *TIME_RANGE_MS, " ms"),
    "reference_ci_ms": _interval,
    "sm_mhz": lambda v: _within(v, *SM_MHZ_RANGE, " MHz"),
    "call_ms": lambda v: _within(v, *TIME_RANGE_MS, " ms"),
    "call_ci_ms": _interval,
    "kernel_hash": _token,
    "kernel_file": _repository_path,
    "processes": lambda v: _count(v, MAX_PROCESSES),
    "process_sd": lambda v: _spread(v, MAX_PROCESS_SD),
    "call_process_sd": lambda v: _spread(v, MAX_CALL_PROCESS_SD),
    "autotune": _optional_dict,
    "case": _optional_dict,
    "environment": _environment,
}


def _repeated_inside(value: Any) -> list[str]:
    if isinstance(value, dict):
        own = list(getattr(value, "repeated", ()))
        return own + [k for v in value.values() for k in _repeated_inside(v)]
    if isinstance(value, list):
        return [k for v in value for k in _repeated_inside(v)]
    return []


def entry_problems(name: str, data: Any) -> list[str]:
    """What is wrong with one entry, each as 'field ...: why'. A field BaselineEntry gains
    is known here at once; its values are held to the free-form bounds until it gets a
    rule of its own."""
    out = []
    if not isinstance(name, str) or not CASE_NAME.fullmatch(name):
        out.append("the case name must be 1-100 of A-Z a-z 0-9 _ . -")
    if not isinstance(data, Mapping):
        return [*out, f"expected an object, got {type(data).__name__}"]
    out += [f"field {key!r} appears twice" for key in getattr(data, "repeated", ())]
    for key in _REQUIRED:
        if key not in data:
            out.append(f"field {key!r} is missing")
    for key, value in data.items():
        if key not in _FIELDS:
            out.append(f"unknown field {key!r}")
            continue
        if value is None and key not in _REQUIRED:
            continue
        why = _RULES.get(key, _free_form)(value)
        if why:
            out.append(f"field {key!r}: {why}")
        out += [f"field {key!r}: key {k!r} appears twice" for k in _repeated_inside(value)]
    return out or _relations(data)


def _relations(data: Mapping[str, Any]) -> list[str]:
    """Each interval holds its median and is no wider than a baseline may hold."""
    out = []
    median, low, high = (float(data[k]) for k in ("median_ms", "ci_low_ms", "ci_high_ms"))
    if not 0 < low <= median <= high:
        out.append(
            f"fields 'ci_low_ms', 'ci_high_ms': the interval [{low:g}, {high:g}] must be "
            f"positive and hold the median {median:g}"
        )
    elif (high - low) / 2 / median * 100 > MAX_HALFWIDTH_PCT:
        out.append(
            f"fields 'ci_low_ms', 'ci_high_ms': the interval ±{(high - low) / 2 / median:.2%} is "
            f"wider than ±{MAX_HALFWIDTH_PCT:g}%, too wide to gate on"
        )
    for key, middle_key in (("reference_ci_ms", "reference_ms"), ("call_ci_ms", "call_ms")):
        pair, middle = data.get(key), data.get(middle_key)
        if pair is None:
            continue
        if middle is None:
            out.append(f"field {key!r}: an interval without {middle_key!r}")
        elif not pair[0] <= middle <= pair[1]:
            out.append(f"field {key!r}: {_short(pair)} does not hold {middle_key} {middle:g}")
        elif (pair[1] - pair[0]) / 2 / middle * 100 > MAX_SIDE_HALFWIDTH_PCT:
            out.append(f"field {key!r}: wider than ±{MAX_SIDE_HALFWIDTH_PCT:g}% of {middle_key}")
    return out


def _short(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10**30:
        return "an integer of over 30 digits"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _too_deep(text: str) -> bool:
    """Bracket depth of a JSON text, strings skipped, so json.loads never recurses deep."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > _MAX_DEPTH:
                return True
        elif ch in "]}":
            depth -= 1
    return False


def read_limited(path: Path, limit: int = MAX_FILE_BYTES) -> bytes:
    """A file's bytes, refused unread past ``limit`` (and a pipe or device never read)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise BaselineError(f"{path}: not a regular file")
        with open(path, "rb") as fh:
            raw = fh.read(limit + 1)
    except OSError as exc:
        raise BaselineError(f"{path}: cannot read it: {exc.strerror}") from None
    if len(raw) > limit:
        raise BaselineError(f"{path}: larger than {limit} bytes; the file was left as it is")
    return raw


def _load_json(path: Path, raw: bytes) -> tuple[Any, str | None]:
    if len(raw) > MAX_FILE_BYTES:
        return None, f"{path}: larger than {MAX_FILE_BYTES} bytes; the file was left as it is"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"{path}: not valid UTF-8 (byte {exc.start}); the file was left as it is"
    if _too_deep(text):
        return None, f"{path}: nested deeper than {_MAX_DEPTH} levels; not a baseline file"
    try:
        return json.loads(text, object_pairs_hook=_json_object), None
    except json.JSONDecodeError as exc:
        return None, (
            f"{path}: not valid JSON ({exc.msg}, line {exc.lineno} column {exc.colno}); "
            "it was left as it is: fix it or restore it from git"
        )
    except (ValueError, RecursionError) as exc:
        return None, f"{path}: not valid JSON ({_short(str(exc))})"


def _document_problems(path: Path, data: Any) -> list[str]:
    if not isinstance(data, dict) or "schema" not in data:
        return [f"{path}: not a conv3d-perf baseline file (no 'schema' field)"]
    schema = data["schema"]
    if not isinstance(schema, int) or isinstance(schema, bool):
        return [f"{path}: field 'schema': expected an integer, got {_short(schema)}"]
    if schema != SCHEMA_VERSION:
        return [
            f"{path}: schema version {schema!r} is not known to this version of "
            f"pytest-conv3d-perf (it reads version {SCHEMA_VERSION}); the file was left as it is"
        ]
    out = [f"{path}: key {key!r} appears twice" for key in getattr(data, "repeated", ())]
    out += [
        f"{path}: unknown top-level key {_short(key)} (a baseline file holds "
        f"{', '.join(_TOP_LEVEL)})"
        for key in data
        if key not in _TOP_LEVEL
    ]
    gpu = data.get("gpu", "")
    if not (isinstance(gpu, str) and len(gpu) <= 200 and gpu.isprintable()):
        out.append(f"{path}: field 'gpu': expected a GPU's name, got {_short(gpu)}")
    if not isinstance(data.get("cases"), dict):
        out.append(f"{path}: field 'cases' must be an object of case entries")
    else:
        repeated = getattr(data["cases"], "repeated", ())
        out += [f"{path}: case {_short(name)} appears twice" for name in repeated]
    return out


def file_problems(path: Path, raw: bytes) -> tuple[dict[str, BaselineEntry], list[str]]:
    """The entries of a baseline file and every problem in it, each one line naming the
    file, the case and the field."""
    data, problem = _load_json(path, raw)
    if problem:
        return {}, [problem]
    problems = _document_problems(path, data)
    if not isinstance(data, dict) or not isinstance(data.get("cases"), dict):
        return {}, problems
    entries = {}
    for name, entry in data["cases"].items():
        found = entry_problems(name, entry)
        problems += [f"{path}: case {_short(name)}: {p}" for p in found]
        if not found:
            entries[name] = BaselineEntry(**_plain(entry))
    return entries, problems


def read_file(path: Path) -> tuple[dict[str, BaselineEntry], list[str]]:
    """``file_problems`` of a file on disk, read size-limited."""
    try:
        return file_problems(path, read_limited(path))
    except BaselineError as exc:
        return {}, [str(exc)]


def parse(path: Path, text: str | bytes) -> dict[str, BaselineEntry]:
    """Validate a baseline file; the first problem stops the run with one line."""
    raw = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
    entries, problems = file_problems(path, raw)
    if problems:
        raise BaselineError(problems[0])
    return entries


def _entry(path: Path, name: str, data: Any) -> BaselineEntry:
    found = entry_problems(name, data)
    if found:
        raise BaselineError(f"{path}: case {_short(name)}: {found[0]}")
    return BaselineEntry(**_plain(data))


def render(gpu_name: str, entries: Mapping[str, BaselineEntry]) -> str:
    doc = {
        "schema": SCHEMA_VERSION,
        "gpu": gpu_name,
        "cases": {name: entries[name].to_dict() for name in sorted(entries)},
    }
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


@dataclass(frozen=True)
class Measured:
    """One case's new entry with the verdict it got against the stored one."""

    entry: BaselineEntry
    verdict: Verdict
    change_pct: float | None


@dataclass(frozen=True)
class Action:
    case: str
    action: str  # add, update, confirm, keep, refuse
    old_ms: float | None
    new_ms: float
    reason: str

    @property
    def writes(self) -> bool:
        return self.action in ("add", "update", "confirm")


def plan_update(
    existing: Mapping[str, BaselineEntry],
    measured: Mapping[str, Measured],
    *,
    churn_pct: float,
    force: bool = False,
    requested: frozenset[str] = frozenset(),
) -> list[Action]:
    """What an update does to each measured case; cases not measured are not touched.

    An entry is rewritten only when it moved by more than ``churn_pct`` (a third of the
    warn threshold), its case changed, or it was asked for by name, so a baseline file
    does not churn with noise. An unstable measurement is refused unless forced."""
    actions = []
    for name in sorted(measured):
        new, old = measured[name], existing.get(name)
        action, reason = _action_for(name, new, old, churn_pct, force, requested)
        old_ms = old.median_ms if old else None
        actions.append(Action(name, action, old_ms, new.entry.median_ms, reason))
    return actions


def _action_for(
    name: str,
    new: Measured,
    old: BaselineEntry | None,
    churn_pct: float,
    force: bool,
    requested: frozenset[str],
) -> tuple[str, str]:
    if new.verdict is Verdict.UNSTABLE and not force:
        return "refuse", "unstable measurement; rerun, or pass --conv3d-force"
    width = halfwidth_pct(new.entry)
    disagree = 100 * Z_95 * (new.entry.process_sd or 0.0)
    if disagree > MAX_PROCESS_SPREAD_PCT:
        return "refuse", (
            f"the {new.entry.processes} processes disagree by ±{disagree:.2f}% at 95%, beyond "
            f"the ±{MAX_PROCESS_SPREAD_PCT:g}% of a GPU that measures at all; rerun on a quiet GPU"
        )
    if width > MAX_HALFWIDTH_PCT:
        return "refuse", (
            f"interval ±{width:.2f}% is wider than the ±{MAX_HALFWIDTH_PCT:g}% a baseline may "
            "hold (the processes disagree); rerun on a quiet GPU"
        )
    invalid = entry_problems(name, new.entry.to_dict())
    if invalid:
        # What the store writes, every read must accept: refused here, not on the next read.
        return "refuse", f"not storable: {invalid[0]}"
    action, reason = _write_action(name, new, old, churn_pct, force, requested)
    if disagree > MAX_HALFWIDTH_PCT and action in ("add", "update"):
        reason += (
            f"; the processes disagree (±{disagree:.2f}% at 95%): stored with that spread, "
            "so a comparison with it cannot call a change and the A/B against the recorded "
            "code decides"
        )
    return action, reason


def _write_action(
    name: str,
    new: Measured,
    old: BaselineEntry | None,
    churn_pct: float,
    force: bool,
    requested: frozenset[str],
) -> tuple[str, str]:
    if old is None:
        return "add", "new case"
    if old.case is not None and new.entry.case is not None and old.case != new.entry.case:
        return "update", "case changed"
    if force or name in requested:
        return "update", "forced" if force else "asked for by name"
    if new.change_pct is not None and abs(new.change_pct) > churn_pct:
        return "update", f"moved {new.change_pct:+.2f}%"
    fills = [k for k in _FILLED if getattr(old, k) is None and getattr(new.entry, k) is not None]
    if _recorded_code(old) != _recorded_code(new.entry) or fills:
        # Same numbers, new code: the entry must name the code it now vouches for; and
        # what it never measured (older files: call time, spread) is added.
        added = f", added {', '.join(fills)}" if fills else ""
        return (
            "confirm",
            f"within ±{churn_pct:.2f}%: numbers kept, new commit and kernel hash{added}",
        )
    return "keep", f"within ±{churn_pct:.2f}%"


_FILLED = ("call_ms", "call_ci_ms", "processes", "process_sd", "call_process_sd")


def _recorded_code(entry: BaselineEntry) -> tuple[str, str]:
    return entry.kernel_hash, str(entry.environment.get("commit", ""))


def confirmed(old: BaselineEntry, new: BaselineEntry) -> BaselineEntry:
    """``old``'s numbers, recorded against ``new``'s commit and kernel source."""
    env = {
        **old.environment,
        "commit": new.environment.get("commit", ""),
        "confirmed": new.environment.get("date", ""),
    }
    # What the old entry never measured (call time, the processes' spread: older files)
    # comes from this measurement; what it did measure stays.
    missing = {key: getattr(new, key) for key in _FILLED if getattr(old, key) is None}
    return replace(
        old,
        kernel_hash=new.kernel_hash,
        kernel_file=new.kernel_file,
        autotune=new.autotune,
        environment=env,
        **missing,
    )


def apply(
    existing: Mapping[str, BaselineEntry], measured: Mapping[str, Measured], actions: list[Action]
) -> dict[str, BaselineEntry]:
    merged = dict(existing)
    for act in actions:
        if act.action == "confirm":
            merged[act.case] = confirmed(existing[act.case], measured[act.case].entry)
        elif act.writes:
            merged[act.case] = measured[act.case].entry
    return merged


def entries_in_report(path: Path) -> dict[str, BaselineEntry]:
    """The would-be baseline entries a --conv3d-json report carries, validated."""
    try:
        data = json.loads(read_limited(path, MAX_REPORT_BYTES))
        results = data["results"]
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise BaselineError(f"{path}: not a conv3d-perf JSON report ({exc})") from None
    return {
        r["case"]: _entry(path, r["case"], r["baseline_entry"])
        for r in results
        if isinstance(r, dict) and "baseline_entry" in r
    }


def halfwidth_pct(entry: BaselineEntry) -> float:
    return 100 * entry.rel_halfwidth


def median_process(entries: list[BaselineEntry], max_halfwidth_pct: float) -> BaselineEntry | None:
    """The entry to store from several processes' measurements of one case, or None when
    no process measured it stably.

    Only stable processes take part; the one whose median is the median is stored, so one
    odd process (measured: the first after compilation ran 2.9% off on a small case)
    cannot set the baseline. It records how many processes measured and how far their
    medians spread, from which the gate widens every later comparison
    (``spread.stored_sd``): a case that moves between processes must not look more certain
    than it is."""
    stable = [e for e in entries if halfwidth_pct(e) <= max_halfwidth_pct]
    if not stable:
        return None
    ordered = sorted(stable, key=lambda e: e.median_ms)
    chosen = ordered[(len(ordered) - 1) // 2]
    calls = [e.call_ms for e in ordered if e.call_ms]
    return replace(
        chosen,
        processes=len(ordered),
        process_sd=spread.process_sd([e.median_ms for e in ordered]),
        call_process_sd=spread.process_sd(calls) if len(calls) == len(ordered) else None,
    )


@dataclass(frozen=True)
class Measurement:
    """What this process measured of one case, for an update: the would-be entry, its
    verdict against the stored one, and the widest interval that may be stored."""

    entry: BaselineEntry
    verdict: Verdict
    stored: BaselineEntry | None
    max_halfwidth_pct: float


def merge_processes(
    measured: Mapping[str, Measurement], priors: Mapping[str, list[BaselineEntry]]
) -> tuple[dict[str, Measured], dict[str, str]]:
    """Per case, the entry an update stores from this process and earlier ones (their
    --conv3d-json reports), with a note for each case that several processes measured."""
    out: dict[str, Measured] = {}
    notes: dict[str, str] = {}
    for name, m in measured.items():
        candidates = [m.entry, *priors.get(name, [])]
        chosen = median_process(candidates, m.max_halfwidth_pct)
        if chosen is None:
            out[name] = Measured(m.entry, Verdict.UNSTABLE, None)
            continue
        change = None
        if m.stored is not None:
            change = 100 * (chosen.median_ms / m.stored.median_ms - 1)
        verdict = Verdict.NEW if m.verdict is Verdict.UNSTABLE else m.verdict
        out[name] = Measured(chosen, verdict, change)
        if name in priors:
            notes[name] = (
                f"stored the median of {len(candidates)} processes: "
                f"{chosen.median_ms:.4f} ms ±{halfwidth_pct(chosen):.2f}%"
            )
    return out, notes


def prior_entries(paths: list[Path]) -> dict[str, list[BaselineEntry]]:
    priors: dict[str, list[BaselineEntry]] = {}
    for path in paths:
        for name, entry in entries_in_report(path).items():
            priors.setdefault(name, []).append(entry)
    return priors


def changed_entries(
    base: Mapping[str, BaselineEntry], head: Mapping[str, BaselineEntry]
) -> list[str]:
    """What a change to a baseline file does, entry by entry, in plain words."""
    out = []
    for name in sorted(set(base) | set(head)):
        old, new = base.get(name), head.get(name)
        if old is None and new is not None:
            out.append(f"{name}: added ({new.median_ms:.4f} ms)")
        elif new is None and old is not None:
            out.append(f"{name}: removed (was {old.median_ms:.4f} ms)")
        elif old is not None and new is not None and old != new:
            move = 100 * (new.median_ms / old.median_ms - 1)
            out.append(
                f"{name}: {old.median_ms:.4f} -> {new.median_ms:.4f} ms ({move:+.2f}%)"
                if old.median_ms != new.median_ms
                else f"{name}: same time, other fields changed"
            )
    return out


class BaselineStore:
    """The baseline file of one GPU model."""

    def __init__(self, directory: Path, gpu_name: str) -> None:
        self.directory = directory
        self.gpu_name = gpu_name
        self.path = directory / f"{gpu_slug(gpu_name)}.json"

    def exists(self) -> bool:
        return self.path.is_file()

    def load(self) -> dict[str, BaselineEntry]:
        if not self.path.is_file():
            return {}
        return parse(self.path, read_limited(self.path))

    def lock_path(self) -> Path:
        """The lock lives in the temporary folder, keyed by the file's path, so nothing
        but baseline files is ever left in baselines/ (or proposed in a pull request)."""
        key = hashlib.sha256(str(self.path.resolve()).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"conv3d-perf-{key}.lock"

    def update(
        self,
        measured: Mapping[str, Measured],
        *,
        churn_pct: float,
        force: bool = False,
        requested: frozenset[str] = frozenset(),
        dry_run: bool = False,
    ) -> list[Action]:
        """Merge under the lock (another process may have written since we read) and
        replace the file atomically, so a reader sees the old file or the new one."""
        # Imported here: reading and checking baselines needs the standard library only
        # (the update workflow checks a new file on GitHub's runner with nothing installed).
        from filelock import FileLock, Timeout

        lock = FileLock(str(self.lock_path()), timeout=120)
        try:
            with lock:
                existing = self.load()
                actions = plan_update(
                    existing, measured, churn_pct=churn_pct, force=force, requested=requested
                )
                if not dry_run and any(a.writes for a in actions):
                    self.directory.mkdir(parents=True, exist_ok=True)
                    _atomic_write(
                        self.path, render(self.gpu_name, apply(existing, measured, actions))
                    )
        except Timeout:
            raise BaselineError(
                f"{self.path}: another process holds {lock.lock_file} for over 120 s"
            ) from None
        except OSError as exc:
            raise BaselineError(
                f"{self.path}: cannot write it ({exc.strerror}); nothing was changed"
            ) from None
        return actions


def _atomic_write(path: Path, text: str) -> None:
    """Temporary file and rename, keeping the file's mode (mkstemp makes 0600). Copies a
    killed writer left behind are removed first (the caller holds the lock)."""
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        stale.unlink(missing_ok=True)
    if path.exists():
        mode = stat.S_IMODE(path.stat().st_mode)
    else:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
