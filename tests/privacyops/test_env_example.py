"""Every environment variable the settings read is documented, in .env.example and docs/configuration.md.

The settings module is parsed, not imported: any call `env(...)`, `env.<type>(...)` whose first argument
is a string literal is a variable read. A new variable without its line in .env.example fails here.
"""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _variables_read_by_settings() -> set[str]:
    tree = ast.parse((ROOT / "privacyops" / "settings.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        reads_env = (isinstance(func, ast.Name) and func.id == "env") or (
            isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "env"
        )
        first = node.args[0]
        if reads_env and isinstance(first, ast.Constant) and isinstance(first.value, str):
            names.add(first.value)
    return names


def _variables_in_env_example() -> set[str]:
    text = (ROOT / ".env.example").read_text()
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", text, flags=re.MULTILINE))


def test_settings_parser_finds_the_variables_it_must():
    # Guards the parser itself: if it found nothing, the tests below would pass vacuously.
    names = _variables_read_by_settings()
    assert {"DEBUG", "SECRET_KEY", "DATABASE_URL", "REDIS_URL", "EMAIL_URL", "DPO_EMAIL", "AUDIT_ANCHOR_LOG"} <= names


def test_every_variable_the_settings_read_is_in_env_example():
    missing = _variables_read_by_settings() - _variables_in_env_example()
    assert not missing, f"add these to .env.example with a comment: {sorted(missing)}"


def test_env_example_documents_no_variable_the_settings_do_not_read():
    stale = _variables_in_env_example() - _variables_read_by_settings()
    assert not stale, f".env.example lists variables that privacyops/settings.py does not read: {sorted(stale)}"


def test_every_variable_in_env_example_has_a_comment_above_it():
    lines = (ROOT / ".env.example").read_text().splitlines()
    for index, line in enumerate(lines):
        match = re.match(r"^#?\s*([A-Z][A-Z0-9_]*)=", line)
        if match:
            above = lines[index - 1] if index else ""
            is_prose = above.startswith("#") and not re.match(r"^#?\s*[A-Z][A-Z0-9_]*=", above)
            assert is_prose, f"{match.group(1)} in .env.example needs a comment of its own saying what it does"


def test_every_variable_is_explained_in_docs_configuration():
    text = (ROOT / "docs" / "configuration.md").read_text()
    missing = {name for name in _variables_read_by_settings() if f"`{name}`" not in text}
    assert not missing, f"explain these in docs/configuration.md: {sorted(missing)}"
