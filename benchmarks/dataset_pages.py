"""Dataset pages and uploads: bytes read from the database for one page of rows, and an upload's time and memory.

Run: .venv/bin/python benchmarks/dataset_pages.py [--mb 200] [--upload-mb 100] [--before REF] [--postgresql]
Generates chat `messages` JSONL files (a few turns of realistic lengths, some non-ASCII text) in a temporary
folder and uploads each through the service (create_dataset in one session_scope) into a fresh database migrated
with app.core.schema.upgrade: SQLite in the temporary folder, or a new PostgreSQL database with --postgresql.
For the --mb file it then reads a page of 20 rows near the start, the middle and the end with rows_page and
reports the bytes the database handed back for it (every bytes value in every result of the session, counted by
a do_orm_execute hook) against the file's size, and the time per page (median of --repeats, hook off).
--upload-mb times an upload alone and its RSS growth (peak RSS during the upload less the RSS before it).
Each measurement runs in a fresh child process. --before runs the same children against the code at git REF,
checked out with `git worktree add` into a temporary folder (removed afterwards), and prints after/before ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN_URL = os.environ.get("LORASTUDIO_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
VOCABULARY = ("the model data set row token train learn loss rate step batch layer weight adapter rank alpha query key "
         "value answer question explain why how because therefore example function return list café naïve — "
         "“quoted” résumé über 東京 ½ → ok yes no maybe first second finally")


def generate(path: Path, megabytes: int, seed: int = 0) -> int:
    """A chat JSONL file of about `megabytes` MB; returns its row count."""
    rng = random.Random(seed)
    corpus = " ".join(rng.choices(VOCABULARY.split(), k=800_000))  # slices of it stand in for prose
    target, rows, written = megabytes * 10**6, 0, 0

    def text(low: int, high: int) -> str:
        start = rng.randrange(len(corpus) - high)
        return corpus[start : start + rng.randint(low, high)].strip() or "ok"

    with path.open("w", encoding="utf-8") as out:
        while written < target:
            messages = [{"role": "system", "content": text(40, 400)}] if rng.random() < 0.3 else []
            for _ in range(rng.choice((1, 1, 1, 2, 3))):
                messages += [{"role": "user", "content": text(40, 1500)},
                             {"role": "assistant", "content": text(200, 4000)}]
            line = json.dumps({"messages": messages}) + "\n"  # ensure_ascii (so one byte a character), as most
            out.write(line)                                    # exporters write
            rows, written = rows + 1, written + len(line)
    return rows


def rss_mb() -> float:
    """This process's resident set now, in MB (psutil, else /proc)."""
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def child(args: argparse.Namespace) -> None:
    """Upload one file into a fresh database with the code under --root, then optionally read pages; print JSON."""
    sys.path.insert(0, args.root)
    import app
    from app.core import schema
    from app.core.db import make_engine, make_session_factory, session_scope
    from app.core.models import Dataset
    from app.core.services import analyses, datasets

    schema.upgrade(args.url)
    factory = make_session_factory(make_engine(args.url))
    before = rss_mb()
    started = time.perf_counter()
    with session_scope(factory) as session:
        dataset = datasets.create_dataset(session, Path(args.file), Path(args.file).name)
    report = {"code": str(Path(app.__file__).parents[1]), "upload_s": time.perf_counter() - started,
              "rss_growth_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before,
              "rows": dataset.row_count, "size": dataset.size_bytes, "pages": []}
    for page in _pages(dataset.row_count) if args.pages else ():
        with session_scope(factory) as session:
            got, read = _counted(session, lambda s, p=page: analyses.rows_page(s, s.get(Dataset, dataset.id), p))
        assert got.page == page and len(got.rows) == min(20, dataset.row_count - (page - 1) * 20)
        times = []
        for _ in range(args.repeats):
            with session_scope(factory) as session:
                started = time.perf_counter()
                analyses.rows_page(session, session.get(Dataset, dataset.id), page)
                times.append(time.perf_counter() - started)
        report["pages"].append({"page": page, "bytes": read, "ms": statistics.median(times) * 1e3})
    print(json.dumps(report))


