"""The dataset doctor end to end: requested over HTTP, computed once by the real worker, stored."""

from __future__ import annotations

import time

from tests.e2e.conftest import CHAT_ROWS, LiveStudio


def _wait(studio: LiveStudio, path: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        analysis = studio.http.get(path).json()
        if analysis["status"] in ("succeeded", "failed"):
            return analysis
        time.sleep(0.3)
    raise AssertionError(f"{path} still {analysis['status']} after {timeout}s; worker log:\n"
                         + studio.worker_log.read_text()[-4000:])


def test_analysis_is_computed_once_by_the_worker(live_studio: LiveStudio, studio_objects: dict) -> None:
    base = f"/api/datasets/{studio_objects['dataset_id']}/analyses"
    posted = live_studio.http.post(base, json={"base_model": studio_objects["model"], "max_seq_length": 24})
    assert posted.status_code == 202, posted.text
    analysis = _wait(live_studio, f"{base}/{posted.json()['id']}")
    assert analysis["status"] == "succeeded", analysis["error"]
    result = analysis["result"]
    assert result["row_count"] == len(CHAT_ROWS) and result["format"] == "messages"
    assert sum(result["lengths"]["counts"]) == len(CHAT_ROWS)
    assert result["max_seq_length"] == 24 and 0 < result["truncated_count"] <= len(CHAT_ROWS)
    assert result["truncated_share"] == result["truncated_count"] / len(CHAT_ROWS)
    assert len(result["examples"]) == 20
    first = result["examples"][0]["segments"]
    assert "".join(s["text"] for s in first if s["trained"]) == "0 plus 0 is 0.<|im_end|>\n"
    assert {w["code"] for w in result["warnings"]} >= {"no_eos"}

    again = live_studio.http.post(base, json={"base_model": studio_objects["model"], "max_seq_length": 24})
    assert again.status_code == 202 and again.json()["id"] == analysis["id"]
    assert again.json()["status"] == "succeeded" and again.json()["finished_at"] == analysis["finished_at"]
