"""End-to-end tests use the live studio fixtures of tests/support/studio.py (registered in tests/conftest.py)."""

from tests.support.studio import CHAT_ROWS, LiveStudio, run_spec

__all__ = ["CHAT_ROWS", "LiveStudio", "run_spec"]
