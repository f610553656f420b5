"""The production files, checked without a Docker engine: the compose file's services,
images, configuration, health checks and commands (each must exist in the nd73 CLI), the
proxy's upstreams and the image's build."""
from __future__ import annotations

import re
import shlex

import yaml

from api.cli import main as cli

from conftest import PROJECT

DOCKER = PROJECT / "docker"
APP_SERVICES = ("migrate", "api1", "api2", "scheduler")


def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text(encoding="utf-8"))


def _nd73_invocations(service: dict) -> list[list[str]]:
    command = service.get("command", [])
    entrypoint = service.get("entrypoint")
    if entrypoint == ["sh", "-c"]:
        script = " ".join(command)
        return [shlex.split(part.strip())[1:] for part in re.split(r"&&|;", script)
                if part.strip().startswith("nd73")]
    return [list(command)] if command else [["serve"]]


def _exists_in_cli(arguments: list[str]) -> bool:
    group = cli
    for word in arguments:
        if word.startswith("-") or "/" in word:
            break
        if not hasattr(group, "commands"):
            return True                       # a command: the rest are its arguments
        sub = group.commands.get(word)
        if sub is None:
            return False
        group = sub
    return group is not cli


def test_compose_has_the_production_shape():
    services = compose()["services"]
    assert {"db", "migrate", "api1", "api2", "scheduler", "proxy"} <= set(services)
    assert services["db"]["image"].startswith("postgres:")
    assert services["proxy"]["image"].startswith("nginx:")
    assert services["scheduler"]["deploy"]["replicas"] >= 1
    for name in APP_SERVICES:
        assert services[name].get("build") or services[name].get("image"), name
        assert services[name]["build"]["dockerfile"] == "docker/Dockerfile"
    assert "pgdata" in compose()["volumes"]
    assert any(v.startswith("pgdata:") for v in services["db"]["volumes"])


def test_configuration_comes_from_the_environment_and_secrets_are_not_literals():
    services = compose()["services"]
    for name in APP_SERVICES:
        environment = services[name]["environment"]
        assert environment["ND73_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert re.fullmatch(r"\$\{ND73_SECRET_KEY:\?.+\}", environment["ND73_SECRET_KEY"])
        assert "${POSTGRES_PASSWORD:?" in environment["ND73_DATABASE_URL"]
    assert services["db"]["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD")


def test_every_long_running_service_has_a_health_check():
    services = compose()["services"]
    for name in ("db", "api1", "api2", "scheduler", "proxy"):
        check = services[name]["healthcheck"]
        assert check["test"] and check["interval"], name
    assert any("/readyz" in part for part in services["api1"]["healthcheck"]["test"])
    assert services["api1"]["depends_on"]["migrate"]["condition"] == \
        "service_completed_successfully"


def test_every_command_the_compose_file_runs_exists_in_the_cli():
    services = compose()["services"]
    invocations = [args for name in APP_SERVICES for args in _nd73_invocations(services[name])]
    assert ["serve"] in invocations and ["scheduler"] in invocations
    assert ["db", "upgrade"] in invocations and ["check-config"] in invocations
    for arguments in invocations:
        assert _exists_in_cli(arguments), arguments
    assert not _exists_in_cli(["no-such-command"]) and not _exists_in_cli(["db", "nope"])
    for name in ("scheduler",):
        test = services[name]["healthcheck"]["test"]
        assert test[:2] == ["CMD", "nd73"] and _exists_in_cli(test[2:])


def test_proxy_balances_both_replicas():
    config = (DOCKER / "nginx.conf").read_text()
    assert re.search(r"server api1:8000", config) and re.search(r"server api2:8000", config)
    assert "proxy_pass http://nd73_api" in config


def test_image_is_multi_stage_slim_and_runs_as_a_user():
    dockerfile = (DOCKER / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)", dockerfile, re.M)
    assert len(stages) == 2 and stages[1].startswith("python:3.11-slim")
    assert "npm ci --prefix api/web" in dockerfile
    assert "COPY --from=assets" in dockerfile
    user = re.findall(r"^USER (\S+)", dockerfile, re.M)
    assert user and user[-1] not in ("root", "0")
    assert 'ENTRYPOINT ["nd73"]' in dockerfile and "HEALTHCHECK" in dockerfile
    assert "ND73_SECRET_KEY" not in dockerfile and "PASSWORD" not in dockerfile


def test_image_installs_the_locked_versions_only():
    dockerfile = (DOCKER / "Dockerfile").read_text()
    installs = re.findall(r"^RUN pip install (.*)$", dockerfile, re.M)
    assert installs[0].startswith("--no-cache-dir --require-hashes -r requirements.lock")
    assert re.search(r"^COPY requirements\.lock ", dockerfile, re.M)
    assert all("--no-deps" in line for line in installs[1:]) and len(installs) == 2
