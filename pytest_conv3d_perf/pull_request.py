"""The pull-request gate's tree: the base commit's harness with the head's code under test.

A pull request must not supply the rules it is judged by (DESIGN.md, "The verdict belongs
to the base"): each of an ini threshold, a marker, a case file, ``addopts``, a conftest
hook and a renamed test once turned a 5% regression into a pass. So the GPU job checks out
the base commit, puts the head's kernel package (the top-level package of the configured
``conv3d_kernel`` and ``conv3d_model``, as the base configures them) in place of the
base's, and runs the base's tests with ``--conv3d-against BASE``. Everything else the pull
request changes is listed for the reviewer and takes effect after merge.
"""

from __future__ import annotations

import shlex
import shutil
import tempfile
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# pytest's own ini reader (pytest depends on it): the configuration is read as pytest reads it.
import iniconfig

from pytest_conv3d_perf.sides import HARNESS, blobs, entries, extract, git, regular, resolve

# Where pytest reads its configuration, in its order of precedence.
CONFIG_FILES = ("pytest.toml", ".pytest.toml", "pytest.ini", ".pytest.ini", "pyproject.toml")
CONFIG_FILES += ("tox.ini", "setup.cfg")


Reader = Callable[[str], "str | None"]  # a file's text in one tree, or None


class PullRequestError(RuntimeError):
    """The tree cannot be composed; the message says why in one line."""


def _ini_of(name: str, text: str) -> dict[str, str] | None:
    """The pytest ini values one configuration file holds, or None where it holds none
    (pytest then looks at the next file). Read as pytest reads it (iniconfig, tomllib):
    configparser refused a key given twice in two cases, which iniconfig takes as two
    keys, and the file pytest would use was passed over for the next (the fifth red
    team). A file pytest cannot read stops pytest, so it stops this too."""
    if name.endswith(".toml"):
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise PullRequestError(f"{name} is not valid TOML ({exc})") from None
        if name == "pyproject.toml":
            table = data.get("tool", {}).get("pytest")
            if table is None:
                return None
            table = table.get("ini_options", table)
        else:
            table = data.get("pytest", {})
        # A list (addopts, testpaths) as the words it holds, quoted as the shell would:
        # str() of a list split into words no option matched (the sixth red team).
        return {
            k: shlex.join(map(str, v)) if isinstance(v, list) else str(v) for k, v in table.items()
        }
    try:
        parsed = iniconfig.IniConfig(name, data=text)
    except iniconfig.ParseError as exc:
        raise PullRequestError(f"{name} does not parse as pytest reads it ({exc})") from None
    section = {"setup.cfg": "tool:pytest"}.get(name, "pytest")
    if section not in parsed:
        return {} if name in ("pytest.ini", ".pytest.ini") else None
    return dict(parsed[section].items())


def pytest_ini(read: Reader) -> tuple[str, dict[str, str]]:
    """The configuration file pytest would use and its ini values; ``read(name)`` returns
    a file's text or None."""
    for name in CONFIG_FILES:
        text = read(name)
        if text is None:
            continue
        values = _ini_of(name, text)
        if values is not None:
            return name, values
    return "", {}


def _cases_table(text: str | None) -> object:
    if text is None:
        return None
    try:
        return tomllib.loads(text).get("tool", {}).get("conv3d-perf")
    except tomllib.TOMLDecodeError:
        return "(not valid TOML)"


def kernel_paths(values: dict[str, str], exists: Callable[[str], bool]) -> list[str]:
    """The repository paths that hold the configured kernel and model: the top-level
    package (or module) of each ``module:attribute``. ``exists(path)``: whether the tree
    has it."""
    paths = []
    for key in ("conv3d_kernel", "conv3d_model"):
        spec = values.get(key, "").strip()
        if not spec:
            continue
        top = spec.partition(":")[0].split(".")[0]
        if top == HARNESS:
            raise PullRequestError(f"{key} = {spec}: the plugin cannot be the code under test")
        path = top if exists(top) else f"{top}.py"
        if path not in paths:
            paths.append(path)
    if not paths:
        raise PullRequestError(
            "the base configures no conv3d_kernel or conv3d_model: nothing to take from the head"
        )
    return paths


KERNEL_KEYS = ("conv3d_kernel", "conv3d_model")


