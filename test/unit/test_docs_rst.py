"""README.rst and docs/*.rst parse as reStructuredText without a warning.

A malformed table or a wrong underline still shows as text in an editor, but
GitHub (and any docs build) renders it as an error box or drops the table: the
user then reads nothing where the pillar keys should be. The docs are plain
docutils reStructuredText (no Sphinx: roles such as ``:doc:`` do not exist here).
"""

import io
import pathlib

import docutils.core
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.rst"] + sorted((REPO / "docs").glob("*.rst"))


@pytest.mark.parametrize("path", DOCS, ids=[p.name for p in DOCS])
def test_rst_parses_without_warnings(path):
    stream = io.StringIO()
    docutils.core.publish_doctree(
        path.read_text(encoding="utf-8"), source_path=str(path),
        settings_overrides={"report_level": 2, "halt_level": 5,
                            "warning_stream": stream, "file_insertion_enabled": False,
                            "raw_enabled": False})
    assert stream.getvalue() == "", stream.getvalue()


def test_every_doc_is_checked():
    assert len(DOCS) >= 10 and all(p.is_file() for p in DOCS)
