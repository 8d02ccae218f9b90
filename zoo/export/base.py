"""What an export base may be, checked without TensorFlow: a folder of versions of its own, never
a published version (or a folder inside one), a preset, or a run directory. An export writes a new
version folder into its base, which would change what was published or recorded there."""

from __future__ import annotations

from pathlib import Path

from .. import formats
from ..errors import ZooUsageError

SAVED_MODEL = "saved_model.pb"  # the file that makes a folder a SavedModel


def check(base: Path) -> None:
    """A one-line usage error if ``base`` (absolute) is, or is inside, something published, or is a
    run directory."""
    for folder in (base, *base.parents):
        what = "is" if folder == base else f"is inside {folder},"
        if (folder / SAVED_MODEL).is_file():
            raise ZooUsageError(f"export base {base} {what} a published SavedModel version, never written again: "
                                f"give its export base ({folder.parent}) or a new folder")
        if (folder / formats.PRESET).is_file():
            raise ZooUsageError(f"export base {base} {what} a preset, never written: give a folder of its own")
    if (base / formats.RUN_CONFIG).is_file() and (base / "history.csv").is_file():
        raise ZooUsageError(f"export base {base} is a run directory: give a folder of its own")
