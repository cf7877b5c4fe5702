# syntax=docker/dockerfile:1
# CryptoTrace worker image. Multi-stage: build wheels with the compiler toolchain, run slim as non-root.
# Point it at your Kafka with CRYPTOTRACE_BROKER_URL (the embedded broker is for laptops and CI only).

FROM python:3.11-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends build-essential && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY app ./app
COPY agents ./agents
COPY models ./models
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim AS runtime
RUN useradd --create-home --uid 10001 cryptotrace
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER cryptotrace
WORKDIR /home/cryptotrace
ENV CRYPTOTRACE_DATA_DIR=/home/cryptotrace/data \
    CRYPTOTRACE_MODEL_DIR=/home/cryptotrace/models \
    CRYPTOTRACE_WEB_HOST=0.0.0.0 \
    PYTHONUNBUFFERED=1
VOLUME ["/home/cryptotrace/data", "/home/cryptotrace/models"]
EXPOSE 6066
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,os; urllib.request.urlopen('http://127.0.0.1:%s/stats' % os.environ.get('CRYPTOTRACE_WEB_PORT', '6066'))"
ENTRYPOINT ["cryptotrace"]
CMD ["worker"]
