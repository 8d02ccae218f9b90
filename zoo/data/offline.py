"""Preparing a TFDS dataset without a network: the manual folder's files checked by name and size
before TFDS starts, a quick reachability test instead of minutes of retries, TFDS's progress and
warnings kept off a log, a line on stderr saying what is prepared from where instead of TFDS's
"Downloading ..." on stdout, and nothing left behind by a failed preparation."""

from __future__ import annotations

import io
import logging
import os
import re
import shutil
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from urllib.parse import urlparse

import tensorflow_datasets as tfds

from .. import files
from ..errors import DatasetNotHereError, ZooUsageError


def check_preparable(builder: tfds.core.DatasetBuilder, manual_dir: str | None) -> None:
    """Fail now, with what to do, if preparing ``builder`` cannot succeed."""
    name = builder.info.full_name.split("/")[0]
    files.check_creatable(Path(builder.data_dir), f"the data folder of '{name}'")
    wrong = _wrong_size_manual_files(builder, manual_dir)
    if wrong:
        raise ZooUsageError(
            f"{wrong} is not the file dataset '{name}' needs; replace it with the original download"
        )
    missing = _missing_manual_files(builder, manual_dir)
    if missing and not _can_reach(builder):
        names = ", ".join(missing)
        where = f"`manual_dir` {manual_dir} lacks {names}" if manual_dir else f"it needs {names}"
        raise DatasetNotHereError(
            f"dataset '{name}' is not prepared in {builder.data_dir} and cannot be downloaded "
            f"(no network); {where}. Pass `manual_dir` with those files (or set "
            f"ZOO_MANUAL_DIR), or `data_dir` where it is already prepared"
        )


@contextmanager
def quiet_unless_terminal() -> Iterator[None]:
    """TFDS's progress bars only where a person watches them (not in logs)."""
    if sys.stderr.isatty():
        yield
        return
    tfds.display_progress_bar(False)
    try:
        yield
    finally:
        tfds.display_progress_bar(True)


# What TFDS prints to stdout around a preparation ("Downloading and preparing dataset Unknown
# size ...", "Dataset ... downloaded and prepared to ..."): wrong for local files, and on stdout.
_TFDS_ANNOUNCEMENTS = re.compile(r"(Downloading and preparing dataset |Dataset \S+ downloaded and prepared to )")


@contextmanager
def announced(name: str, data_dir: str, manual_dir: str | None) -> Iterator[None]:
    """Say on stderr what preparing ``name`` does instead of TFDS's announcement, which is dropped
    (any other line TFDS prints to stdout is passed on)."""
    source = f" from the files in {manual_dir}" if manual_dir else ""
    print(f"preparing {name}{source} into {data_dir} ...", file=sys.stderr, flush=True)
    captured = io.StringIO()
    try:
        with redirect_stdout(captured):
            yield
    finally:
        kept = [line for line in captured.getvalue().splitlines(keepends=True)
                if not _TFDS_ANNOUNCEMENTS.match(_strip_ansi(line))]
        sys.stdout.write("".join(kept))
    print(f"prepared {name} in {data_dir}", file=sys.stderr, flush=True)


def _strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)  # termcolor's bold on a terminal


@contextmanager
def no_absl_warnings() -> Iterator[None]:
    """TFDS warns "Variant folder ... has no dataset_info.json" for every dataset not prepared
    yet: expected here, and it would bury the one line a failure prints."""
    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.ERROR)
    try:
        yield
    finally:
        absl.setLevel(level)


@contextmanager
def nothing_left_on_failure(builder: tfds.core.DatasetBuilder) -> Iterator[None]:
    """Remove the folders a failed preparation created (TFDS leaves empty ones behind)."""
    version_dir = Path(builder.data_dir)
    root = Path(builder.data_dir_root)
    made = [version_dir, *version_dir.parents]
    made = [p for p in made[: made.index(root) + 1] if not p.exists()]
    made += [p for p in (root / "downloads" / "extracted", root / "downloads") if not p.exists()]
    before = set(version_dir.parent.glob("*")) if version_dir.parent.exists() else set()
    try:
        yield
    except BaseException:
        if version_dir.parent.exists():  # TFDS's half-written "incomplete.XXXXXX_<version>"
            for path in set(version_dir.parent.glob(f"incomplete.*_{version_dir.name}")) - before:
                shutil.rmtree(path, ignore_errors=True)
        for path in sorted(made, key=lambda p: len(p.parts), reverse=True):
            if path.is_dir() and not any(path.iterdir()):
                path.rmdir()
        raise


def _wrong_size_manual_files(builder: tfds.core.DatasetBuilder, manual_dir: str | None) -> str:
    """The first file in ``manual_dir`` whose size differs from TFDS's record of it ("" if none)."""
    if not manual_dir:
        return ""
    for url, info in sorted((builder.url_infos or {}).items()):
        path = Path(manual_dir) / (info.filename or Path(urlparse(url).path).name)
        if info.size and path.is_file() and path.stat().st_size != int(info.size):
            return f"{path} ({path.stat().st_size:,} bytes, TFDS registered {int(info.size):,})"
    return ""


def _missing_manual_files(builder: tfds.core.DatasetBuilder, manual_dir: str | None) -> list[str]:
    """Files the builder downloads that are not in ``manual_dir`` (names from TFDS's checksums)."""
    url_infos = builder.url_infos or {}
    names = sorted({info.filename or Path(urlparse(url).path).name for url, info in url_infos.items()})
    if not names:
        return []  # unknown: let TFDS decide
    folder = Path(manual_dir) if manual_dir else None
    return [n for n in names if folder is None or not (folder / n).is_file()]


def _can_reach(builder: tfds.core.DatasetBuilder, timeout: float = 3.0) -> bool:
    """One quick connection to the first download host; TFDS itself would retry for minutes."""
    if os.environ.get("ZOO_OFFLINE"):
        return False
    urls = list((builder.url_infos or {}).keys())
    if not urls:
        return True
    url = urlparse(urls[0])
    try:
        with socket.create_connection(
            (url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout=timeout
        ):
            return True
    except OSError:
        return False
