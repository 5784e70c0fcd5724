"""The dataset doctor as a job: its child computes the result, the Celery process never imports torch."""

from __future__ import annotations

import subprocess
import sys

# Everything a Celery worker process imports for its tasks (worker.celery_app includes them all).
CELERY_SIDE = "import sys, worker.celery_app, worker.tasks.datasets, worker.tasks.runs, worker.jobs.analysis; " \
              "print(sorted(m for m in ('torch', 'transformers', 'peft', 'bitsandbytes') if m in sys.modules))"


def test_the_celery_process_imports_no_training_library() -> None:
    out = subprocess.run([sys.executable, "-c", CELERY_SIDE], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
