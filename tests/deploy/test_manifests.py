"""The deployment examples in deploy/ stay valid: every Kubernetes document has the fields its kind needs, the
workers request GPUs and insist on CUDA, selectors match their pods, every process gets the database and Redis
URLs (all a worker on another machine needs), the autoscaler watches the queue the studio sends to; the Slurm
array parses as bash and asks for one GPU per task."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from app.core.config import Settings
from worker.planning.device_classes import check_worker_class, queue_name, worker_queues

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DOCS = [doc for path in sorted((DEPLOY / "kubernetes").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text()) if doc]
BY_KIND: dict[str, list[dict]] = {}
for _doc in DOCS:
    BY_KIND.setdefault(_doc["kind"], []).append(_doc)
WORKLOADS = BY_KIND["Deployment"] + BY_KIND["Job"]


def _pod(workload: dict) -> dict:
    return workload["spec"]["template"]["spec"]


def test_every_document_names_its_api_kind_and_itself() -> None:
    assert len(DOCS) >= 8
    for doc in DOCS:
        assert doc["apiVersion"] and doc["kind"] and doc["metadata"]["name"], doc


def test_deployments_select_their_own_pods() -> None:
    for deployment in BY_KIND["Deployment"]:
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items(), deployment["metadata"]
    services = {s["metadata"]["name"]: s["spec"]["selector"] for s in BY_KIND["Service"]}
    pods = [d["spec"]["template"]["metadata"]["labels"] for d in BY_KIND["Deployment"]]
    for name, selector in services.items():
        assert any(selector.items() <= labels.items() for labels in pods), name


def test_every_process_gets_the_database_and_redis_urls_from_the_secret() -> None:
    (secret,) = BY_KIND["Secret"]
    assert {"DATABASE_URL", "REDIS_URL"} <= set(secret["stringData"])
    # The object store's settings too, and they are ones the studio reads (a misspelt one would be ignored).
    store = {k: v for k, v in secret["stringData"].items() if k.startswith(("LORASTUDIO_S3_", "LORASTUDIO_BLOB"))}
    fields = {k.removeprefix("LORASTUDIO_").lower(): v for k, v in store.items()}
    assert set(fields) <= set(Settings.model_fields), set(fields) - set(Settings.model_fields)
    settings = Settings(**fields)
    assert settings.blob_store == "s3" and settings.s3_bucket == store["LORASTUDIO_S3_BUCKET"]
    for workload in WORKLOADS:
        for container in _pod(workload)["containers"]:
            assert {"secretRef": {"name": secret["metadata"]["name"]}} in container["envFrom"], workload["metadata"]


def test_gpu_workers_request_a_gpu_insist_on_cuda_and_outlast_the_cancel_grace() -> None:
    workers = [d for d in BY_KIND["Deployment"] if "--device" in str(_pod(d)["containers"][0].get("command"))]
    assert workers
    grace = Settings.model_fields["cancel_grace_s"].default
    for worker in workers:
        pod = _pod(worker)
        container = pod["containers"][0]
        command = container["command"]
        assert command[command.index("--device") + 1] == "cuda"
        assert int(container["resources"]["limits"]["nvidia.com/gpu"]) >= 1
        assert pod["terminationGracePeriodSeconds"] > grace


def test_the_autoscaler_watches_queues_its_worker_takes_its_own_class_among_them() -> None:
    deployments = {d["metadata"]["name"]: _pod(d)["containers"][0].get("command", []) for d in BY_KIND["Deployment"]}
    for scaled in BY_KIND["ScaledObject"]:
        command = deployments[scaled["spec"]["scaleTargetRef"]["name"]]
        own = command[command.index("--device-class") + 1]
        taken = worker_queues(Settings().queue, check_worker_class(own))
        watched = [t["metadata"]["listName"] for t in scaled["spec"]["triggers"] if t["type"] == "redis"]
        assert set(watched) <= set(taken) and queue_name(Settings().queue, own) in watched, (own, watched)


def test_the_slurm_array_is_valid_bash_and_asks_for_one_gpu_per_worker() -> None:
    script = DEPLOY / "slurm" / "lorastudio-workers.sbatch"
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    assert subprocess.run([bash, "-n", str(script)], capture_output=True).returncode == 0
    text = script.read_text()
    assert "#SBATCH --gres=gpu:1" in text and "#SBATCH --array=" in text
    assert "--device cuda" in text and "DATABASE_URL:?" in text and "REDIS_URL:?" in text
