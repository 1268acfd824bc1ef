"""Conv3d cases: the built-in suite, users' own cases, validation and scaled-down variants."""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from pytest_conv3d_perf.verdict import parse_percent

Triple = tuple[int, int, int]


def output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """Output extent along one axis, as torch.nn.functional.conv3d computes it."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


class CaseError(ValueError):
    """A case that makes no sense; the message names the case and the field."""


@dataclass(frozen=True)
class Conv3dCase:
    name: str
    n: int
    ic: int
    oc: int
    kernel: Triple
    input: Triple
    stride: Triple = (1, 1, 1)
    padding: Triple = (0, 0, 0)
    dilation: Triple = (1, 1, 1)
    bias: bool = False
    groups: int = 1
    description: str = ""
    # Per-case gate thresholds in percent; None means "use the run's setting".
    fail_threshold: float | None = None
    warn_threshold: float | None = None
    small: Conv3dCase | None = field(default=None, compare=False, repr=False)

    @property
    def output(self) -> Triple:
        return tuple(  # type: ignore[return-value]
            output_size(*axis)
            for axis in zip(self.input, self.kernel, self.stride, self.padding, self.dilation)
        )

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.n, self.ic, *self.input)

    @property
    def weight_shape(self) -> tuple[int, ...]:
        return (self.oc, self.ic // self.groups, *self.kernel)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return (self.n, self.oc, *self.output)

    @property
    def flop(self) -> int:
        """Multiply-adds counted as two operations; bias ignored, as KernelBench counts."""
        taps = (self.ic // self.groups) * math.prod(self.kernel)
        return 2 * self.n * self.oc * math.prod(self.output) * taps

    @property
    def min_bytes(self) -> int:
        """Each input, weight and output element moved once, float32."""
        elems = math.prod(self.input_shape) + math.prod(self.weight_shape)
        elems += math.prod(self.output_shape) + (self.oc if self.bias else 0)
        return 4 * elems

    def model_args(self) -> tuple[Any, ...]:
        """Positional arguments of KernelBench's ModelNew constructor."""
        return (
            self.ic,
            self.oc,
            self.kernel,
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
            self.bias,
        )

    def scaled(self) -> Conv3dCase:
        """The variant small enough for Triton's interpreter on a CPU."""
        return self.small if self.small is not None else scaled_down(self)

    def to_dict(self) -> dict[str, Any]:
        data = {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "small"
        }
        for key in ("kernel", "input", "stride", "padding", "dilation"):
            data[key] = list(data[key])
        return {k: v for k, v in data.items() if v is not None}


_TRIPLES = ("kernel", "input", "stride", "padding", "dilation")
_POSITIVE = ("n", "ic", "oc")
_KNOWN = {f.name for f in dataclasses.fields(Conv3dCase)}


def _triple(name: str, key: str, value: Any, minimum: int) -> Triple:
    if isinstance(value, bool):
        raise CaseError(
            f"case {name!r}: field {key!r}: expected an integer or 3 integers, got {value!r}"
        )
    if isinstance(value, int):
        value = [value] * 3
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 3
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        raise CaseError(
            f"case {name!r}: field {key!r}: expected an integer or 3 integers, got {value!r}"
        )
    if any(v < minimum for v in value):
        raise CaseError(
            f"case {name!r}: field {key!r}: every value must be >= {minimum}, got {list(value)!r}"
        )
    return tuple(value)  # type: ignore[return-value]


def _threshold(name: str, key: str, value: Any) -> float | None:
    if value is None:
        return None
    try:
        return parse_percent(value, f"case {name!r}: field {key!r}")
    except ValueError as exc:
        raise CaseError(str(exc)) from None


