"""docker-compose.yml, the Dockerfile and .env.example, checked without a Docker engine."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
ENV_EXAMPLE = (ROOT / ".env.example").read_text()
AIRFLOW_SERVICES = (
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-worker",
    "airflow-triggerer",
)


def env_example_keys() -> set[str]:
    return {line.split("=", 1)[0] for line in ENV_EXAMPLE.splitlines() if re.match(r"^[A-Z_][A-Z0-9_]*=", line)}


def test_the_official_celery_layout_and_the_csat_service():
    assert {"postgres", "redis", *AIRFLOW_SERVICES, "csat-service", "sandbox"} <= set(SERVICES)
    assert SERVICES["sandbox"]["profiles"] == ["sandbox"]
    commands = {name: SERVICES[name]["command"] for name in AIRFLOW_SERVICES[1:]}
    assert commands == {
        "airflow-apiserver": "api-server",
        "airflow-scheduler": "scheduler",
        "airflow-dag-processor": "dag-processor",
        "airflow-worker": "celery worker",
        "airflow-triggerer": "triggerer",
    }
    for name in AIRFLOW_SERVICES:
        assert SERVICES[name]["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert SERVICES[name]["image"].startswith("${PS_IMAGE")


def test_healthchecks_and_start_order():
    for name, service in SERVICES.items():
        if name != "airflow-init":
            assert "healthcheck" in service, f"{name} has no healthcheck"
    for name in AIRFLOW_SERVICES[1:]:
        depends = SERVICES[name]["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy"
        assert depends["redis"]["condition"] == "service_healthy"
        assert depends["airflow-init"]["condition"] == "service_completed_successfully"
    assert SERVICES["airflow-worker"]["depends_on"]["airflow-apiserver"]["condition"] == "service_healthy"
    assert "airflow db migrate" in " ".join(SERVICES["airflow-init"]["command"])


def test_every_referenced_path_exists():
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
        for env_file in service.get("env_file", []):
            path = env_file["path"] if isinstance(env_file, dict) else env_file
            assert (ROOT / path).exists() or path == ".env", f"{name}: env file {path}"
    for source in re.findall(r"^COPY (?:--\S+ )*(.+) \S+$", DOCKERFILE, re.M):
        for item in source.split():
            assert (ROOT / item).exists(), f"Dockerfile copies missing {item}"


def test_every_variable_is_in_env_example():
    text = (ROOT / "docker-compose.yml").read_text()
    used = set(re.findall(r"(?<!\$)\$\{([A-Z_][A-Z0-9_]*)", text))  # $${X} is the container's own variable
    with_default = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*):-", text))
    assert used - with_default <= env_example_keys()


def test_the_image_is_the_official_one_with_the_pinned_requirements():
    assert DOCKERFILE.splitlines()[2] == "FROM apache/airflow:3.3.2-python3.11" or (
        "FROM apache/airflow:3.3.2-python3.11" in DOCKERFILE
    )
    assert "pip install --no-cache-dir -r /opt/ps/requirements.txt -c /opt/ps/constraints.txt" in DOCKERFILE
    assert "_PIP_ADDITIONAL_REQUIREMENTS" not in (ROOT / "docker-compose.yml").read_text()
    pinned = [line for line in (ROOT / "requirements.txt").read_text().splitlines() if line and line[0].isalpha()]
    assert all("==" in line for line in pinned)
    airflow_pin = next(line for line in pinned if line.startswith("apache-airflow=="))
    assert airflow_pin == "apache-airflow==3.3.2"
    for directory in ("dags", "plugins", "include"):
        assert f"COPY --chown=airflow:root {directory}/ /opt/airflow/{directory}/" in DOCKERFILE


def test_connection_hosts_are_service_names():
    for line in [*ENV_EXAMPLE.splitlines(), *(ROOT / "deploy" / "sandbox.env").read_text().splitlines()]:
        if not line.startswith("AIRFLOW_CONN_"):
            continue
        for host in re.findall(r"://(?:[^@/\s\"]*@)?([a-z][a-z0-9-]*)[:/\"]", line):
            if host.endswith("example") or "." in host:
                continue
            assert host in SERVICES, f"{line.split('=')[0]} points at {host}, not a compose service"


SECRET_NAME = re.compile(r"PASSWORD|SECRET|FERNET|TOKEN|_KEY")


def test_no_secret_values_in_the_compose_file_or_the_image():
    for name, service in SERVICES.items():
        environment = service.get("environment") or {}
        for key, value in environment.items():
            if SECRET_NAME.search(key):
                assert str(value).startswith("${"), f"{name}: {key} must come from .env"
            for password in re.findall(r"://[^:@/\s]*:([^@\s]*)@", str(value)):
                assert password.startswith("${"), f"{name}: {key} embeds a password"
    for line in DOCKERFILE.splitlines():
        assert not (line.startswith(("ENV", "ARG")) and SECRET_NAME.search(line)), line


def test_env_example_holds_placeholders_only():
    for line in ENV_EXAMPLE.splitlines():
        if not re.match(r"^[A-Z_][A-Z0-9_]*=", line):
            continue
        key, value = line.split("=", 1)
        if SECRET_NAME.search(key):
            assert value == "", f".env.example: {key} must be left empty"
        for password in re.findall(r'"password": "([^"]*)"|://[^:@/\s]*:([^@\s]*)@', value):
            assert "".join(password).startswith(("REPLACE_WITH", "...")), f".env.example: {key} holds a password"
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()


def _stage(name: str) -> str:
    """The Dockerfile's lines from ``FROM ... AS name`` to the next ``FROM``."""
    blocks = re.split(r"^(?=FROM )", DOCKERFILE, flags=re.MULTILINE)
    [block] = [b for b in blocks if re.match(rf"FROM \S+ AS {name}\b", b)]
    return block


