"""The files the project trusts and writes: never through a link, private whatever the umask.

A store is refused, as sshd's StrictModes refuses a key file, when a user other than the one
running (or root) could have changed it: its folder and every folder above it must be owned by
that user or root and writable by nobody else. A folder like /tmp, writable by all but sticky,
passes: nobody else can move or replace what we own in it. Once the folder is ours alone,
nobody else can plant a link beside the files SQLite creates itself (-wal, -shm) either.

Root (PAM's pam_exec runs `verify` as root) also trusts the owner of the store's folder: a
service account's store stays that account's, and files root creates in it are given to it.
A symbolic link on the way to the folder is followed only if the user running or root made it:
whoever owns a link decides where it leads, so one of the folder owner's could lead root to a
store and key of that user's choosing anywhere.

Each refusal is one line naming the path, and the fix where there is one.
"""

from __future__ import annotations

import errno
import os
import pwd
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import StoreError

FOLDER_MODE = 0o700
FILE_MODE = 0o600


class UnsafePath(StoreError):
    """A path another user could have changed, or a link: refused, with the fix in the message."""


def _who(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _trusted(folder_owner: int | None = None) -> set[int]:
    me = os.geteuid()
    trusted = {me, 0}
    if me == 0 and folder_owner is not None:
        trusted.add(folder_owner)
    return trusted


def _not_trusted(path: Path, uid: int, trusted: set[int], what: str = "") -> UnsafePath:
    """The refusal of `path`, owned by `uid`, which is not one of the `trusted` users."""
    me = os.geteuid()
    others = sorted(trusted - {me, 0})
    allowed = " or ".join([_who(me), *(["root"] if me else []), *(f"{_who(u)} (the folder's owner)" for u in others)])
    return UnsafePath(
        f"{what}{path} is owned by {_who(uid)}, not by {allowed}: another user could have changed it; "
        f"if it is yours, `chown {_who(me)} {path}`"
    )


def make_private_folder(folder: Path, *, what: str = "the store") -> list[Path]:
    """Creates the missing folders of `folder` one at a time, each 0700 whatever the umask, and
    only once the folder they go in passed `check_folder` as a folder above `what`: nothing is
    made where another user could change it. Returns the folders made, outermost first; if one
    cannot be made, those made before it are removed."""
    missing = []
    for candidate in (folder, *folder.parents):
        if os.path.lexists(candidate):
            break
        missing.append(candidate)
    if not missing:
        return []
    check_folder(missing[-1].parent, what=what, above=True)
    made: list[Path] = []
    for candidate in reversed(missing):
        try:
            os.mkdir(candidate, FOLDER_MODE)
        except FileExistsError:
            continue  # made meanwhile by another process: checked below like any folder
        except OSError as exc:
            _remove_folders(made)
            raise StoreError(f"cannot create folder {candidate}: {exc.strerror}") from exc
        made.append(candidate)
    return made


@contextmanager
def new_folders(*folders: Path) -> Iterator[None]:
    """The missing folders of each of `folders` made (`make_private_folder`) for the files the
    block creates in them; if the block fails, the folders made here are removed again."""
    made: list[Path] = []
    try:
        for folder in folders:
            made += make_private_folder(folder)
        yield
    except BaseException:
        _remove_folders(made)
        raise


def _remove_folders(made: list[Path]) -> None:
    """Removes the folders `made` (outermost first), innermost first; one another process put a
    file in meanwhile stays."""
    for folder in reversed(made):
        try:
            os.rmdir(folder)
        except OSError:
            pass


def check_folder(folder: Path, *, what: str = "the store", above: bool = False) -> os.stat_result:
    """Refuses `folder` unless it and every folder above it are safe (see the module's doc);
    `what` names the file kept in it, for the refusal. With `above`, `folder` is to hold a new
    folder for `what`, and is checked as the folders above it are.

    Returns its stat; FileNotFoundError if it does not exist. A symbolic link on the way is
    followed only if the user running or root made it.
    """
    me = os.geteuid()
    # Links on the given path first: whoever owns one decides where it leads.
    for part in (folder, *folder.parents):
        try:
            lst = os.lstat(part)
        except FileNotFoundError:
            continue  # the folder itself, or one above it, is missing: said below
        except OSError as exc:
            raise StoreError(f"cannot open folder {part}: {exc.strerror}") from exc
        if stat.S_ISLNK(lst.st_mode) and lst.st_uid not in (me, 0):
            raise UnsafePath(
                f"{part} is a symbolic link owned by {_who(lst.st_uid)}: refusing to follow it; "
                f"use the real path, or remove the link"
            )
    try:
        st = os.stat(folder)
    except FileNotFoundError:
        if os.path.lexists(folder):
            raise StoreError(
                f"{folder} is a symbolic link to a folder that does not exist ({os.path.realpath(folder)}); "
                "fix the link or use the real path"
            ) from None
        raise
    except OSError as exc:
        raise StoreError(f"cannot open folder {folder}: {exc.strerror}") from exc
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafePath(f"{folder} is not a folder")
    real = Path(os.path.realpath(folder))
    holder = None if above else real  # the folder `what` is kept in, if it is this one
    # Root trusts a service account's store folder, but only where nobody else could have made
    # it (its parent is root's alone: not /tmp); every folder above it must be root's.
    parent = os.stat(real.parent)
    parent_is_roots = parent.st_uid == 0 and not parent.st_mode & 0o022
    for part in (real, *real.parents):
        pst = os.stat(part)
        trusted = _trusted(pst.st_uid if part == holder and parent_is_roots else None)
        if pst.st_uid not in trusted:
            raise _not_trusted(part, pst.st_uid, trusted, "folder ")
        others_write, sticky = pst.st_mode & 0o022, pst.st_mode & stat.S_ISVTX
        mode = f"mode {stat.S_IMODE(pst.st_mode):04o}"
        if others_write and part == holder and sticky:  # /tmp itself: shared on purpose, its mode is not ours to fix
            raise UnsafePath(
                f"folder {part} is shared with other users ({mode}): any of them could plant files beside {what}; "
                f"fix: put {what} in a folder of its own, made with `mkdir -m 700 {part / 'mfa-console'}`"
            )
        if others_write and (part == holder or not sticky):
            raise UnsafePath(
                f"folder {part} is writable by other users ({mode}): any of them could swap {what}; "
                f"fix: `chmod go-w {part}`"
            )
    return st


def check_file(path: Path, folder: os.stat_result, *, secret: bool) -> os.stat_result | None:
    """Refuses a link, a non-file, another user's file, or one others may write (or read, if
    `secret`). Returns its lstat, or None when it does not exist."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StoreError(f"cannot open {path}: {exc.strerror}") from exc
    if stat.S_ISLNK(st.st_mode):
        raise UnsafePath(f"{path} is a symbolic link: refusing to follow it; remove it, or put the real file there")
    _check_opened(path, st, folder, secret=secret)
    return st


def _check_opened(path: Path, st: os.stat_result, folder: os.stat_result, *, secret: bool) -> None:
    """`check_file`'s rules for what is not a link: a regular file, ours, private."""
    if not stat.S_ISREG(st.st_mode):
        raise UnsafePath(f"{path} is not a regular file: refusing it; put the real file there")
    trusted = _trusted(folder.st_uid)
    if st.st_uid not in trusted:
        raise _not_trusted(path, st.st_uid, trusted)
    if st.st_mode & (0o077 if secret else 0o022):
        raise UnsafePath(
            f"{path} is open to other users (mode {stat.S_IMODE(st.st_mode):04o}); fix: `chmod 600 {path}`"
        )


def create_private_file(path: Path, folder: os.stat_result) -> int:
    """A new file, 0600, never through a link and never over an existing file (FileExistsError;
    UnsafePath for a link); an fd to write.

    Made by root in a service account's folder, it is given to that account.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
    except FileExistsError:
        if os.path.islink(path):
            raise UnsafePath(
                f"{path} is a symbolic link: refusing to create a file through it; remove it"
            ) from None
        raise
    try:
        os.fchmod(fd, FILE_MODE)
        if os.geteuid() == 0 and folder.st_uid != 0:
            os.fchown(fd, folder.st_uid, folder.st_gid)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_private_file(path: Path, *, secret: bool, what: str = "the store") -> bytes:
    """A file's bytes, checked like `check_file` on the file actually opened (no link followed;
    a FIFO or device is refused, not waited on); `what` names it as `check_folder` does."""
    folder = check_folder(path.parent, what=what)
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        _check_opened(path, os.fstat(fd), folder, secret=secret)
        return _read(fd)
    finally:
        os.close(fd)


def read_given_file(path: Path, *, limit: int) -> bytes:
    """The first `limit` bytes of a file someone hands us (an import), wherever it is and whoever
    owns it. Anything but a regular file is refused before a byte is read: opened without
    blocking, so a FIFO cannot hold us, and never read, so a device cannot feed us forever."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnsafePath(f"{path} is not a regular file (a FIFO, a device or a folder): refusing to read it")
        return _read(fd, limit)
    finally:
        os.close(fd)