def _option_values(addopts: str) -> dict[str, str]:
    """The kernel and model that ``addopts`` sets (``--conv3d-kernel X``, ``-o
    conv3d_kernel=X`` and their one-word forms), which take precedence over the ini
    values: a head that set one there moved the kernel past the comparison of the ini
    values (the fifth red team). pytest splits addopts as the shell does."""
    try:
        tokens = shlex.split(addopts)
    except ValueError as exc:
        raise PullRequestError(f"addopts does not split as pytest splits it ({exc})") from None
    flags = {"--" + key.replace("_", "-"): key for key in KERNEL_KEYS}
    out = {}
    for i, token in enumerate(tokens):
        after = tokens[i + 1] if i + 1 < len(tokens) else ""
        option, eq, value = token.partition("=")
        if option in flags:
            out[flags[option]] = value if eq else after
            continue
        if token in ("-o", "--override-ini"):
            setting = after
        elif option == "--override-ini" and eq:
            setting = value
        elif token.startswith("-o") and not token.startswith("--"):
            setting = token[2:]
        else:
            continue
        key, _, value = setting.partition("=")
        if key.strip() in KERNEL_KEYS:
            out[key.strip()] = value
    return out


def kernel_settings(values: dict[str, str]) -> dict[str, str]:
    """``conv3d_kernel`` and ``conv3d_model`` as a run with this configuration takes
    them: the ini values, or what ``addopts`` sets."""
    out = {key: values.get(key, "") for key in KERNEL_KEYS}
    out.update(_option_values(values.get("addopts", "")))
    return {key: value.strip() for key, value in out.items() if value.strip()}


# Words of an addopts that can name the kernel or the model.
_KERNEL_WORDS = ("conv3d_kernel", "conv3d_model", "conv3d-kernel", "conv3d-model")


def _addopts_words(values: dict[str, str]) -> list[str]:
    try:
        return shlex.split(values.get("addopts", ""))
    except ValueError as exc:
        raise PullRequestError(f"addopts does not split as pytest splits it ({exc})") from None


def configured_kernel_moved(base: dict[str, str], head: dict[str, str]) -> str:
    """'conv3d_kernel: a -> b' where the head configures another kernel or model, else ''.
    An addopts that changes where either side's names the kernel or the model counts
    whatever it sets: pytest's options have spellings no list here would keep up with
    (``-vo conv3d_kernel=X``, ``-o=...``: the sixth red team), and such a change has to
    land on its own first anyway."""
    moved = [
        f"{key}: {base.get(key, '(unset)').strip()} -> {head.get(key, '(unset)').strip()}"
        for key in KERNEL_KEYS
        if base.get(key, "").strip() != head.get(key, "").strip()
    ]
    before, after = _addopts_words(base), _addopts_words(head)
    if before != after and any(w in t.lower() for t in before + after for w in _KERNEL_WORDS):
        moved.append(f"addopts: {shlex.join(before) or '(unset)'} -> {shlex.join(after)}")
    return "; ".join(moved)


@dataclass(frozen=True)
class RuleChange:
    what: str  # the kind of rule
    path: str
    detail: str


def classify(path: str, config_file: str, case_files: frozenset[str]) -> str:
    if path.startswith("baselines/"):
        return "baselines"
    if path == config_file or path in CONFIG_FILES:
        return "pytest configuration"
    if path in case_files or path == f"{HARNESS}/suite.toml":
        return "cases"
    if path.startswith(f"{HARNESS}/"):
        return "the plugin"
    name = path.rsplit("/", 1)[-1]
    if path.startswith("tests/") or name == "conftest.py" or name.startswith("test_"):
        return "tests and conftest"
    if path.startswith((".github/", ".ci/")):
        return "workflows and CI"
    if name.endswith((".py", ".json", ".toml", ".yaml", ".yml", ".cfg", ".txt", ".so")):
        # The head's kernel package runs with the base's copy of these in the gate: a
        # change here that the kernel reads is not measured (issue 25's red team).
        return "code or data outside the kernel package (not measured: the base's copy ran)"
    return "other files"


_STATUS = {"A": "added", "M": "changed", "D": "deleted", "T": "changed"}


