"""Every document of docker/k8s/*.yaml against its schema, offline: core kinds (Secret, ConfigMap, PVC) with
kubernetes-validate (its package ships the Kubernetes OpenAPI schemas), ray.io kinds with the
openAPIV3Schema of KubeRay's CRDs (vendored in schemas/kuberay, see its README). A manifest of any other
kind fails, so that nothing goes unchecked; broken manifests must fail (negative cases)."""

import copy
import functools
import shlex
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = sorted((ROOT / "docker" / "k8s").glob("*.yaml"))
CRDS = Path(__file__).resolve().parent / "schemas" / "kuberay"
KUBERNETES_VERSION = "1.33"  # core kinds are checked against this release's schemas (strict: no unknown fields)
CORE_KINDS = {"Secret", "ConfigMap", "PersistentVolumeClaim"}

Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def documents(path: Path) -> list[dict]:
    return [document for document in yaml.load_all(path.read_text(), Loader=Loader) if document]


@functools.cache
def crd_schemas() -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> the CRD version's openAPIV3Schema."""
    schemas = {}
    for path in sorted(CRDS.glob("*.yaml")):
        for crd in documents(path):
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                schemas[(f"{group}/{version['name']}", kind)] = version["schema"]["openAPIV3Schema"]
    return schemas


def check(document: dict) -> None:
    """Raise when `document` does not match its kind's schema."""
    kind, api_version = document.get("kind"), document.get("apiVersion")
    if api_version == "v1" and kind in CORE_KINDS:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        return
    if (api_version, kind) not in crd_schemas():
        raise LookupError(f"no schema for {api_version} {kind}: add one before adding such a manifest")
    validator(api_version, kind).validate(document)


@functools.cache
def validator(api_version: str, kind: str) -> jsonschema.Draft4Validator:
    """CRD schemas are OpenAPI v3 structural schemas; Draft 4 reads their keywords (type, properties,
    required, enum, items, additionalProperties) and ignores the x-kubernetes-* extensions. The API
    server drops unknown fields silently (a misspelt field would vanish), so here they fail."""
    return jsonschema.Draft4Validator(_closed(crd_schemas()[(api_version, kind)]))


def _closed(schema: dict) -> dict:
    """The schema with unknown fields forbidden wherever it lists properties (the API server prunes
    them silently, which would hide a misspelt field), except where it preserves unknown fields."""
    schema = copy.deepcopy(schema)

    def close(node):
        if isinstance(node, dict):
            if "properties" in node and "additionalProperties" not in node and not node.get("x-kubernetes-preserve-unknown-fields"):
                node["additionalProperties"] = False
            for value in node.values():
                close(value)
        elif isinstance(node, list):
            for value in node:
                close(value)

    close(schema)  # metadata is `type: object` with no properties in a CRD: the API server checks it
    return schema


def all_documents() -> list[tuple[str, dict]]:
    return [(f"{path.name}:{index}:{document.get('kind')}", document) for path in MANIFESTS for index, document in enumerate(documents(path))]


def test_there_are_manifests():
    kinds = {document["kind"] for _, document in all_documents()}
    assert {"RayCluster", "RayJob", "Secret", "ConfigMap", "PersistentVolumeClaim"} <= kinds


@pytest.mark.parametrize("name,document", all_documents(), ids=[name for name, _ in all_documents()])
def test_manifest_matches_its_schema(name, document):
    check(document)


