# Two images from one base, picked with --target (docker-compose.yml does):
#   web     the web app and the one-shot migration: `pip install .`, no torch (the web never loads weights)
#   worker  adds the training extra, `pip install '.[train]'`, and tcmalloc for the trainer processes
# A plain `docker build .` builds the last stage, web.
FROM python:3.11-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    LORASTUDIO_DATA_DIR=/data
WORKDIR /srv/lorastudio

# Dependencies first, so code edits do not re-install them: the project with empty packages, then removed.
COPY pyproject.toml README.md ./
RUN mkdir -p app worker && touch app/__init__.py worker/__init__.py \
 && pip install . && pip uninstall -y lorastudio \
 && useradd --create-home studio && mkdir -p /data && chown studio /data

# The code, copied the same way into both images.
FROM scratch AS source
COPY pyproject.toml README.md alembic.ini /src/
COPY migrations /src/migrations
COPY app /src/app
COPY worker /src/worker
COPY frontend /src/frontend

FROM base AS worker
# tcmalloc for the trainer processes (worker/planning/allocator.py preloads it): faster, leaner CPU training.
# A C++ toolchain: llama-cpp-python (GGUF exports' verification) is built from its sdist, PyPI has no CPU wheel.
RUN apt-get update && apt-get install -y --no-install-recommends libtcmalloc-minimal4 build-essential cmake \
 && rm -rf /var/lib/apt/lists/*
# The training extra on top of the base's web dependencies (the empty packages are still there).
RUN pip install ".[train]" && pip uninstall -y lorastudio
COPY --from=source /src/ ./
RUN pip install --no-deps -e .
# llama.cpp's own GGUF converters, from the same llama-cpp-python release (worker/export/llama_cpp_tools.py).
ENV LORASTUDIO_LLAMA_CPP_DIR=/opt/llama.cpp-tools
RUN python -m worker.export.llama_cpp_tools fetch
USER studio
CMD ["lorastudio", "worker"]

FROM base AS web
COPY --from=source /src/ ./
RUN pip install --no-deps -e .
USER studio
EXPOSE 8000
# The same timeouts as app.stack.web_argv (`lorastudio up`): idle connections outlive a proxy's, streams get 5 s.
CMD ["uvicorn", "--factory", "app.main:create_app", "--host", "0.0.0.0", "--port", "8000", \
     "--timeout-graceful-shutdown", "5", "--timeout-keep-alive", "75"]
