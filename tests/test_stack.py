"""What `lorastudio up` and `lorastudio worker` start and print: worker queues per lane, the web's access log,
the sign-in box."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.core.config import Settings
from app.stack import lane_argv, sign_in_box, web_argv


def _queue_and_name(argv: list[str]) -> tuple[str, str | None]:
    return argv[argv.index("-Q") + 1], argv[argv.index("-n") + 1] if "-n" in argv else None


def test_lanes_pick_queues_and_a_short_worker_gets_its_own_name() -> None:
    settings = Settings(queue="training")
    assert _queue_and_name(lane_argv(settings, "training")) == ("training", None)
    assert _queue_and_name(lane_argv(settings, "short")) == ("short", "short@%h")
    assert _queue_and_name(lane_argv(settings, "training, short")) == ("training,short", None)
    assert lane_argv(settings, "training", 3)[lane_argv(settings, "training", 3).index("--concurrency") + 1] == "3"
    with pytest.raises(ValueError, match="unknown queue gpu"):
        lane_argv(settings, "training,gpu")


def test_the_access_log_is_off_unless_asked() -> None:
    assert "--no-access-log" in web_argv("127.0.0.1", 8000, access_log=False)
    assert "--no-access-log" not in web_argv("127.0.0.1", 8000, access_log=True)
    assert Settings().access_log is False


def test_the_sign_in_box_names_the_password_and_how_to_reset_it(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.delenv("DATABASE_URL", raising=False)
    first = sign_in_box("http://127.0.0.1:8000", ("admin", "s3cret"), Settings(data_dir=tmp_path))
    lines = first.splitlines()
    assert lines[0] == lines[-1] and set(lines[0]) == {"+", "-"} and len({len(line) for line in lines}) == 1
    assert "LoRA Studio is ready: http://127.0.0.1:8000" in first and "Sign in as admin, password: s3cret" in first
    assert f"Forgot it? LORASTUDIO_DATA_DIR={tmp_path} lorastudio users set-password admin" in first
    later = sign_in_box("http://127.0.0.1:8000", None, Settings(data_dir=Path.home() / ".lorastudio"))
    assert "password:" not in later and "Forgot the admin password? lorastudio users set-password admin" in later
