"""The `lorastudio` client commands against a live studio: list tables and JSON, cancel, a run's timeline, and
--follow's live progress to the end (exit 0 only on success), resumed with Last-Event-ID when the stream drops."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest
import yaml

from app.cli_follow import Display, Progress, follow, sse_events
from app.studio_client import StudioClient
from tests.e2e.conftest import LiveStudio, run_spec

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def _cli(live: LiveStudio, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "LORASTUDIO_SERVER": live.url, "LORASTUDIO_TOKEN": live.token}
    return subprocess.run([sys.executable, "-m", "app.cli", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=300)


def _spec_file(tmp_path: Path, studio_objects: dict, steps: int, **data: int) -> Path:
    spec = run_spec(studio_objects["dataset_id"], studio_objects["model"], "lora", steps)
    spec["data"] |= data
    path = tmp_path / f"run-{steps}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.fixture(scope="module")
def followed(live_studio: LiveStudio, studio_objects: dict, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """`runs create SPEC --follow` of one short run that succeeds: (its id, the finished command)."""
    spec = _spec_file(tmp_path_factory.mktemp("follow"), studio_objects, 6)
    result = _cli(live_studio, "runs", "create", str(spec), "--follow")
    return int(result.stdout.split()[1]), result


def test_create_follow_shows_progress_and_exits_0_on_success(followed: tuple) -> None:
    run_id, result = followed
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"run {run_id} queued: http://")
    progress = [line for line in lines if line.startswith("step ")]  # not a terminal: one line per update
    assert progress and progress[-1].startswith("step 6/6  [####################]  loss "), lines
    assert any("loss " in line and " tok/s" in line for line in progress), progress
    assert "succeeded" in lines[-1] and "final train loss" in lines[-1]  # the timeline's end entry


def test_runs_list_and_logs(live_studio: LiveStudio, followed: tuple) -> None:
    run_id, _ = followed
    table = _cli(live_studio, "runs", "list").stdout.splitlines()
    assert table[0].split() == ["ID", "NAME", "STATUS", "METHOD", "STEP", "LOSS", "CREATED"]
    row = next(line.split() for line in table[1:] if line.split()[0] == str(run_id))
    assert row[1:5] == ["e2e-lora", "succeeded", "lora", "6/6"]
    listed = json.loads(_cli(live_studio, "runs", "list", "--status", "succeeded", "--json").stdout)
    assert run_id in [r["id"] for r in listed] and {r["status"] for r in listed} == {"succeeded"}
    logs = _cli(live_studio, "runs", "logs", str(run_id))
    kinds = [line.split()[2] for line in logs.stdout.splitlines()]
    assert kinds[0] == "queued" and "started" in kinds and kinds[-1] == "succeeded", logs.stdout
    finished = _cli(live_studio, "runs", "logs", str(run_id), "--follow")  # an ended run: at once, its status
    assert finished.returncode == 0 and "step 6/6" in finished.stdout


def test_datasets_and_models_list(live_studio: LiveStudio, studio_objects: dict) -> None:
    datasets = _cli(live_studio, "datasets", "list")
    assert datasets.stdout.split("\n", 1)[0].split() == ["ID", "NAME", "FORMAT", "ROWS", "SIZE", "UPLOADED"]
    row = next(line.split() for line in datasets.stdout.splitlines() if line.split()[0] == str(
        studio_objects["dataset_id"]))
    assert row[1:4] == ["chat", "messages", "24"]
    as_json = json.loads(_cli(live_studio, "datasets", "list", "--json").stdout)
    assert studio_objects["dataset_id"] in [d["id"] for d in as_json]
    models = _cli(live_studio, "models", "list").stdout.splitlines()
    assert models[0].split() == ["ID", "NAME", "SOURCE", "REF"]
    assert any(line.split()[1] == studio_objects["model"] for line in models[1:]), models


def test_a_failed_run_exits_non_zero_with_its_advice(live_studio: LiveStudio, studio_objects: dict,
                                                      tmp_path: Path) -> None:
    spec = _spec_file(tmp_path, studio_objects, 5, max_seq_length=8)  # no answer token left: the trainer fails
    result = _cli(live_studio, "runs", "create", str(spec), "--follow")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "failed" in result.stdout and "no_trainable_tokens" in result.stdout
    assert "max_seq_length" in result.stdout.splitlines()[-1]  # the end entry carries the advice


def test_cancel_then_follow_and_download(live_studio: LiveStudio, studio_objects: dict, tmp_path: Path) -> None:
    created = _cli(live_studio, "runs", "create", str(_spec_file(tmp_path, studio_objects, 100_000)))
    run_id = int(created.stdout.split()[1])
    cancelled = _cli(live_studio, "runs", "cancel", str(run_id))
    assert cancelled.returncode == 0 and (f"run {run_id} cancelled before it started" in cancelled.stdout
                                          or "cancel requested" in cancelled.stdout), cancelled.stdout
    followed = _cli(live_studio, "runs", "logs", str(run_id), "--follow")
    assert followed.returncode == 1 and "cancelled at step" in followed.stdout, followed.stdout
    if live_studio.http.get(f"/api/runs/{run_id}").json()["started_at"] is None:
        refused = _cli(live_studio, "runs", "download", str(run_id), "--out", str(tmp_path / "a.zip"))
        assert refused.returncode == 1 and "cancelled before it started, so it has no adapter" in refused.stderr
        assert not (tmp_path / "a.zip").exists()


def _cancel_and_wait(live: LiveStudio, run_id: int) -> None:
    """Leave the shared worker idle for the next test: the run cancelled and ended."""
    _cli(live, "runs", "cancel", str(run_id))
    assert _cli(live, "runs", "logs", str(run_id), "--follow").returncode == 1


def test_a_recipe_as_shipped_runs_on_a_studio_dataset_and_model(live_studio: LiveStudio, studio_objects: dict) -> None:
    recipe = ROOT / "worker" / "planning" / "recipes" / "quick-qlora.yaml"  # names a hub model and data: placeholder
    refused = _cli(live_studio, "runs", "create", str(recipe))
    assert refused.returncode == 1 and "pass --dataset" in refused.stderr
    created = _cli(live_studio, "runs", "create", str(recipe), "--dataset", "chat", "--model", studio_objects["model"],
                   "--name", "from-recipe")
    assert created.returncode == 0, created.stdout + created.stderr
    run_id = int(created.stdout.split()[1])
    spec = live_studio.http.get(f"/api/runs/{run_id}").json()["spec"]
    assert spec["model"]["base_model"] == studio_objects["model"] and spec["data"]["path"] is None
    assert spec["data"]["dataset_id"] == studio_objects["dataset_id"]
    assert spec["lora"]["r"] == yaml.safe_load(recipe.read_text())["lora"]["r"]  # the rest as the recipe says
    _cancel_and_wait(live_studio, run_id)


def test_a_preset_is_fitted_to_the_dataset(live_studio: LiveStudio, studio_objects: dict) -> None:
    created = _cli(live_studio, "runs", "create", "--preset", "quick-qlora", "--dataset",
                   str(studio_objects["dataset_id"]), "--model", studio_objects["model"])
    assert created.returncode == 0, created.stdout + created.stderr
    # 24 rows, 5 % held out, batch 4: 6 steps an epoch; 12 epochs (the cap) and lr 1e-3 fit them best.
    assert "fitted to the dataset: training.num_epochs 12, training.learning_rate 0.001" in created.stdout
    assert "plan: 72 optimizer steps at lr 1e-3 on 24 rows" in created.stdout
    run_id = int(next(line for line in created.stdout.splitlines() if line.startswith("run ")).split()[1])
    assert live_studio.http.get(f"/api/runs/{run_id}").json()["spec"]["training"]["num_epochs"] == 12
    _cancel_and_wait(live_studio, run_id)
    unknown = _cli(live_studio, "runs", "create", "--preset", "nope", "--dataset", "chat", "--model", "m")
    assert unknown.returncode == 1 and "There is no preset 'nope'" in unknown.stderr


class CuttingProxy:
    """A TCP proxy to the studio that breaks its first connection right after the first SSE event with an id,
    and keeps the request head of every connection."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port, self.heads = upstream_port, []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            client, _ = self.listener.accept()
            threading.Thread(target=self._pipe, args=(client, not self.heads), daemon=True).start()

    def _pipe(self, client: socket.socket, cut: bool) -> None:
        with client, socket.create_connection(("127.0.0.1", self.upstream_port)) as upstream:
            head = client.recv(65536)  # a GET: the head is the whole request
            self.heads.append(head.decode())
            upstream.sendall(head)
            seen = b""
            while chunk := upstream.recv(65536):
                seen += chunk
                if cut and b"\nid: " in seen:
                    end = seen.index(b"\n\n", seen.index(b"\nid: ")) + 2
                    client.sendall(chunk[:len(chunk) - (len(seen) - end)])
                    return  # mid-response: the client sees a broken chunked stream
                client.sendall(chunk)


