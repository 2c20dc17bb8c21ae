"""Unix sockets this process owns: bound with their mode, removed only while still ours.

* The mode is set by the umask in force during bind(2): the socket file never exists with
  another mode, and no chmod(2) follows a path that someone could have swapped for a
  symlink meanwhile (bind itself refuses an existing path, symlink or not).
* An existing file is removed only when it is a socket nobody listens on (connect(2) is
  refused); anything else, including a live daemon's socket, is left alone.
* On close, or after a failed start, only the file this process created (same device and
  inode) is unlinked.
* A daemon taking over from another (``mtasts serve --takeover``) binds beside the path,
  listens, and renames its socket over the old one: every connect(2) finds a listener, the
  old daemon keeps the connections it has, and its close leaves the new file alone.
* No socket is made in a directory every user may write: any of them could have put a
  socket of their own at the path (or swap it later) for Postfix or the CLI to talk to.
  The CLI, for its part, talks only to a peer running as root, as itself, or as the owner
  of the socket's directory (``trusted_peer``, SO_PEERCRED).
"""

from __future__ import annotations

import errno
import os
import socket
import stat
import struct
from typing import Optional, Tuple

from mtasts.errors import ConfigError


def writable_by_others(directory: str) -> bool:
    """Whether every user may create files in *directory* (o+w; /tmp's sticky bit included:
    it stops others from removing a socket, not from making one first)."""
    try:
        return bool(os.stat(directory).st_mode & stat.S_IWOTH)
    except OSError:
        return False


def refuse_shared_directory(path: str, what: str) -> None:
    directory = os.path.dirname(path) or "."
    if writable_by_others(directory):
        raise ConfigError(
            f"{what}: {path}: its directory {directory} is writable by every user, so any of them"
            " could put a socket of their own there; use a directory only mtasts (and Postfix) can"
            " write, such as /var/spool/postfix/mtasts or /run/mtasts"
        )


def peer_uid(sock: socket.socket) -> Optional[int]:
    """The uid of the process at the other end of a connected unix socket (Linux SO_PEERCRED)."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    _pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i")))
    return uid


def trusted_peer(sock: socket.socket, path: str) -> str:
    """Why the daemon at *path* is not to be trusted ("" when it is): it must run as root, as
    this user, or as the owner of the socket's directory (the daemon's own state directory)."""
    directory = os.path.dirname(path) or "."
    if writable_by_others(directory):
        return f"its directory {directory} is writable by every user"
    uid = peer_uid(sock)
    if uid is None:
        return ""
    try:
        owner = os.stat(directory).st_uid
    except OSError:
        owner = -1
    if uid in (0, os.geteuid(), owner):
        return ""
    return f"the process listening there runs as uid {uid}, not as root, this user or {directory}'s owner (uid {owner})"


def remove_stale(path: str) -> None:
    """Remove *path* if it is a socket proven dead; raise OSError if it is anything else."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise OSError(errno.EEXIST, f"{path} exists and is not a socket (not removed)")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except ConnectionRefusedError:
        _unlink_if_same(path, (st.st_dev, st.st_ino))  # stale: nobody listens
        return
    except FileNotFoundError:
        return
    except OSError as exc:
        raise OSError(
            errno.EADDRINUSE, f"cannot tell whether {path} is in use ({exc.strerror or exc}): not removed"
        ) from None
    finally:
        probe.close()
    raise OSError(errno.EADDRINUSE, f"another process is listening on {path}")


class OwnedUnixSocket:
    def __init__(self, path: str, mode: int, what: str = "unix socket") -> None:
        self.path = path
        self.mode = mode
        self.what = what  # the configuration key that names it, for the messages
        self._identity: Optional[Tuple[int, int]] = None

    def bind(self, replace: bool = False, backlog: int = 1024) -> socket.socket:
        """A listening-ready socket bound at the path with the mode; OSError if it cannot be.
        With *replace*, a live socket at the path is replaced by this one, already listening."""
        directory = os.path.dirname(self.path) or "."
        os.makedirs(directory, exist_ok=True)
        refuse_shared_directory(self.path, self.what)
        where = self.path
        if replace:
            where = os.path.join(directory, f".{os.path.basename(self.path)}.{os.getpid()}.new")
            remove_stale(where)
        else:
            remove_stale(self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o777 & ~self.mode)
        try:
            sock.bind(where)
            if replace:
                sock.listen(backlog)  # before the rename: no connect(2) may find it deaf
                os.rename(where, self.path)
        except OSError:
            sock.close()
            if replace:
                try:
                    os.unlink(where)
                except OSError:
                    pass
            raise
        finally:
            os.umask(old)
        st = os.lstat(self.path)
        self._identity = (st.st_dev, st.st_ino)
        return sock

    def remove(self) -> None:
        """Unlink the socket file if it is still the one this process created."""
        if self._identity is not None:
            _unlink_if_same(self.path, self._identity)
            self._identity = None


def _unlink_if_same(path: str, identity: Tuple[int, int]) -> None:
    try:
        st = os.lstat(path)
        if stat.S_ISSOCK(st.st_mode) and (st.st_dev, st.st_ino) == identity:
            os.unlink(path)
    except OSError:
        pass