def by_kind(kind: str, name: str | None = None) -> dict:
    (document,) = [d for _, d in all_documents() if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    return document


NAMES = {"RayJob": "crawlmill-run", "Secret": "crawlmill-ray-token"}


@pytest.mark.parametrize(
    "kind,breakage",
    [
        ("RayCluster", lambda d: d["spec"]["authOptions"].update(mode="password")),  # not in the enum
        ("RayCluster", lambda d: d["spec"]["headGroupSpec"].update(rayStartParam={})),  # misspelt field
        ("RayCluster", lambda d: d["spec"]["workerGroupSpecs"][0].update(replicas="4")),  # wrong type
        ("RayJob", lambda d: d["spec"].update(entrypoint=["crawlmill", "run"])),  # a string, not a list
        ("RayJob", lambda d: d["spec"]["submitterPodTemplate"]["spec"]["containers"][0].pop("name")),  # required
        ("ConfigMap", lambda d: d.update(data={"run.yaml": 3})),  # values are strings
        ("Secret", lambda d: d.update(stringdata=d.pop("stringData"))),  # misspelt field
        ("PersistentVolumeClaim", lambda d: d["spec"].update(accessModes="ReadWriteMany")),  # a list
    ],
)
def test_a_broken_manifest_fails(kind, breakage):
    document = copy.deepcopy(by_kind(kind, NAMES.get(kind)))
    check(document)
    breakage(document)
    with pytest.raises((jsonschema.ValidationError, kubernetes_validate.ValidationError)):
        check(document)


def test_an_unknown_kind_fails():
    with pytest.raises(LookupError):
        check({"apiVersion": "ray.io/v1", "kind": "RayServe", "metadata": {"name": "x"}, "spec": {}})


def test_the_ray_token_is_wired():
    """KubeRay's authOptions put RAY_AUTH_MODE/RAY_AUTH_TOKEN in every Ray container and in the RayJob's
    submitter; the Secret it names is the one secrets.example.yaml describes (key auth_token)."""
    cluster = by_kind("RayCluster")
    assert cluster["spec"]["authOptions"] == {"mode": "token", "secretName": "crawlmill-ray-token"}
    assert cluster["spec"]["rayVersion"] == "2.60.0"
    secrets = {d["metadata"]["name"]: d for _, d in all_documents() if d["kind"] == "Secret"}
    assert "auth_token" in secrets["crawlmill-ray-token"]["stringData"]
    assert by_kind("RayJob", "crawlmill-run")["spec"]["clusterSelector"] == {"ray.io/cluster": cluster["metadata"]["name"]}
    train = by_kind("RayJob", "crawlmill-train")["spec"]["rayClusterSpec"]
    assert train["authOptions"] == {"mode": "token"}  # KubeRay generates the token of its own cluster
    assert train["rayVersion"] == "2.60.0"


def test_a_job_on_an_existing_cluster_has_no_backoff_limit():
    """KubeRay rejects backoffLimit with clusterSelector (a check of its webhook, not of the schema)."""
    for _, document in all_documents():
        if document["kind"] == "RayJob" and "clusterSelector" in document["spec"]:
            assert "backoffLimit" not in document["spec"]


def test_the_job_runs_the_mounted_config():
    job, cluster, config = by_kind("RayJob", "crawlmill-run"), by_kind("RayCluster"), by_kind("ConfigMap")
    command = shlex.split(job["spec"]["entrypoint"])
    assert command[:2] == ["crawlmill", "run"]
    path = Path(command[2])
    head = cluster["spec"]["headGroupSpec"]["template"]["spec"]
    (mount,) = [m for m in head["containers"][0]["volumeMounts"] if m["mountPath"] == str(path.parent)]
    (volume,) = [v for v in head["volumes"] if v["name"] == mount["name"]]
    assert volume["configMap"]["name"] == config["metadata"]["name"]
    run = yaml.safe_load(config["data"][path.name])
    assert run["output_dir"].startswith("s3://")


def test_images_are_the_projects():
    for _, document in all_documents():
        text = yaml.safe_dump(document)
        for line in text.splitlines():
            if line.strip().startswith("image:"):
                assert line.split("image:")[1].strip().startswith("crawlmill-"), line


def test_the_training_job_runs_the_gpu_image_on_gpus():
    job = by_kind("RayJob", "crawlmill-train")["spec"]
    assert shlex.split(job["entrypoint"])[:2] == ["crawlmill", "train"]
    workers = job["rayClusterSpec"]["workerGroupSpecs"]
    (container,) = workers[0]["template"]["spec"]["containers"]
    assert container["image"].startswith("crawlmill-train-gpu:")
    assert "nvidia.com/gpu" in container["resources"]["limits"]
