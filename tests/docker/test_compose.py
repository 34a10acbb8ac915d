"""docker/compose.yaml against the Compose specification's JSON schema (vendored in schemas/; no Docker
engine runs here, so compose itself never reads the file in CI), and the wiring the schema cannot see:
images built from Dockerfiles that exist, the Ray token on every Ray process and client, dags/ mounted."""

import copy
import json
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker" / "compose.yaml"
SCHEMA = Path(__file__).resolve().parent / "schemas" / "compose-spec.json"


def load_compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def validate(document: dict) -> None:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.validate(document, schema, cls=jsonschema.Draft7Validator)


def test_compose_file_matches_the_compose_spec():
    validate(load_compose())


def test_a_broken_compose_file_fails_validation():
    broken = copy.deepcopy(load_compose())
    broken["services"]["ray-head"]["ports"] = {"8265": 8265}  # ports is a list
    with pytest.raises(jsonschema.ValidationError):
        validate(broken)
    broken = copy.deepcopy(load_compose())
    broken["services"]["ray-worker"]["restart_policy"] = "always"  # not a service key
    with pytest.raises(jsonschema.ValidationError):
        validate(broken)


def test_services_build_from_dockerfiles_that_exist():
    services = load_compose()["services"]
    assert {"ray-head", "ray-worker", "airflow"} <= set(services)
    for name, service in services.items():
        build = service["build"]
        context = (COMPOSE.parent / build["context"]).resolve()
        assert context == ROOT, f"{name}: build from the repository root, as the Dockerfiles' COPY lines expect"
        assert (context / build["dockerfile"]).is_file(), f"{name}: {build['dockerfile']} does not exist"


def test_every_service_has_the_ray_token():
    """Ray 2.60 enforces token auth: head, workers and the Airflow client all need mode and token."""
    for name, service in load_compose()["services"].items():
        env = service["environment"]
        assert env["RAY_AUTH_MODE"] == "token", name
        assert env["RAY_AUTH_TOKEN"].startswith("${RAY_AUTH_TOKEN:?"), f"{name}: the token comes from docker/.env, required"


def test_the_token_file_is_not_committed():
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert "docker/.env" in ignored
    example = (ROOT / "docker" / ".env.example").read_text()
    assert "RAY_AUTH_TOKEN=\n" in example  # no value in the repository


def test_airflow_mounts_the_dags_and_reaches_the_head():
    airflow = load_compose()["services"]["airflow"]
    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in airflow["volumes"]}
    assert (COMPOSE.parent / mounts["/opt/airflow/dags"]).resolve() == ROOT / "dags"
    assert airflow["environment"]["CRAWLMILL_RAY_ADDRESS"] == "http://ray-head:8265"
    assert "data" in {volume.split(":")[0] for volume in airflow["volumes"]}
