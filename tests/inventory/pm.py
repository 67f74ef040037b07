"""What the policy-map tests read: the subject's own access package, built by the real export.

A clause about what is collected, why and on what basis, who receives it and where it goes is kept when the
register says so AND the person is told so: the package's processing.json (and its readable index.html) is
where the register's answer reaches the subject (PM-IX-1), so the tests read it there rather than the
register's tables.
"""

import html
import io
import json
import zipfile
from dataclasses import dataclass

from requests import exports


@dataclass
class Package:
    processing: dict
    schema: dict
    index: str  # index.html, with entities unescaped so a test can look for plain text
    archive: zipfile.ZipFile

    def purpose(self, code: str) -> dict:
        """The purpose `code` as the subject is told it; fails naming what is listed when it is missing."""
        listed = {p["code"]: p for p in self.processing["purposes"]}
        assert code in listed, f"{code} is not in the subject's processing.json: {sorted(listed)}"
        return listed[code]

    def bases(self, code: str) -> set[str]:
        return {b["code"] for b in self.purpose(code)["lawful_bases"]}

    def category(self, code: str) -> dict:
        listed = {c["code"]: c for c in self.processing["categories"]}
        assert code in listed, f"{code} is not in the subject's processing.json: {sorted(listed)}"
        return listed[code]

    def table(self, model_label: str) -> dict:
        """schema.json's entry for a model (`chat.AccessLog`)."""
        listed = {t["model"]: t for t in self.schema["tables"]}
        assert model_label in listed, f"{model_label} is not in the subject's package: {sorted(listed)}"
        return listed[model_label]

    def rows(self, model_label: str) -> list[dict]:
        """The subject's rows of a model, as the package's JSON file holds them."""
        json_file = next(f for f in self.table(model_label)["files"] if f.endswith(".json"))
        return json.loads(self.archive.read(json_file))


def package_of(subject) -> Package:
    out = io.BytesIO()
    exports.package_write_plain(subject=subject, out=out)
    archive = zipfile.ZipFile(io.BytesIO(out.getvalue()))
    return Package(
        processing=json.loads(archive.read("processing.json")),
        schema=json.loads(archive.read("schema.json")),
        index=html.unescape(archive.read("index.html").decode()),
        archive=archive,
    )
