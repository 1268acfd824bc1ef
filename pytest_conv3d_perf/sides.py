"""The kernel as another revision has it, loaded beside today's in this process with its
whole import closure, so the two are timed interleaved (an A/B).

A revision's tree is read from git, blob by blob, into a temporary folder; the working
tree is never touched. The module that defines the timed function is imported from there
with every module of the repository hidden, so what it imports of the repository (its
package ``__init__``, helpers, configuration modules) comes from that tree too, and the
data files it reads beside its own files are that tree's. Its import runs in the
environment the run started with, and the variables it sets are its own: a side whose
environment differs from today's gets it back around each of its calls. Only the plugin
itself is shared: it is the harness that judges both sides.

Judged by a hash of one file, a slowdown placed in a module the kernel imports passed as
"the machine's" (issue 25); loaded alone, an old file imported today's helpers and timed
today's code twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from pytest_conv3d_perf.bindings import Watch

# The harness: never loaded twice, whichever tree it sits in.
HARNESS = "pytest_conv3d_perf"
_SHA = re.compile(r"[0-9a-f]{40}")


class RevisionError(ValueError):
    """A revision that cannot be had; the message says which and why."""


def git_env() -> dict[str, str]:
    """The environment git runs in here: without the GIT_* variables a process could have
    set (another object store, index or repository) and without replace refs, which make
    git hand out another object under a blob's name: a pull request's code, run before the
    base is read, could otherwise give the base's tree its own files (the red team)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env["GIT_NO_REPLACE_OBJECTS"] = "1"
    return env


def git(
    root: Path,
    *args: str,
    text: bool = True,
    input: bytes | None = None,
    timeout: float = 120,
    index: str | None = None,
) -> subprocess.CompletedProcess:
    """``git ARGS`` in ``root`` (in ``git_env``), its output captured; ``index``: an index
    file of the caller's instead of the repository's."""
    env = git_env()
    if index is not None:
        env["GIT_INDEX_FILE"] = index
    return subprocess.run(
        ["git", *args],
        cwd=root,
        capture_output=True,
        text=text,
        input=input,
        timeout=timeout,
        env=env,
    )


