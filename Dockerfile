# The ps-integrations images, from the official Airflow 3 image with the project's pinned requirements
# baked in (no _PIP_ADDITIONAL_REQUIREMENTS at start-up):
#   runtime (the default target): the product - requirements.txt, dags/, plugins/, include/; no test,
#            lint or sandbox dependency;
#   sandbox: runtime plus the stand-ins (requirements-sandbox.txt, sandbox/), for the compose file's
#            "sandbox" profile only.
FROM apache/airflow:3.3.2-python3.11 AS runtime

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
# The library package lives in plugins/ (Airflow's layout) and finds include/ next to it (/opt/airflow/include).
ENV PYTHONPATH=/opt/airflow/plugins

FROM runtime AS sandbox
COPY --chown=airflow:root requirements-sandbox.txt /opt/ps/
RUN pip install --no-cache-dir -r /opt/ps/requirements-sandbox.txt -c /opt/ps/constraints.txt
COPY --chown=airflow:root sandbox/ /opt/ps/sandbox/
# the sandbox reads the real services.yml and Zuora WSDL from include/ next to it
COPY --chown=airflow:root include/ /opt/ps/include/
ENV PYTHONPATH=/opt/airflow/plugins:/opt/ps

# The default target: the production image.
FROM runtime