def _requirement_names(filename: str) -> set[str]:
    names = set()
    for line in (ROOT / filename).read_text().splitlines():
        if line and line[0].isalpha():
            names.add(re.split(r"[\[=<>]", line)[0].lower())
    return names


DEVELOPMENT_ONLY = {"pytest", "pytest-timeout", "selenium", "ruff", "mypy", "moto", "aiosmtpd", "trustme", "lark"}


def test_the_production_image_carries_no_test_lint_or_sandbox_dependency():
    runtime = _requirement_names("requirements.txt")
    assert not runtime & DEVELOPMENT_ONLY
    assert not {name for name in runtime if name.startswith("types-")}
    assert (
        _requirement_names("requirements-sandbox.txt") | _requirement_names("requirements-dev.txt") >= DEVELOPMENT_ONLY
    )
    production = _stage("runtime")
    assert "requirements-sandbox" not in production and "requirements-dev" not in production
    assert "sandbox/" not in production.replace("# ", "")
    assert DOCKERFILE.rstrip().splitlines()[-1] == "FROM runtime"  # the default target is the product
    assert "COPY --chown=airflow:root sandbox/ /opt/ps/sandbox/" in _stage("sandbox")
    assert SERVICES["sandbox"]["build"]["target"] == "sandbox"
    assert COMPOSE["x-airflow-common"]["build"]["target"] == "runtime"


def test_one_constraints_file_pins_every_requirement_set():
    pinned = {
        line.split("==")[0].lower() for line in (ROOT / "constraints.txt").read_text().splitlines() if "==" in line
    }
    for filename in ("requirements.txt", "requirements-sandbox.txt", "requirements-dev.txt"):
        assert _requirement_names(filename) <= pinned, filename
    assert "-r requirements.txt" in (ROOT / "requirements-sandbox.txt").read_text()
    assert "-r requirements-sandbox.txt" in (ROOT / "requirements-dev.txt").read_text()


def test_the_csat_service_sees_each_customer_through_its_proxy_only():
    """Per-client rate limits need the customer's address: the service is reached only through
    csat-proxy (Caddy, TLS), whose X-Forwarded-For it trusts - and no other container's."""
    import ipaddress

    service, proxy = SERVICES["csat-service"], SERVICES["csat-proxy"]
    assert "ports" not in service and service["expose"] == [8090]
    proxy_address = proxy["networks"]["csat-edge"]["ipv4_address"]
    assert service["environment"]["FORWARDED_ALLOW_IPS"] == proxy_address
    [subnet] = COMPOSE["networks"]["csat-edge"]["ipam"]["config"]
    assert ipaddress.ip_address(proxy_address) in ipaddress.ip_network(subnet["subnet"])
    assert {name for name, s in SERVICES.items() if "csat-edge" in (s.get("networks") or {})} == {
        "csat-service",
        "csat-proxy",
    }
    assert "default" in service["networks"]  # postgres and redis
    assert proxy["depends_on"]["csat-service"]["condition"] == "service_healthy"
    assert sorted(proxy["ports"]) == ["443:443", "80:80"]
    lines = (ROOT / "deploy" / "csat-proxy" / "Caddyfile").read_text().splitlines()
    caddyfile = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    assert "{$PS_CSAT_PUBLIC_URL} {" in caddyfile and "reverse_proxy csat-service:8090" in caddyfile
    assert "trusted_proxies" not in caddyfile  # a client's own X-Forwarded-For is not passed on
    assert proxy["environment"]["PS_CSAT_PUBLIC_URL"].startswith("${PS_CSAT_PUBLIC_URL")
