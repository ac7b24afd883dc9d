# The ps-integrations image: the official Airflow 3 image plus the project's pinned requirements,
# DAGs, plugins and include/ baked in (no _PIP_ADDITIONAL_REQUIREMENTS at start-up).
FROM apache/airflow:3.3.2-python3.11

USER root
# Debian's redis-tools gives the worker healthcheck a client; nothing else is needed at run time.
RUN apt-get update \
    && apt-get install -y --no-install-recommends redis-tools \
    && rm -rf /var/lib/apt/lists/*
USER airflow

COPY --chown=airflow:root requirements.txt constraints.txt /opt/ps/
RUN pip install --no-cache-dir -r /opt/ps/requirements.txt -c /opt/ps/constraints.txt

COPY --chown=airflow:root dags/ /opt/airflow/dags/
COPY --chown=airflow:root plugins/ /opt/airflow/plugins/
COPY --chown=airflow:root include/ /opt/airflow/include/
COPY --chown=airflow:root sandbox/ /opt/ps/sandbox/
# the sandbox reads the real services.yml and Zuora WSDL from include/ next to it
COPY --chown=airflow:root include/ /opt/ps/include/
# The library package lives in plugins/ (Airflow's layout) and finds include/ next to it
# (/opt/airflow/include); the sandbox is only used by the compose file's "sandbox" profile.
ENV PYTHONPATH=/opt/airflow/plugins:/opt/ps