def case_from_mapping(data: Mapping[str, Any], base: Conv3dCase | None = None) -> Conv3dCase:
    """Build and validate a case from plain data (a TOML or JSON table).

    With ``base``, missing fields are taken from it (used for ``small`` overrides).
    """
    if not isinstance(data, Mapping):
        raise CaseError(f"a case must be a table of fields, got {data!r}")
    name = data.get("name", base.name if base else None)
    if (
        not isinstance(name, str)
        or not name
        or not name.replace("_", "").replace("-", "").isalnum()
    ):
        raise CaseError(
            f"case {name!r}: field 'name': expected letters, digits, '_' or '-', got {name!r}"
        )
    unknown = set(data) - _KNOWN
    if unknown:
        raise CaseError(f"case {name!r}: unknown field {sorted(unknown)[0]!r}")
    merged: dict[str, Any] = base.to_dict() if base else {}
    merged.update(data)
    for key in ("n", "ic", "oc", "kernel", "input"):
        if key not in merged:
            raise CaseError(f"case {name!r}: field {key!r} is missing")
    for key in _POSITIVE:
        value = merged[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise CaseError(
                f"case {name!r}: field {key!r}: expected a positive integer, got {value!r}"
            )
    triples = {
        key: _triple(name, key, merged.get(key, default), minimum)
        for key, default, minimum in (
            ("kernel", None, 1),
            ("input", None, 1),
            ("stride", 1, 1),
            ("padding", 0, 0),
            ("dilation", 1, 1),
        )
    }
    bias = merged.get("bias", False)
    if not isinstance(bias, bool):
        raise CaseError(f"case {name!r}: field 'bias': expected true or false, got {bias!r}")
    groups = merged.get("groups", 1)
    if groups != 1 or isinstance(groups, bool):
        raise CaseError(
            f"case {name!r}: field 'groups': only groups=1 is supported, got {groups!r}"
        )
    description = merged.get("description", "")
    if not isinstance(description, str):
        raise CaseError(f"case {name!r}: field 'description': expected text, got {description!r}")
    for axis in range(3):
        extent = triples["dilation"][axis] * (triples["kernel"][axis] - 1) + 1
        padded = triples["input"][axis] + 2 * triples["padding"][axis]
        if extent > padded:
            raise CaseError(
                f"case {name!r}: field 'kernel': the kernel spans {extent} along axis {axis + 2} "
                f"(with dilation) but the padded input has only {padded}"
            )
    case = Conv3dCase(
        name=name,
        n=merged["n"],
        ic=merged["ic"],
        oc=merged["oc"],
        bias=bias,
        groups=1,
        description=description,
        fail_threshold=_threshold(name, "fail_threshold", merged.get("fail_threshold")),
        warn_threshold=_threshold(name, "warn_threshold", merged.get("warn_threshold")),
        **triples,
    )
    small = data.get("small")
    if small is not None:
        if base is not None:
            raise CaseError(f"case {name!r}: field 'small': a small variant cannot have its own")
        if not isinstance(small, Mapping):
            raise CaseError(f"case {name!r}: field 'small': expected a table, got {small!r}")
        case = dataclasses.replace(case, small=case_from_mapping(small, base=case))
    return case


def _shrink_axis(size: int, k: int, s: int, p: int, d: int, out_max: int) -> int:
    out = output_size(size, k, s, p, d)
    needed = (min(out, out_max) - 1) * s + d * (k - 1) + 1 - 2 * p
    return min(size, max(needed, 1))


def scaled_down(case: Conv3dCase) -> Conv3dCase:
    """Keep what makes the case an edge case (kernel, stride, padding, dilation, bias,
    OC modulo 16) and shrink batch, channels and output to what the interpreter runs in
    about a second."""
    oc = case.oc if case.oc <= 24 else 16 + case.oc % 16
    size = tuple(
        _shrink_axis(
            case.input[a], case.kernel[a], case.stride[a], case.padding[a], case.dilation[a], 5
        )
        for a in range(3)
    )
    return dataclasses.replace(
        case, n=min(case.n, 2), ic=min(case.ic, 4), oc=oc, input=size, small=None
    )


def _read_table_file(path: Path) -> Any:
    try:
        text = path.read_text()
    except OSError as exc:
        raise CaseError(f"cannot read case file {str(path)!r}: {exc.strerror}") from None
    try:
        if path.suffix == ".json":
            return json.loads(text)
        return tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise CaseError(
            f"case file {str(path)!r} is not valid {path.suffix[1:].upper()}: {exc}"
        ) from None


def cases_from_data(data: Any, source: str) -> list[Conv3dCase]:
    """Cases from ``{"cases": [...]}`` (TOML's ``[[cases]]``) or a bare JSON list."""
    if isinstance(data, Mapping):
        data = data.get("cases", [])
    if not isinstance(data, list):
        raise CaseError(f"{source}: expected a list of cases under 'cases'")
    try:
        return [case_from_mapping(item) for item in data]
    except CaseError as exc:
        raise CaseError(f"{source}: {exc}") from None


def builtin_cases() -> list[Conv3dCase]:
    text = resources.files(__package__).joinpath("suite.toml").read_text()
    return cases_from_data(tomllib.loads(text), "built-in suite")


def load_file(path: Path) -> list[Conv3dCase]:
    return cases_from_data(_read_table_file(path), str(path))


def pyproject_cases(rootdir: Path) -> list[Conv3dCase]:
    """Cases from ``[[tool.conv3d-perf.cases]]`` in the project's pyproject.toml."""
    path = rootdir / "pyproject.toml"
    if not path.is_file():
        return []
    table = _read_table_file(path).get("tool", {}).get("conv3d-perf", {})
    return cases_from_data(table, f"{path} [tool.conv3d-perf]")


def merge_suites(*suites: Iterable[Conv3dCase]) -> list[Conv3dCase]:
    seen: dict[str, Conv3dCase] = {}
    for suite in suites:
        for case in suite:
            if case.name in seen:
                raise CaseError(f"case {case.name!r} is defined twice")
            seen[case.name] = case
    return list(seen.values())


def select(cases: list[Conv3dCase], names: Iterable[str]) -> list[Conv3dCase]:
    wanted = list(names)
    if not wanted:
        return cases
    by_name = {c.name: c for c in cases}
    missing = [n for n in wanted if n not in by_name]
    if missing:
        raise CaseError(f"unknown case {missing[0]!r}; known cases: {', '.join(sorted(by_name))}")
    return [by_name[n] for n in wanted]


def load_suite(rootdir: Path, extra_files: Iterable[Path] = ()) -> list[Conv3dCase]:
    """The built-in suite, then pyproject cases, then each extra file, names unique."""
    return merge_suites(
        builtin_cases(), pyproject_cases(rootdir), *(load_file(Path(p)) for p in extra_files)
    )
