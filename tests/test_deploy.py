"""The generated deployment files: Kubernetes manifests and the container recipe.

No cluster and no Docker engine are needed. Manifests are validated offline against the
Kubernetes OpenAPI schemas bundled with kubernetes-validate (strict, so a misspelt field
fails), and the Dockerfile is parsed and checked for what the deploy docs promise.
"""

import json
import re
import shlex
from pathlib import Path

import kubernetes_validate
import pytest
from conftest import PYTHON_VERSIONS, load_yaml_documents

# A Service name is an RFC 1035 label; the same rule keeps every other name valid too.
DNS_LABEL = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
SECRET_WORDS = re.compile(r"KEY|SECRET|TOKEN|PASSWORD", re.IGNORECASE)


@pytest.fixture
def project(bake) -> Path:
    result = bake()
    assert result.exit_code == 0, result.exception
    return result.project_path


def manifests(project: Path) -> dict[str, dict]:
    resources = {}
    for path in sorted((project / "deploy" / "k8s").glob("*.yaml")):
        for document in load_yaml_documents(path):
            resources[document["kind"]] = document
    return resources


def container(project: Path) -> dict:
    (api,) = manifests(project)["Deployment"]["spec"]["template"]["spec"]["containers"]
    return api


def test_manifests_match_the_kubernetes_schemas(project):
    paths = sorted((project / "deploy" / "k8s").glob("*.yaml"))
    assert {path.name for path in paths} >= {
        "deployment.yaml",
        "service.yaml",
        "hpa.yaml",
        "models-pvc.yaml",
        "networkpolicy.yaml",
    }
    version = kubernetes_validate.latest_version()
    for path in paths:
        for document in load_yaml_documents(path):
            try:
                kubernetes_validate.validate(document, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                pytest.fail(f"{path.name}: {error.message}")


def test_names_are_valid_kubernetes_names_even_from_an_underscored_slug(bake):
    result = bake(project_slug="churn_model_")
    assert result.exit_code == 0, result.exception
    for kind, resource in manifests(result.project_path).items():
        name = resource["metadata"]["name"]
        assert DNS_LABEL.fullmatch(name), f"{kind}: invalid name {name!r}"
        assert name.startswith("churn-model")


def test_manifests_refer_to_each_other(project):
    resources = manifests(project)
    deployment, service = resources["Deployment"], resources["Service"]
    name = deployment["metadata"]["name"]
    assert name == "my-ml-project"
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    assert resources["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"] == name
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    claims = [v["persistentVolumeClaim"]["claimName"] for v in volumes if "emptyDir" not in v]
    assert claims == [resources["PersistentVolumeClaim"]["metadata"]["name"]] == [f"{name}-models"]


def test_deployment_probes_resources_and_secret(project):
    api = container(project)
    assert api["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert api["livenessProbe"]["httpGet"]["path"] == "/health"
    assert {"cpu", "memory"} <= api["resources"]["requests"].keys()
    assert {"cpu", "memory"} <= api["resources"]["limits"].keys()
    env = {item["name"]: item for item in api["env"]}
    assert not any("value" in item and SECRET_WORDS.search(name) for name, item in env.items())
    mounts = {m["mountPath"]: m for m in api["volumeMounts"]}
    assert mounts["/app/models"]["readOnly"] is True
    assert api["securityContext"]["readOnlyRootFilesystem"] is True


def test_both_keys_come_from_required_secrets(project):
    env = {item["name"]: item for item in container(project)["env"]}
    expected = {
        "SERVICE_API_KEY": ("my-ml-project-api-key", "api-key"),
        "MODEL_SIGNING_KEY": ("my-ml-project-model-signing-key", "signing-key"),
    }
    for variable, (secret, key) in expected.items():
        reference = env[variable]["valueFrom"]["secretKeyRef"]
        assert (reference["name"], reference["key"]) == (secret, key)
        assert reference.get("optional", False) is False, f"{variable} must not be optional"


def test_pods_get_no_service_account_token_and_bounded_scratch_volumes(project):
    pod = manifests(project)["Deployment"]["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    limits = {v["name"]: v["emptyDir"].get("sizeLimit") for v in pod["volumes"] if "emptyDir" in v}
    assert limits
    assert None not in limits.values(), limits


def test_the_rotated_prediction_log_fits_its_volume(project):
    pod = manifests(project)["Deployment"]["spec"]["template"]["spec"]
    env = {item["name"]: item.get("value") for item in container(project)["env"]}
    mounts = container(project)["volumeMounts"]
    [logs] = [m["name"] for m in mounts if m["mountPath"] == "/app/logs"]
    [size] = [v["emptyDir"]["sizeLimit"] for v in pod["volumes"] if v["name"] == logs]
    assert env["SERVICE_PREDICTION_LOG_PATH"].startswith("/app/logs/")
    units = {"Mi": 2**20, "Gi": 2**30}
    limit = int(size[:-2]) * units[size[-2:]]
    files = int(env["SERVICE_PREDICTION_LOG_BACKUPS"]) + 1
    assert files * int(env["SERVICE_PREDICTION_LOG_MAX_BYTES"]) < 0.8 * limit


def test_the_network_policy_admits_only_the_ingress_to_the_api_pods(project):
    resources = manifests(project)
    policy = resources["NetworkPolicy"]["spec"]
    labels = resources["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= labels.items()
    assert policy["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "api"
    assert policy["policyTypes"] == ["Ingress"]
    [rule] = policy["ingress"]
    [source] = rule["from"]  # namespace AND pod in one entry: both must match
    assert source["namespaceSelector"]["matchLabels"]
    assert source["podSelector"]["matchLabels"]
    assert "ingress" in json.dumps(source)
    assert rule["ports"] == [{"protocol": "TCP", "port": "http"}]
    [port] = container(project)["ports"]
    assert port["name"] == "http"


def dockerfile(project: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = (project / "Dockerfile").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line.strip() else "")
        for line in joined.splitlines()
        if line.strip()
    ]


def stages(instructions: list[tuple[str, str]]) -> dict[str, list[tuple[str, str]]]:
    """Instructions per stage, each stage including those of the stage it starts FROM."""
    result: dict[str, list[tuple[str, str]]] = {}
    current = None
    for instruction, args in instructions:
        if instruction == "FROM":
            image, _, current = args.partition(" AS ")
            current = current.strip()
            result[current] = list(result.get(image.strip(), []))
        if current is not None:
            result[current].append((instruction, args))
    return result


def test_dockerfile_is_multi_stage_non_root_and_healthy(project):
    instructions = dockerfile(project)
    by_stage = stages(instructions)
    final = list(by_stage)[-1]
    assert "builder" in by_stage
    assert len(by_stage) >= 2
    froms = [args for instruction, args in instructions if instruction == "FROM"]
    assert froms[0].startswith("python:${PYTHON_VERSION}-slim")
    assert ("ARG", f"PYTHON_VERSION={PYTHON_VERSIONS[0]}") in instructions
    for stage in (final, "with-models"):
        effective = dict(by_stage[stage])
        users = [args for instruction, args in by_stage[stage] if instruction == "USER"]
        assert users, f"{stage}: no USER"
        assert users[-1].split(":")[0] not in {"root", "0"}
        assert "/health" in effective["HEALTHCHECK"]
        assert "urllib" in effective["HEALTHCHECK"]
        assert effective["EXPOSE"] == "8000"
        command = json.loads(effective["CMD"])
        assert command[:3] == ["uvicorn", "my_ml_project.api:create_app", "--factory"]
        assert command[command.index("--host") + 1] == "0.0.0.0"
    assert any(
        instruction == "COPY" and "--from=builder" in args for instruction, args in by_stage[final]
    )


def test_dockerfile_bakes_no_secrets(project):
    for instruction, args in dockerfile(project):
        if instruction in {"ENV", "ARG"}:
            names = [word.split("=")[0] for word in shlex.split(args)]
            assert not [n for n in names if SECRET_WORDS.search(n)], f"{instruction} {args}"


def test_dockerignore_keeps_local_state_out(project):
    ignored = {
        line.strip()
        for line in (project / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", "data", "reports", "logs", "models", ".env"} <= ignored
    assert ".model-signing-key" in ignored
    assert not ignored & {"src", "pyproject.toml", "README.md", "LICENSE"}
    assert "configs" in ignored  # a source there may name a database; the service needs none


def test_configs_are_not_baked_into_the_image(project):
    copies = [args for instruction, args in dockerfile(project) if instruction == "COPY"]
    assert not [args for args in copies if "configs" in args]
