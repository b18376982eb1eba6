"""The developer documentation lives in the repository: every reference to it from code,
tests, notebooks and the README names a page that exists, and nothing points outside."""

import re

from dflib.paths import PROJECT_ROOT

SOURCES = [*PROJECT_ROOT.glob("dflib/**/*.py"), *PROJECT_ROOT.glob("tests/*.py"),
           *PROJECT_ROOT.glob("notebooks/*.ipynb"), PROJECT_ROOT / "README.md",
           *PROJECT_ROOT.glob("docs/*.md")]
DOC_REFERENCE = re.compile(r"docs/([\w-]+\.md)")


def test_every_docs_reference_names_a_page_that_exists():
    pages = {p.name for p in (PROJECT_ROOT / "docs").glob("*.md")}
    cited = {(src.relative_to(PROJECT_ROOT), page) for src in SOURCES
             for page in DOC_REFERENCE.findall(src.read_text(encoding="utf-8"))}
    assert cited, "nothing cites docs/; the pattern or the sources list is wrong"
    assert [c for c in cited if c[1] not in pages] == []


def test_no_reference_to_a_design_file_outside_the_repository():
    # The design guide once lived beside the repository as DESIGN.md; a clone lacks it.
    here = {src.relative_to(PROJECT_ROOT) for src in SOURCES
            if src.name != "test_docs.py" and "DESIGN.md" in src.read_text(encoding="utf-8")}
    assert here == set()


SECTION_REFERENCE = re.compile(r'docs/([\w-]+\.md), "([^"]+)"')


def test_every_cited_section_is_a_heading_of_its_page():
    headings = {p.name: {line.lstrip("#").strip() for line in p.read_text(encoding="utf-8")
                         .splitlines() if line.startswith("#")}
                for p in (PROJECT_ROOT / "docs").glob("*.md")}
    cited = {(src.relative_to(PROJECT_ROOT), page, section) for src in SOURCES
             for page, section in SECTION_REFERENCE.findall(src.read_text(encoding="utf-8"))}
    assert cited, "nothing cites a section of docs/; the pattern is wrong"
    assert [c for c in cited if c[2] not in headings.get(c[1], set())] == []
