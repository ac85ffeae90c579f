# syntax=docker/dockerfile:1
# The zdp worker image: `docker build -t zero-downtime-pipeline .`
# Used by docker-compose.temporal.yml (service zdp-worker). The default command is
# `zdp worker`, which polls the task queue zdp-deployments on $TEMPORAL_ADDRESS.

# The base image is pinned by digest, not by tag: a tag moves with every rebuild upstream, a
# digest names one image index (every platform) forever. This is the digest that
# python:3.11-slim named (Python 3.11.15 on Debian trixie) as recorded by the official images'
# bot in github.com/docker-library/repo-info, repos/python/remote/3.11-slim.md at commit
# 2477d553d2fdfa57b4ec11f63c8376eca8b7a253 ("$ docker pull python@sha256:90744cff…").
# It was not pulled here (no registry access where it was written). To refresh it (security
# updates of the base come only this way), on a machine with registry access:
#   docker buildx imagetools inspect python:3.11-slim     # the "Digest:" line
# and put that digest in both FROM lines below. tests/unit/test_supply_chain.py fails when a
# FROM line has no digest or the two stages use different bases.

# ---------------------------------------------------------------- builder
# Builds the project's wheel and collects the wheels of its dependencies, so the runtime
# stage installs offline and carries no compiler or build tooling.
FROM python:3.11-slim@sha256:90744cff8f32887f075c47d747a173ff333e9e98801667af93c357fa9f5e28ff AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# Dependencies come only from the hash-pinned locks (written by `make lock`): pip refuses any
# file whose sha256 is not in the lock, and --only-binary keeps sdists out (building one would
# fetch its build dependencies unpinned). build.txt is the build backend (setuptools, wheel);
# engine.txt is every runtime dependency, the same versions CI tests (requirements/dev.txt).
COPY requirements/build.txt requirements/engine.txt requirements/
RUN pip install --require-hashes --only-binary=:all: -r requirements/build.txt \
 && pip wheel --require-hashes --only-binary=:all: --wheel-dir /wheels -r requirements/engine.txt
# Only what the distribution is built from (pyproject's packages.find and readme), built with
# the locked backend above and nothing resolved.
COPY pyproject.toml README.md ./
COPY zdp/ zdp/
COPY workflows/ workflows/
COPY activities/ activities/
COPY workers/ workers/
RUN pip wheel --no-deps --no-build-isolation --wheel-dir /dist .

# ---------------------------------------------------------------- runtime
FROM python:3.11-slim@sha256:90744cff8f32887f075c47d747a173ff333e9e98801667af93c357fa9f5e28ff AS runtime

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

# Bind-mount the wheels instead of COPYing them, so they leave no layer behind. The
# dependencies are checked against engine.txt's hashes once more (the wheels the builder
# collected are the files the lock names), then the engine's own wheel goes in without
# resolving anything, and pip check proves the set is complete.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    --mount=type=bind,from=builder,source=/dist,target=/dist \
    --mount=type=bind,source=requirements/engine.txt,target=/tmp/engine.txt \
    pip install --no-index --find-links=/wheels --require-hashes --only-binary=:all: \
        -r /tmp/engine.txt \
 && pip install --no-index --no-deps /dist/zero_downtime_pipeline-*.whl \
 && pip check

# The engine configuration (apps, approvers, risk policy) that the risk activity reads.
# The package carries the same file (zdp/data/apps.yaml); it is also put here and named by
# ZDP_CONFIG; mount another file over it to change it without rebuilding.
COPY zdp/data/apps.yaml /etc/zdp/apps.yaml

WORKDIR /var/lib/zdp
USER 10001:10001

# `zdp worker --check` (a flag of the worker command) connects with the worker's own
# TEMPORAL_* settings and asks the server for its health. It proves the worker could
# reach Temporal, not that this process is polling.
HEALTHCHECK --interval=30s --timeout=10s --start-period=20s --retries=3 \
    CMD ["zdp", "worker", "--check"]

ENTRYPOINT ["zdp"]
CMD ["worker"]
