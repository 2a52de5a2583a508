# syntax=docker/dockerfile:1
# One image for the API, the workers and the operator:
#   docker run IMAGE api | worker | <any humanizer subcommand>     (ENTRYPOINT is `humanizer`)
#   docker run --entrypoint kopf IMAGE run --module=humanizer_operator.main --all-namespaces   (operator)
# The Helm chart sets the command per component; compose.yaml runs the same image without Kubernetes.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- builder: the locked environment in /app/.venv ----------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder
ARG UV_VERSION=0.13.8
RUN pip install --no-cache-dir "uv==${UV_VERSION}"
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src
# Dependencies first (their layer survives code changes): exactly uv.lock, no dev group.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
# Then the project itself, installed (not editable) into the same environment.
COPY service/ service/
COPY operator/ operator/
RUN uv sync --frozen --no-dev --no-editable \
    && /app/.venv/bin/humanizer --help >/dev/null

# ---- runtime ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="humanizer" \
      org.opencontainers.image.description="Rewrites AI-written text at scale: API, Celery workers, kopf operator" \
      org.opencontainers.image.licenses="MIT"
RUN groupadd --system --gid 10001 humanizer \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin humanizer
COPY --from=builder /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    HUMANIZER_API_HOST=0.0.0.0
WORKDIR /tmp
USER 10001:10001
# API, worker/operator metrics, kopf liveness
EXPOSE 8000 9808 8080
ENTRYPOINT ["humanizer"]
CMD ["api"]
