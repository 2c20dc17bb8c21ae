"""Fixtures for the e2e tests: one network namespace and one Sender per test module."""

from __future__ import annotations

import os
import pathlib
import shutil
import tempfile

import pytest

from tests.e2e.harness import make_netns, remove_netns


@pytest.fixture(scope="module")
def netns():
    name = make_netns(f"mtasts-e2e-{os.getpid()}")
    yield name
    remove_netns(name)


@pytest.fixture(scope="module")
def sender_dir():
    # Postfix's daemons run as "postfix": pytest's 0700 temp directories are out of their reach.
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="mtasts-e2e-", dir="/tmp"))
    os.chmod(tmp, 0o755)
    yield tmp
    if not os.environ.get("MTASTS_E2E_KEEP"):
        shutil.rmtree(tmp, ignore_errors=True)
