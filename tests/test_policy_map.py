"""Every clause of the policy map is proven by at least one test that names it.

The IDs come from the map itself (docs/policy-map.md, one table row per clause). The test names come from
the suite's source, read with `ast` so a comment or a string that mentions an ID counts for nothing: only a
test function (module level or in a class, in a file pytest collects) whose name carries `pm_<section>_<n>`
names that clause. A range such as `test_pm_iv_1_to_6_...` names none of the clauses in it: a test that
covers six clauses at once proves none of them in particular, so each needs a test of its own.
"""

import ast
import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent
POLICY_MAP = TESTS.parent / "docs" / "policy-map.md"

# A clause row of the map: `| PM-IX-2 | ...`. Sections are 0 (the introduction) or a Roman numeral.
CLAUSE_ROW = re.compile(r"^\|\s*(PM-(?:0|[IVX]+)-\d+)\s*\|", re.MULTILINE)
# `pm_ix_2` as whole words of a test name; the number must end its word (pm_i_10 is not pm_i_1), and a
# following `_to_<n>` makes it a range, which names nothing.
NAMED_CLAUSE = re.compile(r"(?:^|_)pm_(0|[ivx]+)_(\d+)(?=_|$)(?!_to_\d)")


def clauses_in_map(text: str) -> list[str]:
    """The clause IDs of the map, in the map's order, each once."""
    return list(dict.fromkeys(CLAUSE_ROW.findall(text)))


def clauses_named_by(test_name: str) -> set[str]:
    """The clause IDs a test function's name names: `test_pm_vi_3_pm_vi_4_x` names PM-VI-3 and PM-VI-4."""
    return {f"PM-{section.upper()}-{number}" for section, number in NAMED_CLAUSE.findall(test_name)}


def collected_test_names(root: Path = TESTS) -> dict[str, list[str]]:
    """test function name -> the files (relative to tests/) that define it, for every file pytest collects."""
    found: dict[str, list[str]] = {}
    for path in sorted(root.rglob("test_*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test"):
                found.setdefault(node.name, []).append(str(path.relative_to(root)))
    return found


def test_every_clause_of_the_policy_map_is_named_by_a_test():
    clauses = clauses_in_map(POLICY_MAP.read_text())
    named = set().union(*(clauses_named_by(name) for name in collected_test_names()))
    missing = [clause for clause in clauses if clause not in named]
    assert not missing, (
        f"No test names these clauses of {POLICY_MAP.name}: {', '.join(missing)}. Write a test that proves each "
        "and name it test_pm_<section>_<n>_... (a range name such as pm_iv_1_to_6 does not count)."
    )


def test_every_clause_a_test_names_is_in_the_map():
    # A typo (pm_ix_10) would otherwise count as proving a clause that does not exist, and prove none that does.
    clauses = set(clauses_in_map(POLICY_MAP.read_text()))
    unknown = {
        f"{name} ({', '.join(files)})": sorted(clauses_named_by(name) - clauses)
        for name, files in collected_test_names().items()
        if clauses_named_by(name) - clauses
    }
    assert not unknown, f"These tests name clauses {POLICY_MAP.name} does not have: {unknown}"


def test_the_map_lists_every_section_of_the_policy():
    # A map the parser misread (a changed table layout) would make the check above pass vacuously.
    clauses = clauses_in_map(POLICY_MAP.read_text())
    sections = {clause.split("-")[1] for clause in clauses}
    assert sections == {"0", "I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X", "XI"}
    assert len(clauses) == 59
    assert clauses[0] == "PM-0-1" and clauses[-1] == "PM-XI-3"


def test_a_test_name_names_the_clauses_it_carries_and_no_other():
    assert clauses_named_by("test_pm_ix_2_erasure_keeps_held_rows") == {"PM-IX-2"}
    assert clauses_named_by("test_pm_vi_3_pm_vi_4_no_held_row_changes") == {"PM-VI-3", "PM-VI-4"}
    assert clauses_named_by("test_compute_due_table_pm_ix_9") == {"PM-IX-9"}
    assert clauses_named_by("test_pm_i_10_the_subject_can_correct") == {"PM-I-10"}
    assert clauses_named_by("test_pm_0_2_history_is_append_only") == {"PM-0-2"}


def test_a_range_or_a_section_alone_names_no_clause():
    assert clauses_named_by("test_pm_iv_1_to_6_six_recipient_categories") == set()
    assert clauses_named_by("test_pm_i_1_to_7_example_fields") == set()
    assert clauses_named_by("test_pm_i_a_subject_with_nothing") == set()
    assert clauses_named_by("test_pm_ix_every_move") == set()
    assert clauses_named_by("test_npm_ix_2_is_not_a_clause") == set()


def test_only_test_functions_count_not_helpers_comments_or_strings(tmp_path):
    (tmp_path / "test_sample.py").write_text(
        '"""test_pm_v_1_in_a_docstring"""\n'
        "# def test_pm_v_2_in_a_comment(): ...\n"
        "def helper_pm_v_3(): ...\n"
        "class TestThings:\n"
        "    def test_pm_vi_1_in_a_class(self): ...\n"
        "async def test_pm_vi_2_async(): ...\n"
    )
    (tmp_path / "factories.py").write_text("def test_pm_vii_1_not_collected(): ...\n")
    assert set(collected_test_names(tmp_path)) == {"test_pm_vi_1_in_a_class", "test_pm_vi_2_async"}
