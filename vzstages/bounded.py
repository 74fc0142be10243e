"""Reading a file that someone else may have put there (a cache record, a result file, a file of
the image): only a regular file, and never more than a limit. A FIFO would hang the read, a device
such as /dev/zero never end it, and a huge file would fill memory before anything is parsed.

Both refusals are OSErrors, as the file's absence is: callers treat a file they cannot use as one
that is not there, or name it in their error.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

# A result file (NAME.json, NAME.ami.json): what vzstages writes there is a few KiB.
MAX_RESULT_BYTES = 1 << 20


def read_fd(fd: int, limit: int, name: str) -> bytes:
    """The content of the open file `fd` (closed here); OSError if it is not a regular file or
    holds more than `limit` bytes."""
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", name)
        data = f.read(limit + 1)
    if len(data) > limit:
        raise OSError(errno.EFBIG, f"larger than {limit} bytes", name)
    return data


def read_regular(path: Path, limit: int) -> bytes:
    """A host file's content, bounded. Opening does not wait for a FIFO's writer (O_NONBLOCK),
    and symlinks are followed as the caller's path asks."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    return read_fd(fd, limit, str(path))
