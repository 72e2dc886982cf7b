# A project's scheduler worker (<compose project>-scheduler): the project's runner image (its
# packages, the host user's entry, the stack's mlstack package) with the scheduler image's Prefect
# venv (/opt/prefect) copied in. Scheduled jobs run here as they run in `docker compose run bash`.
ARG SCHEDULER_IMAGE
ARG BASE_IMAGE
FROM ${SCHEDULER_IMAGE} AS scheduler
FROM ${BASE_IMAGE}

COPY --from=scheduler /opt/prefect /opt/prefect
