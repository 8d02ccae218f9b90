"""The zoo's own errors. The CLI prints each as one line: usage errors exit 2, failures exit 1.

Messages name settings as Python parameters in backticks (`` `epochs` must be at least 1``), the
way the Python API spells them; the CLI shows its own option names instead (``--epochs``).
"""


class ZooError(Exception):
    """Something failed (exit code 1): a broken file, a failed export, a numerical blow-up."""


class ZooUsageError(ZooError):
    """The user asked for something that cannot be (exit code 2): a bad option, a missing split."""


class DatasetNotHereError(ZooError):
    """A dataset is not on this machine and cannot be made here: TFDS has not prepared it and
    cannot download it, or its folder is gone (:class:`FolderNotHereError`)."""


class FolderNotHereError(DatasetNotHereError, ZooUsageError):
    """A dataset folder that does not exist: the path given is wrong (exit code 2)."""


class RunLockedError(ZooUsageError):
    """Another process is writing the run directory (it holds the run's lock)."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none)."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
