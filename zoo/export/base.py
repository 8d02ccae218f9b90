"""What an export base may be, checked without TensorFlow: a folder of versions of its own, never
a published version (or a folder inside one), a preset, a run directory or a folder of images. An
export writes a new version folder into its base, which would change what was published or
recorded there, or add a class (of no images) to a dataset folder."""

from __future__ import annotations

from pathlib import Path

from .. import formats
from ..data.imagefiles import hidden, image_suffixes
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
    image = _image_in(base)
    if image is not None:
        raise ZooUsageError(f"export base {base} holds images ({image.relative_to(base)}), as a dataset folder does: "
                            f"give a folder of its own")


def _image_in(base: Path) -> Path | None:
    """An image file in ``base``, in a folder of it or in a folder of one (class folders, split
    folders of class folders), version folders left out; None if there is none."""
    level = [base] if base.is_dir() else []
    for _ in range(3):
        below = []
        for folder in level:
            for entry in sorted(folder.iterdir()):
                if hidden(entry.name) or entry.name.isdigit():
                    continue
                if entry.is_dir():
                    below.append(entry)
                elif entry.suffix.lower() in image_suffixes():
                    return entry
        level = below
    return None