def rule_changes(
    changed: list[tuple[str, str]],
    under_test: list[str],
    base_read: Reader,
    head_read: Reader,
) -> list[RuleChange]:
    """What a pull request changes outside the code under test: each file with its kind,
    and, for the pytest configuration, each ini value that moved."""
    config_file, base_ini = pytest_ini(base_read)
    _, head_ini = pytest_ini(head_read)
    case_files = frozenset(base_ini.get("conv3d_cases_file", "").split())
    out = []
    for status, path in changed:
        if any(path == p or path.startswith(p.rstrip("/") + "/") for p in under_test):
            continue
        what = classify(path, config_file, case_files)
        out.append(RuleChange(what, path, _STATUS.get(status[:1], status)))
        if what == "pytest configuration":
            for key in sorted(set(base_ini) | set(head_ini)):
                if base_ini.get(key) != head_ini.get(key):
                    out.append(
                        RuleChange(
                            what,
                            path,
                            f"{key}: {base_ini.get(key, '(unset)')} -> "
                            f"{head_ini.get(key, '(unset)')}",
                        )
                    )
            if path == "pyproject.toml" and _cases_table(base_read(path)) != _cases_table(
                head_read(path)
            ):
                out.append(RuleChange("cases", path, "[tool.conv3d-perf] changed"))
    return out


def markdown(changes: list[RuleChange], under_test: list[str], head: str, base: str = "") -> str:
    """``base``: where the head does not contain the base, the base it was merged into."""
    merged = f", merged into the base {plain(base[:10])} as it would land" if base else ""
    lines = [
        "### What this pull request changes among the rules\n",
        f"The gate ran the base commit's tests, plugin and settings on the head's "
        f"{', '.join(plain(p) for p in under_test)} ({plain(head[:10])}{merged}). ",
    ]
    rules = [c for c in changes if c.what != "baselines"]
    if not rules:
        lines[-1] += "The pull request changes none of the rules.\n"
        return "".join(lines)
    lines[-1] += "These changes take effect after merge, not in this run:\n\n"
    lines += [f"- {c.what}: {plain(c.path)} {plain(c.detail)}\n" for c in rules]
    return "".join(lines)


def plain(text: str) -> str:
    """Untrusted text as inline code: no links, images or mentions, and none of the
    characters that reorder or hide text (bidi controls and zero-width characters are
    format characters, which ``isprintable`` refuses, as it refuses control characters)."""
    shown = "".join(ch if ch.isprintable() else " " for ch in text.replace("`", "'"))
    return "`" + shown[:200] + "`"


def _reader(root: Path, sha: str) -> Reader:
    def read(path: str) -> str | None:
        done = git(root, "show", f"{sha}:{path}")
        return done.stdout if done.returncode == 0 else None

    return read


# Files Python loads in place of a module's source (bytecode, extension modules): in the
# head's package they would run code no reviewer's diff shows (the red team: an
# unchecked-hash .pyc beside byte-identical sources passed a hidden slowdown).
COMPILED = (".pyc", ".pyo", ".so", ".pyd")
# Files pytest reads as part of the rules wherever they lie under the rootdir: a
# conftest.py in the package set the exit status to 0 after a regression (the third red
# team), and test files or ini files there would bring tests or settings of the head's.
# Every configuration file name pytest reads (CONFIG_FILES), though it reads them at the
# rootdir only: the fourth red team's pytest.toml in the package was never read, and
# refusing it keeps the rule one list.
RULE_FILES = ("conftest.py", *CONFIG_FILES)


def refused_files(root: Path, sha: str, paths: list[str]) -> list[tuple[str, str]]:
    """The files under ``paths`` in commit ``sha`` that the head's package may not hold,
    each with why: links and submodules, compiled code, the harness's files, and anything
    not text (a zip archive named like data, put on sys.path, ran code no diff shows: the
    third red team)."""
    if not paths:
        return []
    # A link or a submodule is not written into the tree under test (nothing outside it
    # may be reached), so the head's code would run without what a checkout holds there:
    # a kernel that fell back to its fast path without its linked table passed a 5%
    # slowdown (the fifth red team).
    out = [
        (path, "a symbolic link" if mode == "120000" else "a submodule or other non-file entry")
        for path, mode, kind, _ in entries(root, sha, tuple(paths))
        if not regular(mode, kind, path)
    ]
    for path, (_, body) in sorted(blobs(root, sha, tuple(paths)).items()):
        name = path.rsplit("/", 1)[-1]
        if path.endswith(COMPILED) or ".so." in name or "__pycache__" in path.split("/"):
            out.append((path, "compiled code, which Python runs in place of the source"))
        elif name in RULE_FILES or (
            name.endswith(".py") and (name.startswith("test_") or name.endswith("_test.py"))
        ):
            out.append((path, "a file pytest reads as part of the rules"))

        elif b"\0" in body or not _is_text(body):
            out.append((path, "not text: code in it (an archive, a library) is not reviewed"))
    return out


