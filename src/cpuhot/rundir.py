"""cpuhot's per-user runtime directory (``$XDG_RUNTIME_DIR/cpuhot`` or ``/tmp/cpuhot-UID``).

``/tmp`` is shared: a directory of that name made by someone else (or a symbolic link to one)
must not receive our sockets.  It is used only if it is a real directory this user owns; then
it is made 0700.
"""

from __future__ import annotations

import os
import stat


class RuntimeDirError(OSError):
    """The runtime directory exists but is not safe to use (the message says why)."""


def runtime_dir() -> str:
    base = os.environ.get("XDG_RUNTIME_DIR")
    directory = os.path.join(base, "cpuhot") if base else f"/tmp/cpuhot-{os.getuid()}"
    try:
        os.mkdir(directory, 0o700)
        os.chmod(directory, 0o700)  # whatever the umask
    except FileExistsError:
        pass
    st = os.lstat(directory)
    if not stat.S_ISDIR(st.st_mode):
        raise RuntimeDirError(f"{directory} exists and is not a directory; remove it or give a socket "
                              "path (-qmp unix:PATH,server=on,wait=off)")
    if st.st_uid != os.getuid():
        raise RuntimeDirError(f"{directory} belongs to another user (uid {st.st_uid}); refusing to put "
                              "sockets there: remove it, set XDG_RUNTIME_DIR, or give a socket path "
                              "(-qmp unix:PATH,server=on,wait=off)")
    os.chmod(directory, 0o700)
    return directory