def _read(fd: int, limit: int = -1) -> bytes:
    """The bytes from `fd` to its end, or its first `limit` bytes."""
    with open(fd, "rb", closefd=False) as file:
        return file.read(limit)


def open_private_key(path: Path) -> int:
    """An fd of a private key file another program made (a TLS key), checked on the file opened:
    a link only if we or root made it (certbot's are root's), a regular file, ours or root's, not
    writable by anyone else and not readable by everyone (a group may read it: Debian's ssl-cert)."""
    me = os.geteuid()
    lst = os.lstat(path)
    if stat.S_ISLNK(lst.st_mode) and lst.st_uid not in (me, 0):
        raise UnsafePath(f"{path} is a symbolic link owned by {_who(lst.st_uid)}: refusing to follow it")
    real = Path(os.path.realpath(path))
    folder = check_folder(real.parent, what="the TLS key")
    fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafePath(f"{path} is not a regular file: refusing it")
        trusted = _trusted(folder.st_uid)
        if st.st_uid not in trusted:
            raise _not_trusted(path, st.st_uid, trusted)
        if st.st_mode & 0o027:
            raise UnsafePath(f"{path} is open to other users (mode {stat.S_IMODE(st.st_mode):04o}); a private key "
                             f"must not be: fix: `chmod 600 {path}` (or 640 for a group such as ssl-cert)")  # fmt: skip
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_new_file(path: Path, write: Callable[[int], None], *, force: bool = False) -> None:
    """Writes a file for people (an export), 0600; `write` gets an fd.

    Never follows a link; an existing file is replaced only with `force`, and then by rename
    (a link or a hard link at the name is replaced, never written through).
    """
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None:
        if stat.S_ISLNK(st.st_mode):
            raise UnsafePath(f"{path} is a symbolic link: refusing to write through it")
        if stat.S_ISDIR(st.st_mode):  # said at once: asking to replace it would end in this refusal
            raise UnsafePath(f"{path} is a folder: give the name of a file to write, in it or elsewhere")
        if not stat.S_ISREG(st.st_mode):
            raise UnsafePath(f"{path} is not a regular file: refusing to replace it")
        if not force:
            raise FileExistsError(errno.EEXIST, "it already exists", str(path))
    folder = path.parent
    if st is None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
        target = path
    else:
        fd, name = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
        target = Path(name)
    try:
        os.fchmod(fd, FILE_MODE)
        write(fd)
        os.fsync(fd)
        if target != path:
            os.replace(target, path)
    except BaseException:
        os.close(fd)
        os.unlink(target)
        raise
    os.close(fd)


def fsync_folder(folder: Path) -> None:
    """Makes a file just created or renamed in `folder` survive a power cut."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
