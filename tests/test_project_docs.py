"""The project's own documentation keeps up with what it documents: dependencies and the two commands."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pinned_packages() -> set[str]:
    names = set()
    for requirements in ("requirements.txt", "requirements-dev.txt"):
        for line in (ROOT / requirements).read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if not line or line.startswith("-"):
                continue
            match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==\S+$", line)
            assert match, f"{requirements}: '{line}' is not pinned to an exact version (name==version)"
            names.add(match.group(1))
    return names


def test_every_pinned_dependency_is_explained_in_docs_dependencies():
    text = (ROOT / "docs" / "dependencies.md").read_text().lower()
    missing = {name for name in _pinned_packages() if f"`{name.lower()}" not in text}
    assert not missing, f"say why each is needed in docs/dependencies.md: {sorted(missing)}"


def test_the_pypi_requests_library_is_never_a_requirement():
    # Our app `requests/` owns that import name (docs/dependencies.md).
    assert "requests" not in {name.lower() for name in _pinned_packages()}


def test_readme_shows_both_commands_before_anything_else_is_explained():
    readme = (ROOT / "README.md").read_text()
    first_section = readme.index("\n## ")
    assert "script/server" in readme[first_section : readme.index("\n## ", first_section + 1)]
    assert "script/test" in readme[first_section : readme.index("\n## ", first_section + 1)]