def test_follow_resumes_from_the_last_event_id_when_the_stream_drops(live_studio: LiveStudio,
                                                                      followed: tuple) -> None:
    run_id, _ = followed
    proxy = CuttingProxy(int(live_studio.url.rsplit(":", 1)[1]))
    out = io.StringIO()
    progress = follow(StudioClient(proxy.url, live_studio.token), run_id, Display(out))
    assert progress.status == "succeeded" and progress.step == 6
    streams = [head.lower() for head in proxy.heads if head.startswith(f"GET /api/runs/{run_id}/events")]
    assert len(streams) == 2 and "last-event-id" not in streams[0] and "last-event-id: 1\r\n" in streams[1], streams
    steps = [int(line.split()[1].split("/")[0]) for line in out.getvalue().splitlines() if line.startswith("step")]
    assert steps == sorted(steps) and steps[-1] == 6 and len(steps) == len(set(steps))  # none twice


def test_progress_line_states_and_eta() -> None:
    progress = Progress()
    assert progress.line() == "queued: waiting for a worker"
    progress.apply("metric", {"step": 10, "loss": 2.5, "tokens_per_second": 1234.5, "elapsed_s": 20.0})
    assert progress.line() == "step 10  loss 2.5  1,234 tok/s"  # no total yet: no bar, no ETA
    progress.apply("status", {"status": "running", "current_step": 10, "total_steps": 40})
    progress.apply("metric", {"step": 20, "loss": "nan", "elapsed_s": 30.0})
    assert progress.line() == "step 20/40  [##########..........]  loss nan  1,234 tok/s  ETA 0:20"
    progress.apply("metric", {"step": 22, "elapsed_s": 4.0})  # a resumed attempt: its clock starts again
    assert progress.eta_s() == pytest.approx(4.0 / 22 * 18)
    progress.apply("status", {"status": "failed", "current_step": 22, "total_steps": 40, "error_code": "diverged",
                              "error_message": "loss became nan"})
    assert progress.line() == "failed at step 22/40 (diverged: loss became nan)"


