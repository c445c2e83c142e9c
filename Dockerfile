# Build stage: the project's wheel (product and tooling packages, no dependencies).
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-deps --wheel-dir /wheels .

# Runtime stage: the wheel alone, without extras: no embedded broker or Valkey server
# (the `tools` extra), no build tree.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

COPY --from=build /wheels /wheels
RUN pip install /wheels/charger-*.whl \
    && rm -rf /wheels \
    && useradd --create-home --uid 10001 charger \
    && mkdir /data \
    && chown charger /data

# Faust keeps its small local state in the working directory.
WORKDIR /data
USER charger
# /metrics, /health and /ready (the CMD's --web-port).
EXPOSE 6066
# JSON logs on stdout. On SIGTERM the worker finishes and commits the batch in hand,
# flushes its outputs and exits 0.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=6 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:6066/health', timeout=3)"]

ENTRYPOINT ["charger"]
CMD ["worker", "--web-port", "6066"]
