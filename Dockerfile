FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install . \
    && useradd --create-home --uid 10001 charger \
    && mkdir /data \
    && chown charger /data

# Faust keeps its small local state in the working directory.
WORKDIR /data
USER charger
EXPOSE 6066

ENTRYPOINT ["charger"]
CMD ["worker", "--web-port", "6066"]
