# One image for the web app, the worker and the one-shot migration; docker-compose.yml picks the command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    LORASTUDIO_DATA_DIR=/data
WORKDIR /srv/lorastudio

# tcmalloc for the trainer processes (worker/trainer/allocator.py preloads it): faster, leaner CPU training.
RUN apt-get update && apt-get install -y --no-install-recommends libtcmalloc-minimal4 \
 && rm -rf /var/lib/apt/lists/*

# Dependencies first, so code edits do not re-install torch.
COPY pyproject.toml README.md ./
RUN mkdir -p app worker && touch app/__init__.py worker/__init__.py \
 && pip install . && pip uninstall -y lorastudio

COPY alembic.ini ./
COPY migrations ./migrations
COPY app ./app
COPY worker ./worker
COPY frontend ./frontend
RUN pip install --no-deps -e . && useradd --create-home studio && mkdir -p /data && chown studio /data
USER studio

EXPOSE 8000
CMD ["uvicorn", "--factory", "app.main:create_app", "--host", "0.0.0.0", "--port", "8000"]
