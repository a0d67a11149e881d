# The ORCA image: one image for the runtime in the cluster (`orca run`, as user 65532 with a
# read-only root filesystem, the Deployment of infra/orca_infra/cluster.py) and for the agent
# on burst instances (`orca agent`, run as root by the bootstrap in user data with the host's
# Docker socket; see runtime/orca/bootstrap.py). Build it with `make image`.
#
# The bases are pinned by exact tag. The agent drives the host's dockerd with the docker CLI
# (runtime/orca/agent/docker.py: pull, create, start, inspect, logs, stop, rm), which comes
# as the static binary of Docker's official CLI image; it negotiates the API version down to
# the daemon the AMI ships.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm
ARG DOCKER_CLI_IMAGE=docker:27.5.1-cli

FROM ${DOCKER_CLI_IMAGE} AS docker-cli

# Build stage: the project's wheel and a virtual environment with the pinned dependencies
# (constraints.txt); only binary wheels, so no compiler is needed or left behind.
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml constraints.txt ./
COPY runtime ./runtime
RUN python -m pip install setuptools==80.9.0 \
 && python -m pip wheel --no-deps --no-build-isolation --wheel-dir /wheels . \
 && python -m venv /opt/orca \
 && /opt/orca/bin/pip install --only-binary=:all: -c constraints.txt /wheels/orca_burst-*.whl \
 && /opt/orca/bin/pip uninstall --yes pip

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="orca" \
      org.opencontainers.image.description="ORCA runtime (orca run) and instance agent (orca agent)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
COPY --from=docker-cli /usr/local/bin/docker /usr/local/bin/docker
COPY --from=build /opt/orca /opt/orca
# The runtime's root filesystem is read-only: bytecode was compiled at install, none is
# written at run time; logs go unbuffered to stderr.
ENV PATH=/opt/orca/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN useradd --uid 65532 --user-group --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin orca \
 && orca --version && docker --version
# The kubelet API and /healthz, /readyz, /metrics (orca_infra.settings).
EXPOSE 10250 8080
USER 65532:65532
ENTRYPOINT ["orca"]
CMD ["run"]
