"""The Kubernetes overlay with PostgreSQL (deploy/kubernetes-database/): it builds, validates against the pinned
Kubernetes, and wires what the schemas cannot check: one migration Job on the servers' image, secrets as files
only, PostgreSQL's volume and probes, and network policies that let only servers and the Job reach it."""

import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from test_kubernetes import KUBERNETES_VERSION, env_of

from server.settings import Settings
from support import ROOT

pytestmark = pytest.mark.deploy

OVERLAY = ROOT / "deploy" / "kubernetes-database"


@pytest.fixture(scope="module")
def resources(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], dict[str, Any]]:
    """(kind, name) → resource of ``kubectl kustomize deploy/kubernetes-database``."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("no kubectl: apt-get install kubernetes-client (make test does, as root)")
    result = subprocess.run([kubectl, "kustomize", str(OVERLAY)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    documents = [document for document in yaml.safe_load_all(result.stdout) if document]
    return {(document["kind"], document["metadata"]["name"]): document for document in documents}


def test_every_resource_validates_against_the_pinned_kubernetes(resources: dict[tuple[str, str], Any]) -> None:
    assert {("StatefulSet", "postgres"), ("Service", "postgres"), ("Job", "xai-live-migrate"),
            ("NetworkPolicy", "postgres"), ("NetworkPolicy", "xai-live-migrate"), ("Deployment", "xai-live")} \
        <= set(resources)
    for resource in resources.values():
        kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)


def test_one_migration_job_on_the_servers_image(resources: dict[tuple[str, str], Any]) -> None:
    job = resources[("Job", "xai-live-migrate")]["spec"]["template"]["spec"]
    [migrate] = job["containers"]
    [server] = resources[("Deployment", "xai-live")]["spec"]["template"]["spec"]["containers"]
    assert migrate["command"] == ["python", "-m", "server", "migrate"]
    assert migrate["image"] == server["image"] == "xai-live:0.1.0"
    assert job["restartPolicy"] == "OnFailure"
    assert env_of(migrate)["DATABASE_URL_FILE"] == env_of(server)["DATABASE_URL_FILE"]
    # The servers themselves never migrate a shared database (server.teaching.migrate.prepare): only the Job.
    assert "migrate" not in " ".join(server.get("command", []) + server.get("args", []))


def test_secrets_reach_the_containers_as_files_only(resources: dict[tuple[str, str], Any]) -> None:
    for kind, name in (("Deployment", "xai-live"), ("Job", "xai-live-migrate"), ("StatefulSet", "postgres")):
        pod = resources[(kind, name)]["spec"]["template"]["spec"]
        for container in pod["containers"]:
            assert all("valueFrom" not in item for item in container.get("env", [])), (kind, name)
            mounted = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
            secrets = {volume["name"] for volume in pod["volumes"] if "secret" in volume}
            assert secrets and secrets <= set(mounted), (kind, name)
            for item in container.get("env", []):
                if item["name"].endswith("_FILE"):
                    assert any(item["value"].startswith(mounted[s] + "/") for s in secrets), item
    server_env = env_of(resources[("Deployment", "xai-live")]["spec"]["template"]["spec"]["containers"][0])
    settings = Settings.from_env(server_env)  # the server accepts this environment
    assert settings.database_url_file == Path("/run/secrets/database/url")
    assert settings.curator_password_file == Path("/run/secrets/curator/password")
    assert settings.curator_session_secret_file == Path("/run/secrets/curator/session-key")


def test_postgres_keeps_its_data_and_only_servers_and_the_job_reach_it(resources: dict[tuple[str, str], Any]) -> None:
    statefulset = resources[("StatefulSet", "postgres")]["spec"]
    [claim] = statefulset["volumeClaimTemplates"]
    [container] = statefulset["template"]["spec"]["containers"]
    assert {"name": "data", "mountPath": "/var/lib/postgresql/data"} in container["volumeMounts"]
    assert claim["metadata"]["name"] == "data" and claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert container["readinessProbe"]["exec"]["command"][0] == "pg_isready"
    assert container["securityContext"]["readOnlyRootFilesystem"]
    sources = resources[("NetworkPolicy", "postgres")]["spec"]["ingress"][0]["from"]
    assert {source["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for source in sources} == \
        {"server", "migrate"}
    for name in ("xai-live", "xai-live-migrate"):
        egress = resources[("NetworkPolicy", name)]["spec"]["egress"]
        assert {port["port"] for rule in egress for port in rule["ports"]} == {5432, 53}, name
    # The servers' and the Job's pod labels match what the policy admits.
    labels = resources[("Deployment", "xai-live")]["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] == "server"
    job_labels = resources[("Job", "xai-live-migrate")]["spec"]["template"]["metadata"]["labels"]
    assert job_labels["app.kubernetes.io/component"] == "migrate"
