"""Fixtures shared by the e2e modules."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes import FakeUpstream


@pytest.fixture
def openai_fake() -> Iterator[FakeUpstream]:
    """The OpenAI fake on a free loopback port, for this test only."""
    fake = FakeUpstream("openai").start()
    yield fake
    fake.stop()
