# muse: one image for scoring replicas (`muse serve --store …`, the default) and for muse's
# other commands (`docker run IMAGE versions --store …`).
#
#   docker build -t muse:0.1.0 .                                  # a scoring replica
#   docker build --build-arg EXTRAS="reports s3" -t muse:0.1.0-tools .  # + lake reports, S3
#
# BASE_IMAGE is any Debian-like image with python3 (>= 3.11) and its venv module; both stages
# use it, so the virtual environment's interpreter path is valid in the final one. Where no
# registry is reachable, deploy/docker/debian-base.sh builds one from Debian's packages.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
# The uv that installs the locked environment (uv.lock); pinned for reproducible builds.
ARG UV_VERSION=0.13.9
# Extras to install besides what serving needs, space-separated: reports, s3, gcs.
ARG EXTRAS=""
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_NO_CACHE=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/muse \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
RUN python3 -m venv /opt/uv && /opt/uv/bin/pip install --quiet "uv==${UV_VERSION}"
WORKDIR /build
# Dependencies first (a layer that changes only with the lock), then muse itself.
COPY pyproject.toml uv.lock README.md ./
RUN extras=""; for e in $EXTRAS; do extras="$extras --extra $e"; done; \
    /opt/uv/bin/uv sync --frozen --no-dev --no-install-project --no-editable \
        --python python3 $extras
COPY src ./src
# Then drop what no replica runs: the libraries' own test suites and C/Cython sources
# (~65 MB of the environment).
RUN extras=""; for e in $EXTRAS; do extras="$extras --extra $e"; done; \
    /opt/uv/bin/uv sync --frozen --no-dev --no-editable --python python3 $extras \
    && find /opt/muse/lib -type d -name tests -path '*/site-packages/*' -prune -exec rm -rf {} + \
    && find /opt/muse/lib \( -name '*.pyx' -o -name '*.pxd' -o -name '*.h' -o -name '*.hpp' \
        -o -name '*.cpp' \) -delete \
    && /opt/muse/bin/muse --help >/dev/null

FROM ${BASE_IMAGE}
# LightGBM and XGBoost link GNU OpenMP's runtime, which slim bases leave out.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log
# A fixed numeric user: Kubernetes' runAsNonRoot can check it without resolving a name.
RUN useradd --system --uid 10001 --user-group --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin muse \
    && mkdir -p /var/cache/muse \
    && chown 10001:10001 /var/cache/muse
COPY --from=build /opt/muse /opt/muse
# MUSE_CACHE: where replicas unpack versions (an emptyDir under a read-only root FS).
ENV PATH=/opt/muse/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MUSE_CACHE=/var/cache/muse
# Every model runtime loads here, or the build fails (not the first replica to start).
RUN python3 -c "import lightgbm, xgboost, onnxruntime, muse.serving.app"
USER 10001:10001
WORKDIR /var/cache/muse
EXPOSE 8000
# The store comes from MUSE_STORE (or --store); see docs/deploy-kubernetes.md.
ENTRYPOINT ["muse"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