def test_sse_events_parse_ids_names_and_skip_comments() -> None:
    text = 'retry: 2000\n\nid: 3\nevent: metric\ndata: {"step": 1}\n\n: keep-alive\n\nevent: status\ndata: {"a":\n'
    text += 'data: 1}\n\n'
    assert list(sse_events(text.split("\n"))) == [("metric", "3", {"step": 1}), ("status", None, {"a": 1})]


def test_display_rewrites_one_line_on_a_terminal() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Terminal()
    display = Display(out)
    for line in ("step 1/4 longer", "step 2/4", "step 2/4"):
        display.show(line)
    display.end()
    assert out.getvalue() == "\rstep 1/4 longer\rstep 2/4       \n"


def test_adapters_register_alias_show_and_download(live_studio: LiveStudio, followed: tuple, tmp_path: Path) -> None:
    run_id, _ = followed
    name = f"cli-{run_id}-{tmp_path.name[-6:]}".replace("_", "-")
    made = _cli(live_studio, "adapters", "register", name, "--run", str(run_id), "--description", "from the CLI")
    assert made.returncode == 0 and f"{name}:v1 registered" in made.stdout, made.stdout + made.stderr
    moved = _cli(live_studio, "adapters", "alias", name, "production", "1")
    assert moved.returncode == 0 and moved.stdout.strip() == f"{name}:production -> v1"
    shown = _cli(live_studio, "adapters", "show", name).stdout.splitlines()
    assert shown[0].split()[:3] == ["VERSION", "ALIAS", "FROM"] and shown[1].split()[:2] == ["v1", "production"]
    refused = _cli(live_studio, "adapters", "delete-version", name, "1")
    assert refused.returncode == 1 and "production points to" in refused.stderr
    out = tmp_path / "v1.zip"
    assert _cli(live_studio, "adapters", "download", name, "1", "--out", str(out)).returncode == 0
    with zipfile.ZipFile(out) as zipped:
        assert "adapter_model.safetensors" in zipped.namelist()
    listed = json.loads(_cli(live_studio, "adapters", "list", "--json").stdout)
    assert next(a for a in listed if a["name"] == name)["aliases"] == {"production": 1}


def test_a_version_exported_merged_is_verified_and_downloaded(live_studio: LiveStudio, followed: tuple,
                                                                 tmp_path: Path) -> None:
    """The whole path of an export: the web queues it, a worker runs the real child (merge, reload, generate),
    stores its files as blobs; the CLI waits, prints the verification and downloads the files, hash-checked."""
    from transformers import AutoModelForCausalLM

    run_id, _ = followed
    name = f"exp-{run_id}-{tmp_path.name[-6:]}".replace("_", "-")
    assert _cli(live_studio, "adapters", "register", name, "--run", str(run_id)).returncode == 0
    made = _cli(live_studio, "adapters", "export", f"{name}:v1", "--format", "merged", "--wait")
    assert made.returncode == 0, made.stdout + made.stderr
    assert "verification:" in made.stdout and "agreement" in made.stdout
    listed = json.loads(_cli(live_studio, "adapters", "exports", f"{name}:v1", "--json").stdout)
    export = listed[0]
    assert export["status"] == "succeeded" and export["agreement"] >= 0.9
    assert export["report"]["checks"]["merged"]["verified"]
    again = _cli(live_studio, "adapters", "export", f"{name}:v1", "--format", "merged")
    assert f"export {export['id']} " in again.stdout  # the same export, not a second one
    out = tmp_path / "merged"
    fetched = _cli(live_studio, "adapters", "export-download", str(export["id"]), "--out", str(out))
    assert fetched.returncode == 0, fetched.stderr
    assert {f["name"] for f in export["files"]} == {p.name for p in out.iterdir()}
    model = AutoModelForCausalLM.from_pretrained(out)
    assert not any("lora" in n for n, _ in model.named_parameters())
