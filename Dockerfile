# The production image: Gunicorn with Uvicorn workers as PID 1, as a non-root
# user, ready for a read-only root file system. Build it with `make image`
# (scripts/image), which supplies the `wheelhouse` build context: the runtime's
# wheel (django-k8s-runtime, built from runtime/) and the dependencies exported
# from uv.lock, with their hashes (requirements.txt), downloaded on the host. The
# build itself needs no network. This is how any project using the runtime builds
# its image: install the runtime and its own dependencies, then copy its code.
#
#   docker build --network none --build-context wheelhouse=build/image/wheelhouse \
#     --tag django-k8s-runtime .

# The official image; where it cannot be pulled, scripts/image builds a local
# stand-in under this same name.
ARG PYTHON_IMAGE=docker.io/library/python:3.12-slim-bookworm

# Dependencies first, in a stage of their own: a change to the code reuses this
# layer, and neither the wheels nor pip's work files reach the final image. pip
# checks every wheel against uv.lock's hashes and may not fetch anything else.
# requirements.txt is copied, not only mounted, so that its content decides
# whether the cached layer can be reused.
FROM ${PYTHON_IMAGE} AS dependencies
COPY --from=wheelhouse requirements.txt /tmp/requirements.txt
RUN --mount=type=bind,from=wheelhouse,target=/tmp/wheelhouse \
    python -m venv --without-pip /opt/venv \
    && python -m pip --python /opt/venv/bin/python install \
        --no-index --find-links /tmp/wheelhouse --require-hashes --no-deps --only-binary=:all: \
        --no-cache-dir --disable-pip-version-check --root-user-action=ignore --quiet \
        --requirement /tmp/requirements.txt

FROM ${PYTHON_IMAGE}
# Bytecode is compiled at build time below: the root file system may be
# read-only, and nothing should try to write next to the code. Logs must reach
# the collector at once, not when a buffer fills.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# A numeric user, so Kubernetes' runAsNonRoot can verify it without /etc/passwd.
RUN groupadd --gid 10001 app \
    && useradd --uid 10001 --gid app --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin app
# The service, and the Prometheus metrics listener (METRICS_PORT).
EXPOSE 8000 9000
# Exec form: Gunicorn is PID 1 and receives SIGTERM (graceful, after
# GUNICORN_SHUTDOWN_DELAY) and SIGINT (quick) itself; it reaps any child.
# (Set here, before the code, so a code change rebuilds as few steps as possible.)
CMD ["gunicorn", "-c", "python:django_k8s_runtime.gunicorn", "config.asgi:application"]
COPY --from=dependencies /opt/venv /opt/venv
WORKDIR /app
# The code belongs to root: the service can read it, not change it.
# .dockerignore keeps tests, tools, local settings and data out.
COPY . .
# Static files are collected now, once. Settings need a secret key when DEBUG is
# off; this throw-away one lives only for this command (not in a layer or ENV).
RUN DJANGO_SECRET_KEY="$(python -c 'import secrets; print(secrets.token_urlsafe(50))')" \
        python manage.py collectstatic --noinput --verbosity 0 \
    && python -m compileall -q /app
USER 10001:10001
