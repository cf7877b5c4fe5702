# syntax=docker/dockerfile:1
# CryptoTrace worker image. Multi-stage: build wheels with the compiler toolchain, run slim as non-root.
# Point it at your Kafka with CRYPTOTRACE_BROKER_URL (the embedded broker is for laptops and CI only);
# deploy/docker-compose.yml runs two of these with Kafka (KRaft), Redis, Prometheus and Grafana.

FROM python:3.11-slim AS build
# The toolchain only builds wheels and is thrown away with this stage: not pinned (DL3008).
# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y --no-install-recommends build-essential && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md constraints.txt ./
COPY app ./app
COPY agents ./agents
COPY models ./models
# Listed as a package in pyproject.toml (the `cryptotrace bench` command): the build needs it.
COPY benchmarks ./benchmarks
RUN pip wheel --no-cache-dir --wheel-dir /wheels -c constraints.txt .
# The package itself again, with the per-tick core compiled by mypyc and the forest walk by Cython (setup.py,
# models/_native.py): a platform wheel that replaces the pure one. mypy and Cython are build tools here, not
# runtime dependencies.
RUN pip install --no-cache-dir -c constraints.txt "setuptools>=77" wheel mypy cython \
 && rm /wheels/cryptotrace-*.whl \
 && CRYPTOTRACE_COMPILE=1 pip wheel --no-cache-dir --no-build-isolation --no-deps --wheel-dir /wheels .

FROM python:3.11-slim AS runtime
RUN groupadd --gid 10001 cryptotrace && useradd --create-home --uid 10001 --gid 10001 cryptotrace
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER 10001:10001
WORKDIR /home/cryptotrace
# Created here, as the runtime user, so that volumes mounted on them start owned by it.
RUN mkdir -p /home/cryptotrace/data /home/cryptotrace/models
ENV CRYPTOTRACE_DATA_DIR=/home/cryptotrace/data \
    CRYPTOTRACE_MODEL_DIR=/home/cryptotrace/models \
    CRYPTOTRACE_WEB_HOST=0.0.0.0 \
    PYTHONUNBUFFERED=1
VOLUME ["/home/cryptotrace/data", "/home/cryptotrace/models"]
EXPOSE 6066
# Liveness only (/health): /ready is 503 during every rebalance, which must not restart the container.
HEALTHCHECK --interval=30s --timeout=3s CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('CRYPTOTRACE_WEB_PORT', '6066'), timeout=2)"]
ENTRYPOINT ["cryptotrace"]
CMD ["worker"]
