"""Fixtures the service tests share: a clock the test moves, and a fake sandbox provider."""

from __future__ import annotations

import pytest

from tests.support.fakes import FakeProvider, MovableClock


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock()


@pytest.fixture
def provider() -> FakeProvider:
    return FakeProvider()
