"""llama.cpp's own converters (convert_hf_to_gguf.py, convert_lora_to_gguf.py, their `conversion` package and the
gguf-py they ship with), taken from the llama-cpp-python sdist on PyPI — the same release as the llama-cpp-python
that verifies the files — and run as they are, in a child process. No tensor layout is written here.

`python -m worker.export.llama_cpp_tools fetch` puts them in the cache once (scripts/studio.sh does it)."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

VERSION = "0.3.36"  # keep equal to the llama-cpp-python pin in pyproject.toml's `train` extra
CACHE = Path.home() / ".cache" / "lorastudio" / f"llama.cpp-{VERSION}"
MEMBERS = ("convert_hf_to_gguf.py", "convert_lora_to_gguf.py", "conversion", "gguf-py", "LICENSE")
TIMEOUT_S = 3600


class ConversionFailed(Exception):
    """A converter exited with an error (its output's end is the message)."""


def tools_dir(override: str | None = None) -> Path:
    """Where the converters are: the override, else $LORASTUDIO_LLAMA_CPP_DIR, else the cache."""
    return Path(override or os.environ.get("LORASTUDIO_LLAMA_CPP_DIR") or CACHE).expanduser()


def missing(folder: Path) -> list[str]:
    """The converter files folder lacks."""
    return [m for m in MEMBERS if not (folder / m).exists()]


def fetch(folder: Path = CACHE) -> Path:
    """Download the sdist with pip and keep only the converters, renamed into place whole; idempotent."""
    if not missing(folder):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent) as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                        f"llama-cpp-python=={VERSION}", "-d", tmp], check=True)
        sdist = next(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        prefix = f"{sdist.name.removesuffix('.tar.gz')}/vendor/llama.cpp/"
        staged = Path(tmp) / "tools"
        with tarfile.open(sdist) as archive:
            for member in archive.getmembers():
                rest = member.name.removeprefix(prefix)
                if member.name.startswith(prefix) and rest.split("/")[0] in MEMBERS and (member.isfile()
                                                                                      or member.isdir()):
                    member.name = rest
                    archive.extract(member, staged, filter="data")
        if missing(staged):
            raise RuntimeError(f"{sdist.name} lacks {', '.join(missing(staged))}")
        shutil.rmtree(folder, ignore_errors=True)
        staged.rename(folder)
    return folder


def _run(folder: Path, script: str, args: list[str]) -> None:
    """Run one converter with this Python; its own gguf-py comes first on the path (the script inserts it)."""
    if missing(folder):
        raise ConversionFailed(f"llama.cpp's converters are not in {folder} (missing {', '.join(missing(folder))});"
                               f" run `python -m worker.export.llama_cpp_tools fetch` or set LORASTUDIO_LLAMA_CPP_DIR.")
    env = {**os.environ, "PYTHONPATH": str(folder)}  # `conversion` beside the script
    done = subprocess.run([sys.executable, str(folder / script), *args], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    if done.returncode != 0:
        raise ConversionFailed(f"{script} failed (exit {done.returncode}): {(done.stderr or done.stdout)[-2000:]}")


def convert_model(folder: Path, hf_dir: Path, outfile: Path, outtype: str) -> Path:
    """A Hugging Face model folder as one GGUF file of outtype (f16, q8_0, …)."""
    _run(folder, "convert_hf_to_gguf.py", [str(hf_dir), "--outfile", str(outfile), "--outtype", outtype])
    return outfile


def convert_lora(folder: Path, adapter_dir: Path, base_dir: Path, outfile: Path, outtype: str = "f16") -> Path:
    """A PEFT LoRA adapter folder as a GGUF LoRA file (the base folder gives the architecture)."""
    _run(folder, "convert_lora_to_gguf.py", [str(adapter_dir), "--base", str(base_dir), "--outfile", str(outfile),
                                               "--outtype", outtype])
    return outfile


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker.export.llama_cpp_tools", description=__doc__)
    parser.add_argument("command", choices=["fetch", "where"])
    args = parser.parse_args(argv)
    folder = tools_dir()
    if args.command == "fetch":
        print(fetch(folder))
    else:
        print(folder, "(complete)" if not missing(folder) else f"(missing {', '.join(missing(folder))})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
