from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pipelines.lake.layout import LakeLayout
from pipelines.settings import Settings

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(autouse=True)
def _restore_environment():
    """The CLI exports WEARHOUSE_* for nested code; don't let that leak between tests."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    s = Settings.resolve(home=tmp_path / "home")
    s.ensure_dirs()
    return s


@pytest.fixture
def layout(settings: Settings) -> LakeLayout:
    return LakeLayout(settings.lake)


def land(settings: Settings, relative: str, content: bytes | str | dict) -> Path:
    """Put a file in landing the way a receiver would."""
    target = settings.landing / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, dict):
        content = json.dumps(content)
    if isinstance(content, str):
        content = content.encode()
    target.write_bytes(content)
    return target
