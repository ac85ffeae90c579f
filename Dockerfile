# syntax=docker/dockerfile:1
# The zdp worker image: `docker build -t zero-downtime-pipeline .`
# Used by docker-compose.temporal.yml (service zdp-worker). The default command is
# `zdp worker`, which polls the task queue zdp-deployments on $TEMPORAL_ADDRESS.

# ---------------------------------------------------------------- builder
# Builds the project's wheel and the wheels of its dependencies, so the runtime
# stage installs offline and carries no compiler or build tooling.
FROM python:3.11-slim AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# Only what the distribution is built from (pyproject's packages.find and readme).
COPY pyproject.toml README.md ./
COPY zdp/ zdp/
COPY workflows/ workflows/
COPY activities/ activities/
COPY workers/ workers/
RUN pip wheel --wheel-dir /wheels .

# ---------------------------------------------------------------- runtime
FROM python:3.11-slim AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ZDP_HOME=/var/lib/zdp \
    ZDP_CONFIG=/etc/zdp/apps.yaml

RUN groupadd --system --gid 10001 zdp \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/zdp \
            --no-create-home --shell /usr/sbin/nologin zdp \
 && mkdir -p /var/lib/zdp \
 && chown 10001:10001 /var/lib/zdp

# Bind-mount the wheels instead of COPYing them, so they leave no layer behind.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels zero-downtime-pipeline

# The engine configuration (apps, approvers, risk policy) that the risk activity reads.
# An installed zdp cannot find the repository's copy, so it is baked in and named by
# ZDP_CONFIG; mount another file over it to change it without rebuilding.
COPY infrastructure/canary-deployments/apps.yaml /etc/zdp/apps.yaml

WORKDIR /var/lib/zdp
USER 10001:10001

# `zdp worker --check` (a flag of the worker command) connects with the worker's own
# TEMPORAL_* settings and asks the server for its health. It proves the worker could
# reach Temporal, not that this process is polling.
HEALTHCHECK --interval=30s --timeout=10s --start-period=20s --retries=3 \
    CMD ["zdp", "worker", "--check"]

ENTRYPOINT ["zdp"]
CMD ["worker"]
