"""LLM-as-judge: an OpenAI-compatible chat endpoint grades each answer against a rubric, as a score from 1 to 10
or PASS/FAIL; the verdict's text is parsed by a pure function."""

from __future__ import annotations

import re
from typing import Any

import httpx

from worker.evaluation.inputs import JudgeConfig

VERDICT = re.compile(r"\b(PASS|FAIL)\b|\b(10|[1-9])(?:\s*/\s*10)?\b", re.I)
SYSTEM = ("You grade one answer of an AI assistant against a rubric. Reply with a score from 1 (worst) to 10 "
          "(best), or with PASS or FAIL when the rubric asks for that, and nothing else.")


class JudgeError(Exception):
    """The judge could not give a verdict; the message names the endpoint and what happened."""


def parse_verdict(text: str) -> float | None:
    """PASS → 1, FAIL → 0, a score n of 1..10 → n / 10; None when the text holds no verdict. The first verdict
    found counts ("8/10 because…", "Verdict: PASS")."""
    found = VERDICT.search(text)
    if found is None:
        return None
    if found.group(1):
        return 1.0 if found.group(1).upper() == "PASS" else 0.0
    return int(found.group(2)) / 10.0


def messages(rubric: str, prompt: str, reference: str, answer: str) -> list[dict[str, str]]:
    """The judge's chat: the rubric, the question, the reference answer and the answer to grade."""
    user = (f"Rubric:\n{rubric}\n\nQuestion:\n{prompt}\n\nReference answer:\n{reference or '(none)'}\n\n"
            f"Answer to grade:\n{answer}\n\nYour verdict:")
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


class Judge:
    """One endpoint, one model, one rubric; a client kept for all calls."""

    def __init__(self, config: JudgeConfig, rubric: str, client: httpx.Client | None = None) -> None:
        self.config, self.rubric = config, rubric
        self.url = config.base_url.rstrip("/") + "/chat/completions"
        headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        self.client = client or httpx.Client(timeout=config.timeout_s, headers=headers)

    def score(self, prompt: str, reference: str, answer: str) -> float:
        """The verdict on one answer, in [0, 1]; JudgeError when the endpoint fails or says nothing parseable."""
        body: dict[str, Any] = {"model": self.config.model, "temperature": 0, "max_tokens": 16,
                                "messages": messages(self.rubric, prompt, reference, answer)}
        try:
            response = self.client.post(self.url, json=body)
        except httpx.TimeoutException:
            raise JudgeError(f"The judge endpoint {self.url} did not answer within {self.config.timeout_s:g} s "
                             "(LORASTUDIO_JUDGE_TIMEOUT_S).") from None
        except httpx.HTTPError as exc:
            raise JudgeError(f"The judge endpoint {self.url} could not be reached: {exc}.") from None
        if response.status_code >= 400:
            raise JudgeError(f"The judge endpoint {self.url} answered {response.status_code}: "
                             f"{response.text[:300]}")
        try:
            text = response.json()["choices"][0]["message"]["content"] or ""
        except (ValueError, KeyError, IndexError, TypeError):
            raise JudgeError(f"The judge endpoint {self.url} did not answer as a chat completion: "
                             f"{response.text[:300]}") from None
        verdict = parse_verdict(text)
        if verdict is None:
            raise JudgeError(f"The judge ({self.config.model} at {self.url}) gave no score or PASS/FAIL: "
                             f"{text[:200]!r}")
        return verdict
