# syntax=docker/dockerfile:1
# The mini-llm gateway as a server image: `mini-llm serve` on 0.0.0.0:8080, one worker per CPU
# the container may use, configured by environment (docs/DEPLOY.md lists what each topology
# needs). MINI_LLM_MASTER_KEY is required: the gateway refuses to listen on 0.0.0.0 without
# authentication. Build: docker build -t mini-llm .

ARG PYTHON_IMAGE=python:3.12-slim

# --- the wheel, built from the source tree (.dockerignore lets in only what it needs) ---
FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
RUN python -m pip install --no-cache-dir build==1.6.1
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
RUN python -m build --wheel --outdir /dist

# --- the server: the wheel and the server extras in a venv, no build tools, not root ---
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="mini-llm" \
      org.opencontainers.image.description="A small, fast LLM gateway (OpenAI, Anthropic, Gemini APIs)" \
      org.opencontainers.image.source="https://github.com/mini-llm/mini-llm" \
      org.opencontainers.image.licenses="MIT"
ENV PATH=/opt/mini-llm/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# redis and postgres: the shared state of several instances; otel: traces to an OTLP endpoint
RUN --mount=type=bind,from=build,source=/dist,target=/dist \
    python -m venv /opt/mini-llm \
    && wheel="$(echo /dist/mini_llm-*.whl)" \
    && /opt/mini-llm/bin/pip install --no-cache-dir "${wheel}[redis,postgres,otel]" \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/mini-llm --create-home \
        --shell /usr/sbin/nologin mini-llm

# Listening, workers and data by environment; everything else too (README "Environment").
# The data directory holds the SQLite file of a single instance (MINI_LLM_DATABASE_URL unset);
# mount a volume there to keep it, or point MINI_LLM_DATABASE_URL at PostgreSQL.
ENV MINI_LLM_WORKERS=auto \
    MINI_LLM_DATA_DIR=/var/lib/mini-llm \
    MINI_LLM_LOG_FORMAT=json
USER 10001:10001
WORKDIR /var/lib/mini-llm
VOLUME ["/var/lib/mini-llm"]
EXPOSE 8080
# SIGTERM (docker stop) drains: in-flight requests get MINI_LLM_SHUTDOWN_GRACE seconds (30 by
# default), so give `docker stop` / stop_grace_period more than that.
STOPSIGNAL SIGTERM
# no curl in the slim image: Python's urllib, which fails on anything but a 2xx
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health/live', timeout=2)"]
# --no-state: a server, not the per-user shared gateway (no state file, no lock to take)
ENTRYPOINT ["mini-llm", "serve", "--host", "0.0.0.0", "--port", "8080", "--no-state"]
