# Baseline of `cold-build` in `make bench`: the single image the ancestor projects built,
# everything pip-installed in one Dockerfile on Debian (MLflow server, JupyterLab, the science
# set). Built from the repo root as context, like the stack's images; never used by the stack
# itself.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Debian's Python with pip and venv (trixie's pip refuses system-wide installs: PEP 668), git
# for MLflow's run metadata
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-pip python3-venv ca-certificates git \
 && rm -rf /var/lib/apt/lists/*

# The same extra CA certificates as the stack (TLS-intercepting proxies), so both builds reach
# the package index the same way
COPY .build/ca-certificates/ /usr/local/share/ca-certificates/
RUN update-ca-certificates
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH

# The stack's MLflow version (a build argument: make bench reads it from
# images/science/requirements.lock) so both sides install the same server; the rest unpinned, as
# the ancestors had it
ARG MLFLOW_VERSION
# hadolint ignore=DL3013
RUN python3 -m venv /opt/venv \
 && pip install --no-cache-dir "mlflow==${MLFLOW_VERSION}" jupyterlab ipykernel \
    numpy pandas scikit-learn matplotlib skops black pytest python-dotenv

EXPOSE 5000 8888
CMD ["mlflow", "server", "--host", "0.0.0.0"]
