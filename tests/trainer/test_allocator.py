"""The trainer's heap allocator: which library is picked, the environment that preloads it, and a real child on it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.requirements import require
from worker.planning.allocator import LIBRARIES, AllocatorMissing, active_allocator, find_allocator, trainer_env

ROOT = Path(__file__).resolve().parents[2]


def _libs(folder: Path, *names: str) -> list[Path]:
    """A library folder holding (stand-ins for) the named files, as the `dirs` find_allocator searches."""
    folder.mkdir(exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"\x7fELF")
    return [folder]


def test_auto_prefers_tcmalloc_then_jemalloc_then_the_system(tmp_path: Path) -> None:
    both = _libs(tmp_path / "both", "libjemalloc.so.2", "libtcmalloc_minimal.so.4")
    assert find_allocator("auto", both) == ("tcmalloc", tmp_path / "both" / "libtcmalloc_minimal.so.4")
    assert find_allocator("auto", _libs(tmp_path / "je", "libjemalloc.so.2"))[0] == "jemalloc"
    assert find_allocator("auto", [tmp_path / "nothing"]) == ("system", None)
    assert find_allocator("system", both) == ("system", None)


def test_a_named_allocator_that_is_missing_says_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(AllocatorMissing, match="apt-get install libtcmalloc-minimal4"):
        find_allocator("tcmalloc", [tmp_path])
    with pytest.raises(AllocatorMissing, match="choose one of auto, tcmalloc, jemalloc, system"):
        find_allocator("mimalloc", [tmp_path])


def test_trainer_env_puts_the_allocator_first_and_keeps_other_preloads(tmp_path: Path) -> None:
    dirs = _libs(tmp_path, "libtcmalloc_minimal.so.4")
    lib = str(tmp_path / "libtcmalloc_minimal.so.4")
    env = trainer_env({"LD_PRELOAD": "/opt/libother.so", "PATH": "/bin"}, "auto", dirs)
    assert env["LD_PRELOAD"] == f"{lib} /opt/libother.so" and env["PATH"] == "/bin"
    assert trainer_env(env, "auto", dirs)["LD_PRELOAD"] == env["LD_PRELOAD"]  # not twice
    assert "LD_PRELOAD" not in trainer_env({"PATH": "/bin"}, "system", dirs)


def test_active_allocator_reads_the_mapped_libraries() -> None:
    maps = "7f00-7f01 r-xp 00000000 08:01 1 /usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4.5.10\n"
    assert active_allocator(maps) == "tcmalloc"
    assert active_allocator("7f00-7f01 r-xp 0 08:01 1 /usr/lib/libc.so.6\n") == "system"


def _installed(name: str) -> bool:
    try:
        return find_allocator(name)[1] is not None
    except AllocatorMissing:
        return False


@pytest.mark.parametrize("name", [*LIBRARIES, "system"])
def test_a_child_spawned_with_trainer_env_runs_torch_on_that_allocator(name: str) -> None:
    if name != "system":
        require(_installed(name), f"{name} is not installed here: apt-get install "
                f"{'libtcmalloc-minimal4' if name == 'tcmalloc' else 'libjemalloc2'} (scripts/studio.sh setup "
                "installs tcmalloc)")
    code = ("import torch; from worker.planning.allocator import active_allocator;"
            "x = [torch.ones(256, 1024) @ torch.full((1024, 256), 0.5) for _ in range(20)];"
            "print(active_allocator(), int(sum(t.sum().item() for t in x)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         env=trainer_env(os.environ, name))
    assert out.stdout.split() == [name, str(20 * 256 * 256 * 512)]  # each entry of each product is 1024 x 0.5
