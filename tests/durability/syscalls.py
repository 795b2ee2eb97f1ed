"""See the durability syscalls a piece of code makes, and simulate a power loss.

:class:`SyscallTrace` replaces ``os.fsync``, ``os.fdatasync``, ``os.rename``, ``os.replace``,
``os.unlink``, ``os.ftruncate``, ``os.write`` and ``os.pwrite`` (through pytest's
``monkeypatch``, so nothing in ``src/`` changes) with wrappers that record, in order and from
every thread, what was written, synced, renamed or removed.  A file is named by its inode
(``fstat`` of the descriptor), so a temporary file keeps its identity across the rename that
publishes it, and a synced descriptor is known to be a directory by ``S_ISDIR``.  A sync
also records the file's size at that moment, which tells whether all the data had been
written before the flush.

A sync can be *held*: :meth:`SyscallTrace.hold_syncs` makes matching flushes wait on an
event, so a test can check that nothing was acknowledged while the flush is in progress,
then let it finish.

:class:`PowerLoss` builds on the trace: it remembers the content of each file as of its last
``fsync``/``fdatasync`` and the entries of each watched directory as of its last ``fsync``.
:meth:`PowerLoss.cut` then rewrites the watched directories to that state: unsynced data is
lost, unsynced renames, creations and removals are undone.  That is the pessimistic reading
of POSIX a power cut allows (real file systems usually keep more), which is what a
durability promise has to survive.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

StrPath = str | os.PathLike[str]
Kind = Literal["write", "fsync", "fdatasync", "rename", "unlink", "ftruncate", "mark"]

#: How long a held sync or a test waiting for one may take before the test fails.
WAIT_SECONDS = 60.0

_real_fsync = os.fsync
_real_fdatasync = os.fdatasync
_real_rename = os.rename
_real_replace = os.replace
_real_unlink = os.unlink
_real_ftruncate = os.ftruncate
_real_fstat = os.fstat
_real_write = os.write
_real_pwrite = os.pwrite


@dataclass(frozen=True)
class Call:
    """One recorded call.

    ``inode``: the file synced/truncated, or the file a rename moved / an unlink removed
    (0 if it did not exist).  ``is_dir``: whether a synced descriptor is a directory.
    ``size``: the file's size when it was synced or truncated, the bytes a write wrote.
    ``src``/``dst``: the paths of a rename, ``dst`` alone for an unlink, the label of a
    :meth:`SyscallTrace.mark`.
    """

    kind: Kind
    inode: int = 0
    is_dir: bool = False
    size: int = 0
    src: str = ""
    dst: str = ""

    @property
    def is_sync(self) -> bool:
        return self.kind in ("fsync", "fdatasync")


def inode_of(path: Path | str) -> int:
    """The inode number of ``path`` (not following a final symlink)."""
    return os.lstat(path).st_ino


@dataclass
class _Hold:
    matches: Callable[[Call], bool]
    entered: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)


class SyscallTrace:
    """Records durability-relevant os calls (see the module docstring)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[Call] = []
        self._lock = threading.Lock()
        self._holds: list[_Hold] = []
        self.sync_listeners: list[Callable[[int, os.stat_result], None]] = []
        monkeypatch.setattr(os, "fsync", self._fsync)
        monkeypatch.setattr(os, "fdatasync", self._fdatasync)
        monkeypatch.setattr(os, "rename", self._rename)
        monkeypatch.setattr(os, "replace", self._replace)
        monkeypatch.setattr(os, "unlink", self._unlink)
        monkeypatch.setattr(os, "ftruncate", self._ftruncate)
        monkeypatch.setattr(os, "write", self._write)
        monkeypatch.setattr(os, "pwrite", self._pwrite)

    # -- recording --

    def _record(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)

    def mark(self, label: str) -> None:
        """Record a test's own event (e.g. "ack") in the sequence."""
        self._record(Call("mark", dst=label))

    def _sync(self, kind: Kind, real: Callable[[int], None], fd: int) -> None:
        st = _real_fstat(fd)
        call = Call(kind, st.st_ino, stat.S_ISDIR(st.st_mode), st.st_size)
        for hold in list(self._holds):
            if hold.matches(call):
                hold.entered.set()
                if not hold.release.wait(WAIT_SECONDS):
                    raise AssertionError("a held sync was never released")
        real(fd)
        # Listeners see the state the flush made durable, then the call counts as done.
        for listener in self.sync_listeners:
            listener(fd, st)
        self._record(call)

    def _fsync(self, fd: int) -> None:
        self._sync("fsync", _real_fsync, fd)

    def _fdatasync(self, fd: int) -> None:
        self._sync("fdatasync", _real_fdatasync, fd)

    def _moved(self, kind: Kind, src: StrPath, dst: StrPath, real: Callable[..., None]) -> None:
        src_path, dst_path = os.fspath(src), os.fspath(dst)
        try:
            inode = inode_of(src_path)
        except OSError:
            inode = 0
        real(src, dst)
        self._record(Call(kind, inode, src=str(src_path), dst=str(dst_path)))

    def _rename(self, src: StrPath, dst: StrPath, **kwargs: object) -> None:
        assert not kwargs, "dir_fd renames are not traced"
        self._moved("rename", src, dst, _real_rename)

    def _replace(self, src: StrPath, dst: StrPath, **kwargs: object) -> None:
        assert not kwargs, "dir_fd renames are not traced"
        self._moved("rename", src, dst, _real_replace)

    def _unlink(self, path: StrPath, *, dir_fd: int | None = None) -> None:
        name = os.fspath(path)
        try:
            inode = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_ino
        except OSError:
            inode = 0
        _real_unlink(name, dir_fd=dir_fd)
        self._record(Call("unlink", inode, dst=name))

    def _write(self, fd: int, data: bytes | bytearray | memoryview, /) -> int:
        written = _real_write(fd, data)
        self._record(Call("write", _real_fstat(fd).st_ino, size=written))
        return written

    def _pwrite(self, fd: int, data: bytes | bytearray | memoryview, offset: int, /) -> int:
        written = _real_pwrite(fd, data, offset)
        self._record(Call("write", _real_fstat(fd).st_ino, size=written))
        return written

    def _ftruncate(self, fd: int, length: int) -> None:
        _real_ftruncate(fd, length)
        self._record(Call("ftruncate", _real_fstat(fd).st_ino, size=length))

    # -- holding --

    @contextmanager
    def hold_syncs(self, matches: Callable[[Call], bool]) -> Iterator[_Hold]:
        """Make every sync for which ``matches(call)`` holds wait until the block ends (or
        ``hold.release`` is set); ``hold.entered`` is set when one is waiting."""
        hold = _Hold(matches)
        self._holds.append(hold)
        try:
            yield hold
        finally:
            hold.release.set()
            self._holds.remove(hold)

    # -- querying --

    def snapshot(self) -> list[Call]:
        with self._lock:
            return list(self.calls)

    def index(self, predicate: Callable[[Call], bool], what: str) -> int:
        """Position of the first call matching ``predicate``; fails the test if none."""
        for i, call in enumerate(self.snapshot()):
            if predicate(call):
                return i
        raise AssertionError(f"no {what} in {self.describe()}")

    def last_index(self, predicate: Callable[[Call], bool], what: str) -> int:
        calls = self.snapshot()
        for i in range(len(calls) - 1, -1, -1):
            if predicate(calls[i]):
                return i
        raise AssertionError(f"no {what} in {self.describe()}")

    def describe(self) -> str:
        return "\n".join(
            f"  {i}: {c.kind} ino={c.inode}{' dir' if c.is_dir else ''} size={c.size}"
            f" {c.src}{' -> ' if c.src else ''}{c.dst}"
            for i, c in enumerate(self.snapshot())
        )

    def file_synced(self, inode: int, size: int | None = None) -> Callable[[Call], bool]:
        """Matches a sync of the regular file ``inode`` (holding ``size`` bytes, if given)."""
        return lambda c: (
            c.is_sync and not c.is_dir and c.inode == inode and (size is None or c.size == size)
        )

    @staticmethod
    def dir_synced(directory: Path) -> Callable[[Call], bool]:
        inode = inode_of(directory)
        return lambda c: c.is_sync and c.is_dir and c.inode == inode

    @staticmethod
    def renamed_to(path: Path) -> Callable[[Call], bool]:
        target = str(path)
        return lambda c: c.kind == "rename" and c.dst == target

    def assert_published_durably(self, path: Path, size: int | None = None) -> int:
        """The file now at ``path`` was synced (with ``size`` bytes) before the rename that
        gave it that name, and its directory was synced after that rename.  Returns the
        position of the directory sync."""
        rename = self.index(self.renamed_to(path), f"rename to {path}")
        inode = self.snapshot()[rename].inode
        assert inode == inode_of(path), "the renamed file is the one now at the path"
        synced = self.index(self.file_synced(inode, size), f"sync of {path} (size {size})")
        assert synced < rename, f"{path} synced after it was published:\n{self.describe()}"
        calls = self.snapshot()
        dir_sync = next(
            (i for i in range(rename + 1, len(calls)) if self.dir_synced(path.parent)(calls[i])),
            None,
        )
        assert dir_sync is not None, (
            f"{path.parent} not synced after the rename:\n{self.describe()}"
        )
        return dir_sync


