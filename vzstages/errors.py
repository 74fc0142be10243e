"""The error types a user can see. Each carries a message meant to be read as is."""

from __future__ import annotations


class VzError(Exception):
    """Base class: anything raised as a VzError is reported without a traceback."""


class ArchiveMoved(VzError):
    """A suite is no longer in the state the stage's key names: the stage is not built under that
    key (build plans again with the archive as it is now)."""


class ManifestError(VzError):
    """A manifest failed to load or validate. Holds every problem found, not just the first."""

    def __init__(self, path: str, problems: list[str]):
        self.path = path
        self.problems = problems
        super().__init__("\n".join(problems))


class GraphError(VzError):
    """The task graph cannot be ordered (a cycle, or an edge against phase order)."""


class UndeclaredRead(VzError):
    """A task read a manifest key it did not declare: its stage key could miss that input."""


class InputError(VzError):
    """A host file the manifest names cannot be used as an input (missing, special, too large)."""


class HostError(VzError):
    """The build host cannot build: not root, a missing tool, no loop or FUSE support."""


class CommandError(VzError):
    """A host command failed."""

    def __init__(self, argv: list[str], returncode: int, output: str):
        self.argv = argv
        self.returncode = returncode
        self.output = output
        tail = "\n".join(output.rstrip().splitlines()[-15:])
        super().__init__(f"command failed (exit {returncode}): {' '.join(argv)}\n{tail}")