def _pages(rows: int) -> list[int]:
    last = -(-rows // 20)
    return [1, last // 2, last]


def _counted(session, read):  # noqa: ANN001, ANN202
    """Call read(session), counting the bytes of every bytes value its statements return."""
    from sqlalchemy import event

    total = 0

    def count(state):  # noqa: ANN001, ANN202
        nonlocal total
        frozen = state.invoke_statement().freeze()
        rows = (row if isinstance(row, Sequence) else (row,) for row in frozen.data)  # an ORM entity comes bare
        total += sum(len(value) for row in rows for value in row if isinstance(value, bytes | memoryview))
        return frozen()

    event.listen(session, "do_orm_execute", count)
    try:
        return read(session), total
    finally:
        event.remove(session, "do_orm_execute", count)


def run_child(root: Path, file: Path, scratch: Path, postgresql: bool, pages: bool, repeats: int) -> dict:
    """One measurement in a fresh process and a fresh database."""
    name = f"bench_pages_{uuid.uuid4().hex[:8]}"
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}" if postgresql else f"sqlite:///{scratch / (name + '.db')}"
    if postgresql:
        _pg_admin(f'CREATE DATABASE "{name}"')
    try:
        argv = [sys.executable, __file__, "--child", "--root", str(root), "--file", str(file), "--url", url,
                "--repeats", str(repeats)] + (["--pages"] if pages else [])
        done = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "TMPDIR": str(scratch)})
        if done.returncode:
            raise SystemExit(f"child failed ({root}):\n{done.stderr[-4000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        if postgresql:
            _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        else:
            for leftover in scratch.glob(name + ".db*"):
                leftover.unlink()


def _pg_admin(sql: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(sql))
    engine.dispose()


def measure(root: Path, files: dict[str, Path], scratch: Path, args: argparse.Namespace, repeats: int) -> dict:
    """The upload-only child for the upload file, and the upload + pages child for the page file."""
    return {"upload": run_child(root, files["upload"], scratch, args.postgresql, False, 1),
            "pages": run_child(root, files["pages"], scratch, args.postgresql, True, repeats)}


def show(label: str, result: dict, upload_mb: int) -> None:
    """One code version's numbers."""
    up, pages = result["upload"], result["pages"]
    print(f"{label}  (code in {up['code']})")
    print(f"  upload {upload_mb} MB: {up['upload_s']:6.1f} s, RSS growth {up['rss_growth_mb']:6.1f} MB")
    print(f"  upload {pages['size'] / 1e6:.0f} MB: {pages['upload_s']:6.1f} s, RSS growth "
          f"{pages['rss_growth_mb']:6.1f} MB ({pages['rows']:,} rows)")
    for page in pages["pages"]:
        print(f"  page {page['page']:>6,}: {page['bytes']:>12,} bytes read ({page['bytes'] / pages['size']:.2e} of the "
              f"file), {page['ms']:9.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200, help="size of the file whose pages are read")
    parser.add_argument("--upload-mb", type=int, default=100, help="size of the file whose upload is timed alone")
    parser.add_argument("--repeats", type=int, default=5, help="timed reads of each page (the --before code's: 1)")
    parser.add_argument("--before", metavar="REF", help="compare with the code at this git commit (e.g. 4eb58b8, "
                        "the last one before datasets kept their canonical rows)")
    parser.add_argument("--postgresql", action="store_true", help=f"use PostgreSQL ({PG_ADMIN_URL}) not SQLite")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--pages", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    with tempfile.TemporaryDirectory(prefix="lorastudio-bench-pages-") as tmp:
        scratch = Path(tmp)
        files = {"upload": scratch / "upload.jsonl", "pages": scratch / "pages.jsonl"}
        started = time.perf_counter()
        counts = {key: generate(path, mb, seed) for (key, path), mb, seed in
                  zip(files.items(), (args.upload_mb, args.mb), (1, 2), strict=True)}
        print(f"generated {counts['upload']:,} + {counts['pages']:,} chat rows in "
              f"{time.perf_counter() - started:.0f} s; database: {'PostgreSQL' if args.postgresql else 'SQLite'}")
        after = measure(ROOT, files, scratch, args, args.repeats)
        show("after (working tree)", after, args.upload_mb)
        if args.before:
            before = _measure_head(files, scratch, args)
            show(f"before (git {args.before})", before, args.upload_mb)
            _ratios(after, before, args.upload_mb)


def _measure_head(files: dict[str, Path], scratch: Path, args: argparse.Namespace) -> dict:
    worktree = scratch / "before"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(worktree), args.before], check=True,
                   capture_output=True)
    try:
        return measure(worktree, files, scratch, args, 1)
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(worktree)], check=True)


def _ratios(after: dict, before: dict, upload_mb: int) -> None:
    print("after/before")
    for key, label in (("upload", f"{upload_mb} MB"), ("pages", f"{after['pages']['size'] / 1e6:.0f} MB")):
        a, b = after[key], before[key]
        print(f"  upload {label}: time {a['upload_s'] / b['upload_s']:.2f}x, RSS growth "
              f"{a['rss_growth_mb']:.0f} vs {b['rss_growth_mb']:.0f} MB")
    for a, b in zip(after["pages"]["pages"], before["pages"]["pages"], strict=True):
        print(f"  page {a['page']:>6,}: bytes read {a['bytes'] / b['bytes']:.2e}x, time {a['ms'] / b['ms']:.2e}x "
              f"({b['ms'] / a['ms']:,.0f} times faster)")


if __name__ == "__main__":
    main()
