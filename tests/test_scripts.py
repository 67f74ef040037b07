"""script/bootstrap, the set-up that script/server and script/test share, on a scratch virtualenv.

These run the real script with a real `python -m venv` and pip, against a requirements file with no
packages, so they need no network and leave the project's own .venv alone.
"""

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BOOTSTRAP = ROOT / "script" / "bootstrap"


def bootstrap(tmp_path: Path, requirements: Path, **env) -> subprocess.CompletedProcess:
    environment = {**os.environ, "VENV": str(tmp_path / "venv"), "PYTHON": sys.executable, **env}
    return subprocess.run(
        [str(BOOTSTRAP), str(requirements)], capture_output=True, text=True, env=environment, timeout=300, check=False
    )


@pytest.fixture
def empty_requirements(tmp_path) -> Path:
    path = tmp_path / "requirements-empty.txt"
    path.write_text("# nothing to install\n")
    return path


def test_scripts_are_executable():
    for name in ("script/server", "script/test", "script/bootstrap", ".ci/run"):
        mode = (ROOT / name).stat().st_mode
        assert mode & stat.S_IXUSR, f"{name} must be executable"


@pytest.mark.slow
def test_bootstrap_creates_the_virtualenv_then_skips_pip_while_requirements_are_unchanged(tmp_path, empty_requirements):
    first = bootstrap(tmp_path, empty_requirements)
    assert first.returncode == 0, first.stderr
    assert "creating the virtualenv" in first.stdout
    assert "installing requirements-empty.txt" in first.stdout
    assert (tmp_path / "venv" / "bin" / "python").exists()

    second = bootstrap(tmp_path, empty_requirements)
    assert second.returncode == 0, second.stderr
    assert "creating the virtualenv" not in second.stdout
    assert "unchanged since the last install: skipping pip" in second.stdout

    empty_requirements.write_text("# nothing to install, but the file changed\n")
    third = bootstrap(tmp_path, empty_requirements)
    assert third.returncode == 0, third.stderr
    assert "installing requirements-empty.txt" in third.stdout


def test_bootstrap_refuses_a_python_older_than_3_11_and_says_so(tmp_path, empty_requirements):
    old_python = tmp_path / "python3.9"
    old_python.write_text('#!/bin/sh\n[ "$1" = -V ] && echo "Python 3.9.18" && exit 0\nexit 1\n')
    old_python.chmod(0o755)

    result = bootstrap(tmp_path, empty_requirements, PYTHON=str(old_python))

    assert result.returncode != 0
    assert "Python 3.9.18" in result.stderr
    assert "needs Python 3.11 or newer" in result.stderr
    assert not (tmp_path / "venv").exists()


@pytest.mark.slow
def test_bootstrap_fails_when_the_pypi_requests_library_is_installed(tmp_path, empty_requirements):
    assert bootstrap(tmp_path, empty_requirements).returncode == 0
    site_packages = next((tmp_path / "venv" / "lib").glob("python3*/site-packages"))
    (site_packages / "requests").mkdir()
    (site_packages / "requests" / "__init__.py").write_text("")

    result = bootstrap(tmp_path, empty_requirements)

    assert result.returncode != 0
    assert "PyPI 'requests' library is installed" in result.stderr