class PowerLoss:
    """Remembers what is durable in watched directories and can cut the power.

    Only regular files directly in the watched directories are modelled.  A file's durable
    content is what it held at its last ``fsync``/``fdatasync`` (nothing if never synced); a
    directory's durable entries are those it had at its last ``fsync`` (those it had when
    watching started, if never synced).
    """

    def __init__(self, trace: SyscallTrace, *directories: Path) -> None:
        self._lock = threading.Lock()
        self.content: dict[int, bytes] = {}
        self.entries: dict[int, dict[str, int]] = {}
        self.directories = {inode_of(d): d for d in directories}
        for inode, directory in self.directories.items():
            self.entries[inode] = self._listing(directory)
            for name, file_inode in self.entries[inode].items():
                self.content[file_inode] = (directory / name).read_bytes()
        trace.sync_listeners.append(self._synced)

    @staticmethod
    def _listing(directory: Path) -> dict[str, int]:
        with os.scandir(directory) as it:
            return {d.name: d.inode() for d in it if d.is_file(follow_symlinks=False)}

    def _synced(self, fd: int, st: os.stat_result) -> None:
        if stat.S_ISDIR(st.st_mode):
            directory = self.directories.get(st.st_ino)
            if directory is not None:
                listing = self._listing(directory)
                with self._lock:
                    self.entries[st.st_ino] = listing
        elif stat.S_ISREG(st.st_mode):
            # The descriptor may be write-only: read the file through another one.
            with open(f"/proc/self/fd/{fd}", "rb") as file:
                data = file.read()
            with self._lock:
                self.content[st.st_ino] = data

    def cut(self) -> None:
        """Make the watched directories hold only what was durable (call with every writer
        stopped).

        Files keep their inode numbers, as they do through a real power cut (the mbox
        rewrite journal names its mailbox by inode): each file is set aside under a name of
        its own, given back the durable names that point at its inode and its durable
        content in place; only a durable name whose inode no longer exists gets a new file.
        """
        with self._lock:
            for inode, directory in self.directories.items():
                parked: dict[int, Path] = {}
                for name, file_inode in self._listing(directory).items():
                    if file_inode in parked:  # another name of a file already set aside
                        _real_unlink(directory / name)
                    else:
                        parked[file_inode] = directory / f".power-loss-{file_inode}"
                        _real_rename(directory / name, parked[file_inode])
                restored: dict[int, Path] = {}
                for name, file_inode in self.entries[inode].items():
                    path = directory / name
                    if file_inode in restored:
                        os.link(restored[file_inode], path)
                        continue
                    if file_inode in parked:
                        _real_rename(parked.pop(file_inode), path)
                    path.write_bytes(self.content.get(file_inode, b""))  # same inode if kept
                    restored[file_inode] = path
                for path in parked.values():
                    _real_unlink(path)
