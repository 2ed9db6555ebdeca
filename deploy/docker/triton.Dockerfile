# Triton for muse's remote experts: NVIDIA's Triton image plus LightGBM, which the Python
# backend model that `muse export triton-repository` writes (muse/export/triton_model.py)
# imports. Pin both; build and push it next to muse's image:
#
#   docker build -f deploy/docker/triton.Dockerfile -t registry.example.com/risk/tritonserver-lightgbm:25.01-py3-lgbm4.6 deploy/docker
#
# then set the chart's triton.image to it.
ARG TRITON_IMAGE=nvcr.io/nvidia/tritonserver:25.01-py3
FROM ${TRITON_IMAGE}
ARG LIGHTGBM_VERSION=4.6.0
# Into the interpreter Triton's Python backend stub embeds (the image's system Python).
RUN python3 -m pip install --no-cache-dir "lightgbm==${LIGHTGBM_VERSION}" \
    && python3 -c "import lightgbm, numpy"
USER triton-server
