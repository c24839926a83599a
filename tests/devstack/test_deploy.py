"""What Cloud Build deploys: each function's folder works on its own, and cloudbuild.yaml gives
every function the settings it requires."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from devstack import functions
from devstack.build import build, runtime_requirements
from shared.config import Settings
from tests.conftest import ROOT

CLOUDBUILD = yaml.safe_load((ROOT / "cloudbuild.yaml").read_text())


@pytest.fixture(scope="module")
def deployed_venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, list[Path]]]:
    """The three built folders and a fresh virtualenv with their requirements.txt installed."""
    base = tmp_path_factory.mktemp("deploy")
    folders = build(base / "functions")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    for folder in folders:
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
             "-r", str(folder / "requirements.txt")],
            check=True, timeout=600,
        )  # fmt: skip
    yield python, folders


def test_folders_hold_main_requirements_and_shared(deployed_venv: tuple[Path, list[Path]]) -> None:
    _, folders = deployed_venv
    assert [f.name for f in folders] == ["webhook", "send", "cleanup"]
    for folder in folders:
        assert (folder / "main.py").read_text() == (
            ROOT / "functions" / folder.name / "main.py"
        ).read_text()
        assert (folder / "shared" / "inbound.py").exists()
        assert (folder / "requirements.txt").read_text().split() == runtime_requirements()
        assert all("==" in line for line in runtime_requirements())


@pytest.mark.parametrize(
    ("name", "method", "path", "expected"),
    [("webhook", "GET", "/health", 200), ("send", "POST", "/messages", 401), ("cleanup", "POST", "/", 401),
     ("cleanup", "GET", "/", 405)],
)  # fmt: skip
def test_each_folder_runs_alone(
    deployed_venv: tuple[Path, list[Path]],
    settings_env: dict[str, str],
    name: str,
    method: str,
    path: str,
    expected: int,
) -> None:
    python, folders = deployed_venv
    folder = next(f for f in folders if f.name == name)
    port = functions.free_port()
    env = {**settings_env, "PYTHONPATH": ""}
    process = functions.serve(name, port, env, source=folder / "main.py", python=str(python))
    try:
        functions.wait_until_listening(port, process)
        response = requests.request(method, f"http://127.0.0.1:{port}{path}", timeout=10)
        assert response.status_code == expected
        # The code came from the folder, not from this checkout.
        import_check = subprocess.run(
            [str(python), "-c", "import shared, sys; print(shared.__file__)"],
            cwd=folder, capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert import_check.stdout.strip().startswith(str(folder))
    finally:
        functions.stop(process)


def _required_settings(name: str) -> set[str]:
    tree = ast.parse((ROOT / "functions" / name / "main.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "REQUIRED_SETTINGS" for t in node.targets
        ):
            value: Any = ast.literal_eval(node.value)
            return {v.upper() for v in value}
    raise AssertionError(f"{name} declares no REQUIRED_SETTINGS")


def _deploy_step(name: str) -> dict[str, Any]:
    return next(s for s in CLOUDBUILD["steps"] if s["id"] == f"deploy-{name}")


def _provided(step: dict[str, Any]) -> set[str]:
    names: set[str] = set()
    for arg in step["args"]:
        for flag in ("--set-secrets=", "--set-env-vars="):
            if arg.startswith(flag):
                value = arg[len(flag) :]
                separator = ","
                if value.startswith("^"):
                    separator, value = value[1], value[3:]
                names |= {pair.split("=", 1)[0] for pair in value.split(separator)}
    return names


@pytest.mark.parametrize("name", functions.FUNCTIONS)
def test_cloudbuild_gives_each_function_what_it_requires(name: str) -> None:
    step = _deploy_step(name)
    provided = _provided(step)
    assert _required_settings(name) <= provided
    if name == "send":
        assert "SUPABASE_JWT_SECRET" in provided or "SUPABASE_URL" in provided
    if name in ("webhook", "cleanup"):
        assert {"OPENAI_API_KEY", "UPSTASH_REDIS_REST_URL", "UPSTASH_REDIS_REST_TOKEN"} <= provided
    secrets = next(a for a in step["args"] if a.startswith("--set-secrets="))
    assert ":latest" not in secrets and re.search(r":\$\{_V_[A-Z_]+\}", secrets)
    args = step["args"]
    assert "--gen2" in args and f"--entry-point={name}" in args
    assert f"--source=build/functions/{name}" in args
    assert ("--no-allow-unauthenticated" in args) == (name == "cleanup")
    timeout = int(
        next(a for a in args if a.startswith("--timeout=")).removeprefix("--timeout=").rstrip("s")
    )
    assert timeout > 15 if name == "webhook" else timeout > 0


def test_cloudbuild_steps_refer_to_files_that_exist() -> None:
    substitutions = set(CLOUDBUILD["substitutions"])
    for step in CLOUDBUILD["steps"]:
        text = " ".join(str(a) for a in step.get("args", []))
        for module in re.findall(r"python -m ([\w.]+)", text):
            assert (ROOT / (module.replace(".", "/") + ".py")).exists(), module
        for path in re.findall(r"--source=([\w/.-]+)", text):
            assert path.startswith("build/functions/")
            assert (ROOT / "functions" / Path(path).name / "main.py").exists(), path
        if "make test" in text:
            assert (ROOT / "Makefile").exists() and "test:" in (ROOT / "Makefile").read_text()
        for used in re.findall(r"\$\{(_[A-Z_]+)\}", text):
            assert used in substitutions, used
        for secret in step.get("secretEnv", []):
            names = [s["env"] for s in CLOUDBUILD["availableSecrets"]["secretManager"]]
            assert secret in names


# Supavisor's client connections on Supabase's smallest computes (Nano, Micro).
SMALLEST_PLAN_POOLER_CLIENTS = 200


def _flag(step: dict[str, Any], name: str) -> str | None:
    return next((a.split("=", 1)[1] for a in step["args"] if a.startswith(f"--{name}=")), None)


def _env_var(step: dict[str, Any], name: str) -> str | None:
    env = _flag(step, "set-env-vars") or ""
    separator = ";" if env.startswith("^;^") else ","
    pairs = (item.split("=", 1) for item in env.removeprefix("^;^").split(separator) if "=" in item)
    return dict(pairs).get(name)


def test_pooler_connections_fit_the_smallest_plan() -> None:
    """Every instance of every function may hold DATABASE_POOL_SIZE pooler connections."""
    default_pool = Settings.model_fields["database_pool_size"].default
    total = 0
    for name in ("webhook", "send", "cleanup"):
        step = _deploy_step(name)
        instances = int(_flag(step, "max-instances") or 100)  # Cloud Run's default maximum
        total += instances * int(_env_var(step, "DATABASE_POOL_SIZE") or default_pool)
    assert total <= SMALLEST_PLAN_POOLER_CLIENTS


@pytest.mark.parametrize("name", ["webhook", "send", "cleanup"])
def test_deployed_functions_run_as_production(name: str) -> None:
    assert _env_var(_deploy_step(name), "ENVIRONMENT") == "production"


def test_console_config_written_at_deploy_is_what_the_console_reads() -> None:
    import json

    from devstack.console import config_js

    step = next(s for s in CLOUDBUILD["steps"] if s["id"] == "publish-console")
    script = " ".join(str(a) for a in step["args"])
    keys = json.loads(config_js("u", "k", "f").split("=", 1)[1].strip().rstrip(";"))
    reader = (ROOT / "dashboard" / "src" / "api.js").read_text()
    for key in keys:
        assert f'"{key}"' in script, key  # cloudbuild writes it
        assert f"config.{key}" in reader, key  # the console reads it
    assert "${_CONSOLE_BUCKET}" in script
