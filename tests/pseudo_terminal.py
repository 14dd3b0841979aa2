"""A command run on a pseudo-terminal, as a user's terminal runs it: everything it wrote there, byte for byte."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import termios
from collections.abc import Mapping, Sequence


def run_on_a_terminal(command: Sequence[str], *, rows: int, columns: int, env: Mapping[str, str], cwd=None,
                      stderr_too: bool = False, timeout: float = 120) -> tuple[bytes, int, bytes]:
    """Run ``command`` with stdout (and stderr with ``stderr_too``) on a ``rows`` × ``columns`` terminal.

    Returns what the terminal got, the exit code, and stderr when it was not on the terminal.
    """
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    process = subprocess.Popen(command, stdin=slave if stderr_too else subprocess.DEVNULL, stdout=slave,
                               stderr=slave if stderr_too else subprocess.PIPE, env=dict(env), cwd=cwd)
    os.close(slave)
    shown = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the process closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    code = process.wait(timeout=timeout)
    return shown, code, b"" if stderr_too else process.stderr.read()
