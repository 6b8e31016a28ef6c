"""Permission failures that a test can really cause, root or not.

Tests may run as root, where chmod stops neither reads nor writes. ``as_unprivileged()`` runs its
block with the effective user ``nobody`` when the process is root (a real permission check, made
by the kernel), and as the process's own user otherwise; ``shared_dir()`` makes a folder that user
can enter (pytest's tmp_path is root's alone)."""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def as_unprivileged():
    """The block runs as a user file permissions apply to. As root, the effective user and group
    become ``nobody`` for the block; where that switch is refused the test is skipped (the only
    case that is: chmod cannot stop root, so a permission test would prove nothing)."""
    if os.geteuid() != 0:
        yield
        return
    nobody = pwd.getpwnam("nobody")
    try:
        os.setegid(nobody.pw_gid)
        os.seteuid(nobody.pw_uid)
    except PermissionError:
        os.setegid(0)
        pytest.skip("running as root without the right to switch to an unprivileged user, "
                    "so chmod cannot make a file unreadable or read-only for this test")
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


def give_to_unprivileged(path: Path) -> None:
    """As root, hand ``path`` to ``nobody`` (so only its mode bits decide what nobody may do)."""
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        os.chown(path, nobody.pw_uid, nobody.pw_gid)


def can(path: Path, mode: int) -> bool:
    """Whether the effective user may ``mode`` (os.R_OK, os.W_OK) ``path``."""
    return os.access(path, mode, effective_ids=os.access in os.supports_effective_ids)


@contextmanager
def shared_dir():
    """A fresh folder anyone may enter and write, removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="vlmzoo-test-"))
    folder.chmod(0o777)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
