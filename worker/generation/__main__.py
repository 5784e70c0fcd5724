"""`python -m worker.generation`: run a generation service against DATABASE_URL, REDIS_URL and the data dir."""

from __future__ import annotations

import argparse
import importlib.util
import logging
import signal
import socket
import sys
from typing import Any

from app.core.config import Settings
from app.core.generation import protocol


def check_backend(settings: Settings) -> None:
    """Refuse to start with a backend that cannot run here (SystemExit with what to do)."""
    if settings.generation_backend == "vllm":
        if importlib.util.find_spec("vllm") is None:
            raise SystemExit("LORASTUDIO_GENERATION_BACKEND is 'vllm' but vllm is not installed here: install it "
                             "(CUDA only) or set LORASTUDIO_GENERATION_BACKEND=transformers.")
        raise SystemExit("The vLLM generation backend is not available in this version of the studio; set "
                         "LORASTUDIO_GENERATION_BACKEND=transformers.")


def build(settings: Settings, host: str, requests_key: str | None = None) -> Any:
    """The service for these settings (imports torch: only after the backend check)."""
    from app.core.resources import Resources
    from worker.generation.adapters import AdapterCache
    from worker.generation.engine import Engine
    from worker.generation.service import Service
    from worker.trainer.model import pick_device

    res = Resources(settings)
    cache = AdapterCache(res.session_factory, settings.data_dir / "generation-cache")
    engine = Engine(pick_device(), cache, max_adapters=settings.generation_adapters_per_base,
                    budget_bytes=settings.generation_base_memory_bytes)
    return Service(engine, res.redis, host, max_batch=settings.generation_max_batch, requests_key=requests_key,
                   backend=settings.generation_backend, keys=protocol.Keys(settings.generation_namespace))


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m worker.generation", description=__doc__)
    parser.add_argument("--host", default=socket.gethostname(), help="The name this service announces itself by.")
    parser.add_argument("--requests-key", default=None, help="The Redis list to serve (default: the studio's; "
                        "tests give their own).")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings()
    check_backend(settings)
    service = build(settings, args.host, args.requests_key)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: service.stop())
    service.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
