"""The docker compose deployment as a person runs it on a GPU machine (no Docker daemon here, so its shape is read
from the files, and the one command compose adds — `migrate --first-admin` — runs for real)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from app.core.config import Settings
from app.stack import web_argv

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
MODEL_LOADERS = ("worker", "short-worker", "generation")


def _seconds(value: str) -> float:
    return float(value.removesuffix("s"))


def test_model_loaders_share_a_hugging_face_cache_and_the_hosts_token() -> None:
    assert "hf-cache" in COMPOSE["volumes"]
    for name in MODEL_LOADERS:
        service = SERVICES[name]
        assert "hf-cache:/hf-cache" in service["volumes"], name
        assert service["environment"]["HF_HOME"] == "/hf-cache", name
        assert service["environment"]["HF_TOKEN"] == "${HF_TOKEN:-}", name


def test_workers_stop_later_than_their_trainers_cancel_grace() -> None:
    grace = Settings.model_fields["cancel_grace_s"].default
    for name in MODEL_LOADERS:
        assert _seconds(SERVICES[name]["stop_grace_period"]) > grace, name


def test_web_and_workers_have_healthchecks_and_the_gpu_worker_insists_on_cuda() -> None:
    assert "/healthz" in " ".join(SERVICES["web"]["healthcheck"]["test"])
    assert "celery@$$HOSTNAME" in SERVICES["worker"]["healthcheck"]["test"][1]
    assert "short@$$HOSTNAME" in SERVICES["short-worker"]["healthcheck"]["test"][1]  # app.stack names it short@%h
    assert SERVICES["worker"]["command"][-2:] == ["--device", "cuda"]


def test_the_build_context_leaves_out_the_virtual_environment_and_git() -> None:
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    assert {".venv", ".git"} <= set(ignored)
    copied = " ".join(line for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("COPY"))
    assert not any(f" {name}" in copied for name in ignored if not name.startswith("*"))  # nothing copied is ignored


def test_compose_migrate_makes_the_first_admin_once(tmp_path: Path) -> None:
    assert SERVICES["migrate"]["command"] == ["lorastudio", "migrate", "--first-admin"]
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'studio.db'}", "LORASTUDIO_DATA_DIR": str(tmp_path),
           "LORASTUDIO_ADMIN_PASSWORD": ""}

    def migrate() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "app.cli", "migrate", "--first-admin"], capture_output=True,
                              text=True, env=env, cwd=ROOT, timeout=120)

    first = migrate()
    assert first.returncode == 0, first.stderr
    assert "first admin: admin, password: " in first.stdout
    password = first.stdout.split("password: ")[1].split()[0]
    assert len(password) >= 12
    again = migrate()
    assert again.returncode == 0 and "first admin" not in again.stdout  # printed once, never reset


STUDIO_PROCESSES = ("migrate", "web", *MODEL_LOADERS)


def _as_compose_sets(value: object, host: dict[str, str]) -> str:
    """A value with compose's ${NAME:-default} filled in from host (else the default)."""
    return re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: host.get(m[1], m[2]), str(value))


def test_every_studio_process_reaches_the_optional_object_store(monkeypatch) -> None:  # noqa: ANN001
    minio = SERVICES["minio"]
    assert minio["image"].startswith("minio/minio") and minio["healthcheck"]["test"] == ["CMD", "mc", "ready", "local"]
    assert "minio-data:/data" in minio["volumes"] and "minio-data" in COMPOSE["volumes"]
    assert SERVICES["migrate"]["depends_on"]["minio-bucket"] == {"condition": "service_completed_successfully"}
    made = SERVICES["minio-bucket"]["entrypoint"][-1].rsplit("local/", 1)[1]  # the bucket the one-shot makes
    for host, store in (({}, "database"), ({"LORASTUDIO_BLOB_STORE": "s3"}, "s3")):  # off unless the host says s3
        for name in STUDIO_PROCESSES:
            for key, value in SERVICES[name]["environment"].items():
                monkeypatch.setenv(key, _as_compose_sets(value, host))
            settings = Settings()
            assert settings.blob_store == store, name
            assert (settings.s3_endpoint_url, settings.s3_bucket) == ("http://minio:9000", made), name
            assert settings.s3_secret_access_key.get_secret_value() == _as_compose_sets(
                minio["environment"]["MINIO_ROOT_PASSWORD"], host), name
            assert settings.s3_access_key_id == minio["environment"]["MINIO_ROOT_USER"], name


def test_each_image_is_built_once_and_run_by_the_others() -> None:
    built = {name: s["image"] for name, s in SERVICES.items() if "build" in s}
    assert sorted(built.values()) == ["lorastudio-web:local", "lorastudio-worker:local"], built
    targets = {s["image"]: s["build"]["target"] for s in SERVICES.values() if "build" in s}
    assert targets == {"lorastudio-web:local": "web", "lorastudio-worker:local": "worker"}
    for name, service in SERVICES.items():
        if service.get("image", "").startswith("lorastudio-") and "build" not in service:
            assert service["pull_policy"] == "never", name  # a local image: never looked for on a registry
            assert any(service["image"] == s["image"] for s in SERVICES.values() if "build" in s), name


def test_the_web_image_runs_uvicorn_as_lorastudio_up_does() -> None:
    """The image's web process keeps the same timeouts as `lorastudio up` (idle connections outlive a proxy's)."""
    stages = re.split(r"^FROM ", (ROOT / "Dockerfile").read_text(), flags=re.MULTILINE)
    web_stage = next(stage for stage in stages if stage.startswith("base AS web"))
    cmd = re.search(r"^CMD (\[.*?\])$", web_stage.replace("\\\n", ""), flags=re.MULTILINE | re.DOTALL)
    assert cmd, web_stage
    assert json.loads(cmd.group(1)) == ["uvicorn", *web_argv("0.0.0.0", 8000)[3:]]


def test_the_gpu_worker_takes_every_gpu_and_shares_them_out_itself() -> None:
    # count 1 on a --scaled service gave every replica the same GPU; one worker with all of them runs one job per
    # GPU (worker/jobs/gpu_slots.py), each child seeing only its own.
    (devices,) = SERVICES["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices["count"] == "all" and devices["capabilities"] == ["gpu"]