def blob_id(data: bytes) -> str:
    """The id git gives a blob of ``data``."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def resolve(root: Path, revision: str) -> str:
    """The commit ``revision`` names in the repository at ``root`` (a full sha). A string
    git would read as an option is refused, never passed on."""
    if not revision or revision.startswith("-") or "\n" in revision:
        raise RevisionError(f"{revision!r} is not a git revision")
    try:
        done = git(
            root, "rev-parse", "--verify", "--quiet", "--end-of-options", revision + "^{commit}"
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise RevisionError(f"git could not be run in {root}: {exc}") from None
    sha = done.stdout.strip()
    if done.returncode != 0 or not _SHA.fullmatch(sha):
        raise RevisionError(
            f"{revision!r} names no commit in {root} (a shallow clone, or a commit that no "
            "longer exists?)"
        )
    return sha


def entries(root: Path, sha: str, paths: tuple[str, ...] = ()) -> list[tuple[str, str, str, str]]:
    """The entries of commit ``sha``'s tree (under ``paths``, or all): (path, mode, kind,
    object id) each, links (mode 120000) and submodules (160000) among them."""
    listing = git(root, "ls-tree", "-r", "-z", "--full-tree", sha, "--", *paths, text=False)
    if listing.returncode != 0:
        raise RevisionError(f"git ls-tree {sha[:10]} failed: {listing.stderr.decode()[-300:]}")
    out = []
    for record in listing.stdout.split(b"\0"):
        if not record:
            continue
        meta, _, name = record.partition(b"\t")
        mode, kind, blob = meta.decode().split()
        out.append((name.decode("utf-8", "surrogateescape"), mode, kind, blob))
    return out


def regular(mode: str, kind: str, path: str) -> bool:
    """Whether a tree entry is a plain file the gate writes (not a link, a submodule or a
    path that climbs out of the tree)."""
    return kind == "blob" and mode in ("100644", "100755") and ".." not in path.split("/")


def blobs(root: Path, sha: str, paths: tuple[str, ...] = ()) -> dict[str, tuple[str, bytes]]:
    """The files of commit ``sha`` (under ``paths``, or all): path -> (mode, content), each
    content checked against its blob id. Symbolic links and submodules are left out."""
    files = [
        (path, mode, blob)
        for path, mode, kind, blob in entries(root, sha, paths)
        if regular(mode, kind, path)
    ]
    batch = git(
        root,
        "cat-file",
        "--batch",
        text=False,
        input="".join(f"{blob}\n" for _, _, blob in files).encode(),
        timeout=300,
    )
    if batch.returncode != 0:
        raise RevisionError(f"git cat-file failed: {batch.stderr.decode()[-300:]}")
    data, at = batch.stdout, 0
    out = {}
    for path, mode, blob in files:
        header_end = data.index(b"\n", at)
        got, kind, size = data[at:header_end].decode().split()
        if got != blob or kind != "blob":
            raise RevisionError(f"git cat-file gave {got} {kind} for {path}")
        body = data[header_end + 1 : header_end + 1 + int(size)]
        if blob_id(body) != blob:
            raise RevisionError(f"git gave {path} other content than its blob {blob[:10]}")
        at = header_end + 1 + int(size) + 1
        out[path] = (mode, body)
    return out


def extract(root: Path, sha: str, into: Path, paths: tuple[str, ...] = ()) -> dict[str, str]:
    """Write the files of commit ``sha`` (under ``paths``, or all) into ``into`` exactly as
    the commit holds them; return path -> blob id of what was written. Not ``git
    archive``: it obeys ``.gitattributes`` (export-ignore leaves a file out, export-subst
    rewrites one) and ``.git/info/attributes``, which a pull request's own code can write,
    so the tree written would not be the commit's. Symbolic links and submodules are not
    written: nothing outside the tree is reachable."""
    written = {}
    for path, (mode, body) in blobs(root, sha, paths).items():
        target = into / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(body)
        if mode == "100755":
            target.chmod(0o755)
        written[path] = blob_id(body)
    return written


def materialize(
    root: Path, sha: str, into: Path
) -> tuple[Path, dict[str, str], dict[str, tuple[int, int]]]:
    """The tree of commit ``sha``, written under ``into`` (the work tree is untouched),
    path -> blob id of every file written, and path -> its ``stamp``."""
    folder = into / sha[:12]
    staging = Path(tempfile.mkdtemp(prefix="staging-", dir=into))
    written = extract(root, sha, staging)
    staging.rename(folder)
    return folder, written, {rel: stamp(folder / rel) for rel in written}


def stamp(path: Path) -> tuple[int, int]:
    """A file's inode and status-change time. Any write moves the time and no code can set
    it back, so a file rewritten between two reads of its content and put back for them
    shows (the fourth red team: an audit hook served the base's kernel one content and the
    tree check git's)."""
    st = os.lstat(path)
    return st.st_ino, st.st_ctime_ns


def tree_changes(
    folder: Path,
    written: Mapping[str, str],
    stamps: Mapping[str, tuple[int, int]] | None = None,
) -> list[str]:
    """What differs in ``folder`` from the files ``written`` there: a file changed, gone or
    added (a link or a ``__pycache__`` among them: nothing here writes bytecode, and
    Python would run a planted one in place of the source). The head's code ran in this
    process and could reach the base's tree on disk: it rewrote the base's module before
    the base was imported, a data file the base read at each call, and deleted the base's
    kernel file, so that the case was new (the third red team)."""
    found: dict[str, Path] = {}
    for dirpath, dirs, files in os.walk(folder):
        for name in [*files, *(d for d in dirs if os.path.islink(os.path.join(dirpath, d)))]:
            path = Path(dirpath) / name
            found[path.relative_to(folder).as_posix()] = path
    out = []
    for rel, blob in sorted(written.items()):
        path = found.get(rel)
        if path is None:
            out.append(f"{rel} deleted")
        elif path.is_symlink() or blob_id(path.read_bytes()) != blob:
            out.append(f"{rel} changed")
        elif stamps is not None and rel in stamps and stamp(path) != stamps[rel]:
            out.append(f"{rel} written again (its content put back)")
    out += [f"{rel} added" for rel in sorted(set(found) - set(written))]
    return out


def top_level_names(tree: Path) -> frozenset[str]:
    """The importable names a tree provides at its top: packages and modules."""
    names = set()
    for path in tree.iterdir():
        if path.suffix == ".py" and path.stem.isidentifier():
            names.add(path.stem)
        elif path.is_dir() and path.name.isidentifier():
            names.add(path.name)
    return frozenset(names - {HARNESS})


def _repository_modules(names: frozenset[str]) -> dict[str, ModuleType]:
    """The loaded modules of the repository's top-level packages, by name alone: a module
    can say anything in its ``__file__``. A None entry (which makes an import of that name
    fail) is one too: a side's code could leave one to make the other side look absent."""
    return {
        name: module for name, module in list(sys.modules.items()) if name.split(".")[0] in names
    }


def tracked_names(root: Path) -> frozenset[str]:
    """The top-level importable names the commit checked out at ``root`` tracks (not a
    virtual environment or build folder that lies in the work tree)."""
    try:
        done = git(root, "ls-tree", "--name-only", "HEAD")
    except (OSError, subprocess.SubprocessError):
        return frozenset()
    if done.returncode != 0:
        return frozenset()
    names = {n[:-3] if n.endswith(".py") else n for n in done.stdout.split()}
    return frozenset(n for n in names if n.isidentifier()) - {HARNESS}


def _outside(module: ModuleType, tree: Path) -> bool:
    where = getattr(module, "__file__", None)
    if not where:
        return False
    return not os.path.realpath(where).startswith(os.path.realpath(tree) + os.sep)


@dataclass
class Side:
    """One tree's code as this process loaded it: its modules of the repository and the
    environment its import left."""

    label: str
    tree: Path
    modules: dict[str, ModuleType]
    env: dict[str, str]
    # Its next call imports through the run's machinery (``pair``): a call of it imported
    # a module of the repository as it ran, through whatever machinery was there.
    lazy: bool = False
    # The import machinery its imports go through (``Machinery``); None: whatever is there.
    machinery: Machinery | None = None
    # Its modules' globals, watched for rebinding by the other side's code (``bindings``).
    watch: Watch | None = None

    def counterpart(self, module_name: str, qualname: str) -> object | None:
        """This side's ``module_name``.``qualname``, or None."""
        target: object | None = self.modules.get(module_name)
        for part in qualname.split("."):
            if target is None or part == "<locals>":
                return None
            target = getattr(target, part, None)
        return target

    @contextlib.contextmanager
    def entered(self, keys: frozenset[str], names: frozenset[str], modules: bool) -> Iterator[None]:
        """This side's environment variables (``keys``) and, with ``modules``, its modules
        and tree, for the length of one call."""
        saved_env = {k: os.environ.get(k) for k in keys}
        _set_env({k: self.env.get(k) for k in keys})
        saved_modules = _repository_modules(names) if modules else {}
        if modules:
            for name in saved_modules:
                sys.modules.pop(name, None)
            sys.modules.update(self.modules)
            sys.path.insert(0, str(self.tree))
        importing = modules and self.machinery is not None
        try:
            with _no_bytecode() if modules else contextlib.nullcontext():
                with self.machinery.installed() if importing else contextlib.nullcontext():
                    yield
        finally:
            if modules:
                sys.path.remove(str(self.tree))
                now = _repository_modules(names)
                # What it imported of its own tree as it ran (through the run's machinery
                # here) is kept for its later calls, which find it as they find the rest.
                self.modules.update(
                    (name, module)
                    for name, module in now.items()
                    if name not in self.modules
                    and module is not None
                    and not _outside(module, self.tree)
                )
                for name in now:
                    sys.modules.pop(name, None)
                sys.modules.update(saved_modules)
            _set_env(saved_env)


@dataclass(frozen=True)
class Machinery:
    """Python's import machinery (its finders and path hooks) as it was at the run's
    start, before any code of the work tree ran. A head's finder put first on
    ``sys.meta_path`` answered the base's import of a module with the head's slower source
    under a file name in the base's tree (the fourth red team); the base imports through
    this instead, with an empty finder cache."""

    meta_path: tuple[object, ...]
    path_hooks: tuple[object, ...]

    @classmethod
    def now(cls) -> Machinery:
        return cls(tuple(sys.meta_path), tuple(sys.path_hooks))

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        saved = list(sys.meta_path), list(sys.path_hooks), dict(sys.path_importer_cache)
        sys.meta_path[:], sys.path_hooks[:] = self.meta_path, self.path_hooks
        sys.path_importer_cache.clear()
        try:
            yield
        finally:
            sys.meta_path[:], sys.path_hooks[:] = saved[0], saved[1]
            sys.path_importer_cache.clear()
            sys.path_importer_cache.update(saved[2])


@contextlib.contextmanager
def _no_bytecode() -> Iterator[None]:
    """Imports that write no bytecode into the tree (``tree_changes`` counts any file it
    did not write) and read none from a prefix folder elsewhere, which code that ran
    before could have filled."""
    saved = sys.dont_write_bytecode, sys.pycache_prefix
    sys.dont_write_bytecode, sys.pycache_prefix = True, None
    try:
        yield
    finally:
        sys.dont_write_bytecode, sys.pycache_prefix = saved


def _assign(target: MutableMapping[str, Any], values: Mapping[str, Any]) -> None:
    """``target`` (os.environ, sys.modules) with ``values``: None removes the key."""
    for key, value in values.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = value


def _set_env(values: Mapping[str, str | None]) -> None:
    _assign(os.environ, values)


def load_side(
    label: str,
    tree: Path,
    module_name: str,
    names: frozenset[str],
    start_env: Mapping[str, str],
    work_tree: Path,
    machinery: Machinery | None = None,
) -> Side:
    """Import ``module_name`` from ``tree`` with every module of the repository (``names``)
    hidden, the work tree off ``sys.path`` (an import the tree cannot satisfy must fail,
    not find today's copy) and the environment as the run started (``start_env``); then
    put back what was there. Raises what the import raised, and RevisionError where a
    module of the repository came from outside ``tree``."""
    hidden = _repository_modules(names)
    for name in hidden:
        del sys.modules[name]
    saved_env = dict(os.environ)
    os.environ.clear()
    os.environ.update(start_env)
    saved_path = list(sys.path)
    here = os.path.realpath(work_tree)
    sys.path[:] = [str(tree)] + [p for p in sys.path if os.path.realpath(p or ".") != here]
    importlib.invalidate_caches()
    try:
        with _no_bytecode(), machinery.installed() if machinery else contextlib.nullcontext():
            importlib.import_module(module_name)
    finally:
        env = dict(os.environ)
        os.environ.clear()
        os.environ.update(saved_env)
        sys.path[:] = saved_path
        loaded = _repository_modules(names)
        for name in loaded:
            del sys.modules[name]
        sys.modules.update(hidden)
        importlib.invalidate_caches()
    strays = sorted(name for name, module in loaded.items() if _outside(module, tree))
    if strays:
        raise RevisionError(
            f"{label}'s {module_name} loaded {', '.join(strays[:3])} from outside its tree"
        )
    return Side(label, tree, loaded, env, False, machinery, Watch(loaded))


def today(root: Path, names: frozenset[str]) -> Side:
    """The working tree's side as this process already loaded it."""
    return Side("today", root, _repository_modules(names), dict(os.environ))


# What the test runner sets while the run goes on: pytest's name of the test running. No
# side's code set it, it differs between the sides only because the other side's snapshot
# predates the test, and swapped around every call it cost each call of either side about
# 4 us (1.2 -> 5.0 us a wrapper, on the CPU with the launch stubbed): a fifth of the
# smallest cases' call time, which diluted their call-time A/B (notes/gate-quality.md,
# eighteenth session). The other side sees it as pytest set it, as today's does.
RUNNER_VARIABLES = frozenset({"PYTEST_CURRENT_TEST"})


@dataclass(frozen=True)
class Pair:
    """Two callables that run the same call with each side's code, ready to interleave;
    ``changed()``: the variables of the environment that differ from when they were paired
    (one side's call set them, and the other side's calls saw them); ``warm()``: the other
    side's first call, which imports through the run's machinery and finds out whether it
    imports as it runs."""

    today: Callable[[], object]
    other: Callable[[], object]
    warm: Callable[[], object]
    changed: Callable[[], tuple[str, ...]] = lambda: ()


def _put(modules: Mapping[str, ModuleType | None]) -> None:
    _assign(sys.modules, modules)


def _imported_as_it_ran(side: Side, trusted: bool, every: set[str], names: frozenset[str]) -> None:
    """A call of ``side`` imported modules of the repository (the length of
    ``sys.modules`` moved, which costs a call nothing to read; the scan runs only then).
    Each goes again, so that neither side's later calls find the other's (the head's
    import at call time served the base the head's module: the sixth red team), and its
    name joins the swap. ``trusted`` (today's side, whose imports are its own): what came
    from its tree is kept for its later calls. Otherwise the side's next call imports
    again through the run's machinery (``Side.entered``), which keeps it: an import made
    through the machinery as the other side's code left it is not taken."""
    for name, module in _repository_modules(names).items():
        if module is None or module is side.modules.get(name):
            continue
        every.add(name)
        sys.modules.pop(name, None)
        if trusted and not _outside(module, side.tree):
            side.modules[name] = module
        else:
            side.lazy = True


def pair(
    today_side: Side,
    other: Side,
    names: frozenset[str],
    today_call: Callable[[], object],
    other_call: Callable[[], object],
) -> Pair:
    """Each side's call among its own modules, in its own environment where the two
    differ, and through the run's import machinery where a side imports as it runs; both
    wrapped alike (the call time must not differ by the wrapping)."""
    keys = (
        frozenset(
            k
            for k in set(today_side.env) | set(other.env)
            if today_side.env.get(k) != other.env.get(k)
        )
        - RUNNER_VARIABLES
    )
    # A variable set by a call (not by an import) is in neither side's snapshot: it would
    # reach the other side's calls unseen. Checking after the A/B costs the calls nothing.
    paired = dict(os.environ)

    def changed() -> tuple[str, ...]:
        now = dict(os.environ)
        return tuple(sorted(k for k in set(now) | set(paired) if now.get(k) != paired.get(k)))

    # Each side's modules in sys.modules around each of its calls, also where neither
    # imports as it runs: code that looks a module up by name at call time
    # (importlib.resources.files(__package__), importlib.import_module) found the head's
    # package and read the head's data file (the fifth red team). A swap of a few entries
    # (under 2 us a call here, each side alike); the full one (a scan of sys.modules,
    # about 300 us, and the import machinery) for one call of a side after it imported
    # as it ran, never for every call (the eighth review: a head's import put it in every
    # call of both sides, which drowned the call time).
    every = set(today_side.modules) | set(other.modules)

    def full(side: Side, fn: Callable[[], object]) -> object:
        # Through the run's machinery, which keeps what the call imports; the swap after.
        with side.entered(keys, names, True):
            try:
                return fn()
            finally:
                side.lazy = False
                every.update(side.modules)

    def inside(side: Side, fn: Callable[[], object]) -> Callable[[], object]:
        trusted = side is today_side

        def call() -> object:
            if side.lazy:  # once, after it imported as it ran
                return full(side, fn)
            mine = {name: side.modules.get(name) for name in every}
            saved = {name: sys.modules.get(name) for name in mine}
            _put(mine)
            count = len(sys.modules)
            try:
                if keys:
                    with side.entered(keys, names, False):
                        return fn()
                return fn()
            finally:
                if len(sys.modules) != count:
                    _imported_as_it_ran(side, trusted, every, names)
                _put(saved)

        hook = getattr(fn, "conv3d_prepare", None)
        if hook is not None:
            # The fresh inputs before each timed call (timer.py): the wrapper is what is
            # timed, so it carries what the call it wraps asks for.
            call.conv3d_prepare = hook  # type: ignore[attr-defined]
        return call

    return Pair(
        inside(today_side, today_call),
        inside(other, other_call),
        lambda: full(other, other_call),
        changed,
    )


@dataclass(frozen=True)
class Unavailable:
    """Why a revision's side cannot be had; ``missing``: that revision has no such module
    (to it, the case is new)."""

    why: str
    missing: bool = False
    # The code that ran in this process changed that revision's tree: nothing can judge.
    tampered: bool = False


class Revisions:
    """The revisions one run compares against, each read from git once and loaded once
    per module."""

    def __init__(self, root: Path, start_env: Mapping[str, str]) -> None:
        self.root = root
        self.start_env = dict(start_env)
        # os.environ as the interpreter made it, at the run's start (before any code of
        # the work tree runs): every snapshot and restore of the environment goes through
        # it, and a head that gave it a class of its own, whose iteration left out a
        # variable, kept that variable out of every snapshot (the fourth red team).
        self._environ = (type(os.environ), type(os.environ._data), dict(vars(os._Environ)))
        self.machinery = Machinery.now()
        self._folder: Path | None = None
        # sha -> the tree written for it, and path -> blob id and path -> stamp of each
        # file written there.
        self._trees: dict[str, tuple[Path, dict[str, str], dict[str, tuple[int, int]]]] = {}
        self._sides: dict[tuple[str, str], Side | Unavailable] = {}

    def close(self) -> None:
        """Remove the trees read from git (the modules loaded from them stay usable)."""
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None
            self._trees.clear()

    def names(self, tree: Path) -> frozenset[str]:
        return top_level_names(tree) | tracked_names(self.root)

    def side(self, revision: str, module_name: str) -> Side | Unavailable:
        """The side, or why there is none (one line)."""
        key = (revision, module_name)
        if key not in self._sides:
            self._sides[key] = self._load(revision, module_name)
        return self._sides[key]

    def tree(self, revision: str) -> tuple[str, Path, str]:
        """The commit ``revision`` names, its tree written out (once) and the rootdir's
        place in it. Called at the run's start for ``--conv3d-against``, before any code of
        the work tree runs, and again (from the written tree) when a side is loaded."""
        sha = resolve(self.root, revision)
        if self._folder is None:
            self._folder = Path(tempfile.mkdtemp(prefix="conv3d-revisions-"))
        # The rootdir may sit below the repository's top: the same place in that tree.
        prefix = git(self.root, "rev-parse", "--show-prefix").stdout.strip()
        if sha not in self._trees:
            self._trees[sha] = materialize(self.root, sha, self._folder)
        return sha, self._trees[sha][0] / prefix, prefix

    def tree_changes(self, tree: Path) -> list[str]:
        """What the code that ran since changed in the tree (``tree_changes``) that holds
        ``tree``, a side's."""
        for folder, written, stamps in self._trees.values():
            if tree == folder or folder in tree.parents:
                return tree_changes(folder, written, stamps)
        return []

    def environ_changes(self) -> list[str]:
        """How ``os.environ`` differs from the interpreter's own mapping of the run's start:
        its class, the store it wraps, or a method of its class replaced."""
        kind, store, methods = self._environ
        out = []
        if type(os.environ) is not kind or type(getattr(os.environ, "_data", None)) is not store:
            out.append(f"os.environ replaced by a {type(os.environ).__name__}")
        now = vars(os._Environ)
        patched = sorted(k for k in set(now) | set(methods) if now.get(k) is not methods.get(k))
        out += [f"os._Environ.{k} replaced" for k in patched[:3]]
        return out

    def _load(self, revision: str, module_name: str) -> Side | Unavailable:
        try:
            sha, tree, prefix = self.tree(revision)
        except (RevisionError, OSError, subprocess.SubprocessError) as exc:
            return Unavailable(str(exc))
        environ = self.environ_changes()
        if environ:
            return Unavailable(
                f"the process's environment mapping was changed before {sha[:10]}'s import "
                f"({', '.join(environ)}): its variables cannot be set or read for a side",
                tampered=True,
            )
        changed = self.tree_changes(tree)
        if changed:
            return Unavailable(
                f"{sha[:10]}'s tree, written from git at the run's start, was changed on disk "
                f"before its import ({', '.join(changed[:3])}): by code that ran since, the "
                "code under test's",
                tampered=True,
            )
        if not tree.is_dir():
            return Unavailable(f"{revision} ({sha[:10]}) has no {prefix}", missing=True)
        try:
            return load_side(
                sha[:10],
                tree,
                module_name,
                self.names(tree),
                self.start_env,
                self.root,
                self.machinery,
            )
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name) and not _holds(tree, module_name):
                return Unavailable(f"{sha[:10]} has no {module_name}", missing=True)
            return Unavailable(f"{module_name} at {sha[:10]} does not load ({exc})")
        except Exception as exc:  # the other side's code may not import today: say so
            return Unavailable(
                f"{module_name} at {sha[:10]} does not load ({type(exc).__name__}: "
                f"{str(exc)[:160]})"
            )


def _holds(tree: Path, module_name: str) -> bool:
    """Whether ``tree`` has a file for ``module_name``: only then can its import failing
    with "no such module" be taken for a case the tree does not have."""
    path = tree.joinpath(*module_name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def repository_path(fn: object, root: Path) -> str:
    """``fn``'s source file relative to the git work tree holding ``root``, or '' (kept in
    a baseline entry as a record of what was timed)."""
    from pytest_conv3d_perf.target import source_file

    path = source_file(fn)
    try:
        done = git(root, "rev-parse", "--show-toplevel") if path is not None else None
    except (OSError, subprocess.SubprocessError):
        return ""
    if path is None or done is None or done.returncode != 0:
        return ""
    try:
        return path.resolve().relative_to(Path(done.stdout.strip()).resolve()).as_posix()
    except ValueError:
        return ""
