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


# The README is a front door; everything else lives on a page of docs/ that a reader can
# reach from it, and no link of README.md, CHANGELOG.md or docs/ leads nowhere.
README = PROJECT_ROOT / "README.md"
DOCS = sorted((PROJECT_ROOT / "docs").glob("*.md"))
LINKED_PAGES = [README, PROJECT_ROOT / "CHANGELOG.md", *DOCS]
README_MAX_LINES = 250
MARKDOWN_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")


def _prose(text: str) -> str:
    """The text outside code blocks and inline code, where a link is a link."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def _links(page):
    return MARKDOWN_LINK.findall(_prose(page.read_text(encoding="utf-8")))


def _anchors(page) -> set[str]:
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces to
    hyphens, a repeated heading numbered from -1."""
    seen: dict[str, int] = {}
    anchors = set()
    for line in FENCE.sub("", page.read_text(encoding="utf-8")).splitlines():
        if not line.startswith("#"):
            continue
        slug = re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _external(target: str) -> bool:
    return re.match(r"[a-z][a-z0-9+.-]*:", target) is not None


def test_every_relative_link_points_to_a_file_and_heading_that_exist():
    checked, broken = 0, []
    for page in LINKED_PAGES:
        for target in _links(page):
            if _external(target):
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            checked += 1
            if not dest.exists():
                broken.append((page.name, target, "no such file"))
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                broken.append((page.name, target, "no such heading"))
    assert checked > 20, "hardly any links found; the link pattern is wrong"
    assert broken == []


def _linked_files(page) -> set:
    return {(page.parent / target.partition("#")[0]).resolve() for target in _links(page)
            if not _external(target) and target.partition("#")[0]}


def test_every_docs_page_is_linked_from_the_readme_or_the_docs_index():
    index = PROJECT_ROOT / "docs" / "README.md"
    linked = _linked_files(README) | (_linked_files(index) - {index.resolve()})
    assert [p.name for p in DOCS if p.resolve() not in linked] == []


def test_the_readme_is_a_front_door_of_at_most_250_lines():
    lines = len(README.read_text(encoding="utf-8").splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move detail to docs/"


def test_no_page_tells_the_history_of_rounds():
    # "this round" means nothing to a reader of a clone; results name their command and
    # commit, and the history goes to CHANGELOG.md with dates.
    rounds = re.compile(r"\b(this|last|previous|earlier|next) round\b", re.I)
    said = [(page.name, m.group(0)) for page in [README, *DOCS]
            for m in rounds.finditer(page.read_text(encoding="utf-8"))]
    assert said == []


# `test_x.py::test_name`, `tests/test_x.py`, and `::test_name` continuing the last file.
TEST_REFERENCE = re.compile(r"`(?:tests/)?(test_\w+\.py)(?:::(\w+))?`|`::(\w+)`")


def test_every_test_a_page_names_exists():
    # The failure table (docs/failures.md) names the test of every case; a renamed test
    # must not leave the table pointing at nothing.
    named, missing = 0, []
    for page in [README, *DOCS]:
        current = None
        for m in TEST_REFERENCE.finditer(page.read_text(encoding="utf-8")):
            current = m.group(1) or current
            name = m.group(2) or m.group(3)
            source = PROJECT_ROOT / "tests" / current if current else None
            named += 1
            if source is None or not source.is_file():
                missing.append((page.name, current, name))
            elif name and not re.search(rf"^\s*def {name}\(", source.read_text(encoding="utf-8"),
                                        re.M):
                missing.append((page.name, current, name))
    assert named > 50, "hardly any tests named; the pattern is wrong"
    assert missing == []


def _subcommands(parser) -> dict:
    return next(a for a in parser._actions if a.choices and a.dest in ("command", "bench")).choices


def test_every_command_and_option_is_documented_on_the_command_line_page():
    from dflib import cli
    cli_page = (PROJECT_ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    bench_page = (PROJECT_ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    commands = _subcommands(cli.build_parser())
    missing = [f"dflib {name}" for name in commands if f"dflib {name}" not in cli_page]
    missing += [f"dflib {name} {opt}" for name, sub in commands.items() if name != "bench"
                for action in sub._actions for opt in action.option_strings
                if opt.startswith("--") and opt != "--help" and opt not in cli_page]
    missing += [f"bench {name}" for name in _subcommands(commands["bench"])
                if f"bench {name}" not in bench_page]
    assert missing == []


def test_every_profile_is_described_in_the_readme():
    readme = README.read_text(encoding="utf-8")
    profiles = sorted(p.relative_to(PROJECT_ROOT).as_posix()
                      for p in (PROJECT_ROOT / "params").glob("*.yaml"))
    assert profiles and [p for p in profiles if f"| `{p}` |" not in readme] == []