def _is_text(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def nested_configuration(paths: list[str], read: Reader) -> list[str]:
    """The files among ``paths`` below the top that pytest would take as its configuration
    for a run in their folder (a pytest section in one of ``CONFIG_FILES``): a head's
    ``tests/pytest.ini`` naming another kernel moved the kernel for every later run of
    ``pytest tests/...`` (the sixth red team)."""
    out = []
    for path in paths:
        folder, _, name = path.rpartition("/")
        if folder and name in CONFIG_FILES:
            text = read(path)
            if text is not None and _ini_of(name, text) is not None:
                out.append(path)
    return out


# Attributes that change nothing a checkout writes: what diff, merge, archive and the
# forges read. Any other (text, eol, crlf, ident, filter, working-tree-encoding, or a
# macro that sets one) may change the bytes a checkout writes.
_INERT_ATTRIBUTES = ("diff", "merge", "export-ignore", "export-subst", "whitespace", "delta")
_INERT_ATTRIBUTES += ("linguist-",)


def checkout_attributes(root: Path, tree: str, files: list[str]) -> dict[str, dict[str, str]]:
    """Each of ``files``' attributes that may change what a checkout writes, as git itself
    reads them from ``tree``'s .gitattributes files (a temporary index, no work tree):
    matching patterns here was wrong for `**/`, `[^x]` and escapes (the seventh red
    team)."""
    with tempfile.TemporaryDirectory(prefix="conv3d-attributes-") as folder:
        index = str(Path(folder) / "index")
        done = git(root, "read-tree", tree, index=index)
        if done.returncode != 0:
            raise PullRequestError(f"git read-tree {tree[:10]} failed: {done.stderr[-200:]}")
        done = git(
            root,
            "check-attr",
            "--cached",
            "--stdin",
            "-z",
            "-a",
            # Names as git gave them (``entries`` decodes with surrogateescape).
            input="".join(f"{f}\0" for f in files).encode("utf-8", "surrogateescape"),
            text=False,
            index=index,
        )
    if done.returncode != 0:
        raise PullRequestError(f"git check-attr failed: {done.stderr.decode()[-200:]}")
    fields = done.stdout.decode("utf-8", "surrogateescape").split("\0")
    out: dict[str, dict[str, str]] = {f: {} for f in files}
    for path, name, value in zip(fields[0::3], fields[1::3], fields[2::3], strict=False):
        if path in out and not name.startswith(_INERT_ATTRIBUTES):
            out[path][name] = value
    return out


def attributes_moved(root: Path, base: str, landed: str, files: list[str]) -> list[str]:
    """The package's files whose checkout attributes differ between ``base`` and what
    the pull request lands. The gate writes the package as git holds it; a head with
    ``ident`` (or eol, a filter, an encoding) set on its tuning module ran one way in the
    gate and 5% slower in every checkout (the sixth red team)."""
    if not files:
        return []
    before = checkout_attributes(root, base, files)
    after = checkout_attributes(root, landed, files)
    return [f for f in files if before[f] != after[f]]


def merged_tree(root: Path, base_sha: str, head_sha: str) -> str:
    """What the pull request would land: ``head_sha`` where it contains the base, else the
    tree of the head merged into the base (``git merge-tree``). Judged unmerged, a head
    branched before a kernel change landed on the base (one that reads an overrides file
    where there is one) added that file alone: its own kernel never read it and the
    base's had none, so the A/B read 1.0 against 1.0, while the merge is 5% slower (the
    fifth red team)."""
    if git(root, "merge-base", "--is-ancestor", base_sha, head_sha).returncode == 0:
        return head_sha
    done = git(root, "merge-tree", "--write-tree", "--name-only", base_sha, head_sha)
    if done.returncode == 1:
        conflicts = [line for line in done.stdout.splitlines()[1:] if line][:3]
        raise PullRequestError(
            f"the head {head_sha[:10]} does not contain the base {base_sha[:10]} and does not "
            f"merge into it without conflicts ({', '.join(conflicts)}): merge the base into "
            "the pull request first"
        )
    if done.returncode != 0 or not done.stdout.split():
        raise PullRequestError(
            f"the head {head_sha[:10]} does not contain the base {base_sha[:10]}, and git "
            f"could not merge them ({done.stderr.strip()[-200:]}): merge the base into the "
            "pull request first"
        )
    return done.stdout.split()[0]


def compose(root: Path, base: str, head: str) -> tuple[list[str], list[RuleChange], str, str]:
    """Put the head's kernel package, as the pull request would land it (``merged_tree``),
    into the work tree at ``root``, which must be a clean checkout of ``base``; return
    the paths taken from it, the rules the pull request changes, the head's sha, and the
    base's where the head was merged into it ('' where it contains the base)."""
    top = git(root, "rev-parse", "--show-toplevel").stdout.strip()
    if top and Path(top).resolve() != root.resolve():
        raise PullRequestError(f"run it at the repository's top ({top}), not in {root}")
    base_sha, head_sha = resolve(root, base), resolve(root, head)
    current = git(root, "rev-parse", "HEAD").stdout.strip()
    if current != base_sha:
        raise PullRequestError(
            f"the work tree is at {current[:10]}, not the base {base_sha[:10]}: check out the "
            "base commit first (its tests, plugin and settings judge the pull request)"
        )
    if git(root, "status", "--porcelain", "--untracked-files=no").stdout.strip():
        raise PullRequestError("the work tree has changes: this command overwrites files there")
    landed = merged_tree(root, base_sha, head_sha)
    base_read, head_read = _reader(root, base_sha), _reader(root, landed)
    _, ini = pytest_ini(lambda name: (root / name).read_text() if (root / name).is_file() else None)
    under_test = kernel_paths(kernel_settings(ini), lambda p: (root / p).is_dir())
    moved = configured_kernel_moved(ini, pytest_ini(head_read)[1])
    if moved:
        # The base's configuration would time the base's choice of code while the head
        # makes another function the project's kernel: nothing here could judge it.
        raise PullRequestError(
            f"the pull request changes which kernel is under test ({moved}): the gate judges "
            "the head's kernel by the base's configuration, so that change must land on its "
            "own first, with the kernel it names unchanged"
        )
    listing = git(root, "diff", "--name-status", "--no-renames", "-z", base_sha, landed)
    fields = listing.stdout.split("\0")
    changed = [(fields[i], fields[i + 1]) for i in range(0, len(fields) - 1, 2)]
    kept = [path for status, path in changed if not status.startswith("D")]
    # The package's own files of these names are refused below, with the rule files.
    outside = [p for p in kept if not any(p == u or p.startswith(u + "/") for u in under_test)]
    nested = nested_configuration(outside, head_read)
    if nested:
        raise PullRequestError(
            f"the pull request adds or changes a pytest configuration below the top "
            f"({', '.join(plain(p) for p in nested[:3])}): pytest takes it for a run in that "
            "folder (the GPU job runs tests/test_suite.py), so it would set the rules, the "
            "kernel among them, after merge unjudged; keep pytest's settings in the top's file"
        )
    package_files = [p for p, *_ in entries(root, landed, tuple(under_test))]
    attributes = attributes_moved(root, base_sha, landed, package_files)
    if attributes:
        raise PullRequestError(
            f"the pull request changes git attributes that apply to the kernel package's "
            f"files on checkout ({', '.join(plain(p) for p in attributes[:3])}: line ends, "
            "ident, filters or encodings): the gate runs the files as git holds them, a "
            "checkout would run them converted, so it cannot judge that; review and merge "
            "such a change apart from kernel changes"
        )
    refused = refused_files(root, landed, under_test)
    if refused:
        raise PullRequestError(
            "the head's kernel package holds files the gate does not take from a pull "
            "request: "
            + "; ".join(f"{plain(p)} ({why})" for p, why in refused[:3])
            + ". Take them out of the pull request (the harness's files come from the base)"
        )
    for path in under_test:
        target = root / path
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
        # Exactly the head's files (not git archive, which obeys .gitattributes); a path
        # the head deleted stays deleted, and the tests say so when they import it.
        extract(root, landed, root, (path,))
    rules = rule_changes(changed, under_test, base_read, head_read)
    return under_test, rules, head_sha, base_sha if landed != head_sha else ""
