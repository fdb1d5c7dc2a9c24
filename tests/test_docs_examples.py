"""The reference in docs/ cannot rot: every filter example of docs/filters.md compiles (and every
error example gives the message shown), every event example of docs/events.md passes the JSON
Schema, the runnable Python examples of docs/api.md run, the grammar and column list are the
code's, links between the pages resolve, and no page points outside the project."""

from __future__ import annotations

import contextlib
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from pysens import criteria
from pysens.criteria import COLUMNS, CriteriaError, compile_criteria
from pysens.events import Method

DOCS = Path(__file__).resolve().parents[1] / "docs"
PAGES = sorted(DOCS.glob("*.md"))
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Block:
    """One fenced block of a page: its info string, its text and where it starts."""

    page: str
    line: int
    info: str
    text: str

    def __str__(self) -> str:
        return f"docs/{self.page}:{self.line}"


def blocks(page: str, info: str | None = None) -> list[Block]:
    text = (DOCS / page).read_text(encoding="utf-8")
    out = []
    for m in FENCE.finditer(text):
        block = Block(page, text.count("\n", 0, m.start()) + 1, m.group(1).strip(), m.group(2))
        if info is None or block.info == info:
            out.append(block)
    return out


def ids(found: list[Block]) -> list[str]:
    return [str(b) for b in found]


# -- filters.md -------------------------------------------------------------------------------

FILTERS = blocks("filters.md", "criteria")
ERRORS = blocks("filters.md", "criteria-error")


def test_the_filter_page_has_its_examples() -> None:
    assert len(FILTERS) >= 20 and len(ERRORS) >= 8


@pytest.mark.parametrize("block", FILTERS, ids=ids(FILTERS))
def test_filter_example_compiles(block: Block) -> None:
    compiled = compile_criteria(block.text)
    assert compiled.text == block.text


@pytest.mark.parametrize("block", ERRORS, ids=ids(ERRORS))
def test_filter_error_example_gives_its_message(block: Block) -> None:
    text, message = block.text.rstrip("\n").split("\n")
    with pytest.raises(CriteriaError) as info:
        compile_criteria(text)
    assert str(info.value) == message
    assert f"position {info.value.position}" in message
    unknown = message.startswith("unknown column")
    assert info.value.code == ("EVENT_E_QUERYFIELD" if unknown else "EVENT_E_QUERYSYNTAX")


def test_the_grammar_shown_is_the_codes() -> None:
    (shown,) = [b for b in blocks("filters.md", "") if b.text.startswith("QUERY ")]
    doc = criteria.__doc__ or ""
    code = [line.strip() for line in doc.splitlines() if re.match(r"\s+[A-Z]+ +=", line)]
    assert shown.text.strip().splitlines() == code


def test_every_column_is_documented() -> None:
    page = (DOCS / "filters.md").read_text(encoding="utf-8")
    documented = {c.lower() for c in re.findall(r"`([A-Za-z_]+)`", page)}
    assert set(COLUMNS) <= documented, sorted(set(COLUMNS) - documented)


# -- events.md --------------------------------------------------------------------------------

EVENTS = blocks("events.md", "json")


@pytest.mark.parametrize("block", EVENTS, ids=ids(EVENTS))
def test_event_example_passes_the_schema(block: Block) -> None:
    schema = json.loads((DOCS / "event.schema.json").read_text(encoding="utf-8"))
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    example = json.loads(block.text)
    assert [e.message for e in validator.iter_errors(example)] == []


def test_events_page_has_an_example_per_class_and_every_method() -> None:
    classes = {c for b in EVENTS for c in json.loads(b.text)["classes"]}
    assert classes == {"ISensLogon2", "ISensLogon", "ISensNetwork", "ISensOnNow"}
    page = (DOCS / "events.md").read_text(encoding="utf-8")
    assert all(f"| {m.value} |" in page for m in Method), "a method is missing from a table"


# -- api.md -----------------------------------------------------------------------------------

RUNNABLE = blocks("api.md", "python runnable")


def test_the_api_page_has_runnable_examples() -> None:
    assert len(RUNNABLE) >= 8
    assert len(blocks("api.md", "jsonl events.jsonl")) == 1


@pytest.mark.parametrize("block", RUNNABLE, ids=ids(RUNNABLE))
def test_api_example_runs(block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the example in an empty directory holding the page's replay file."""
    (replay,) = blocks("api.md", "jsonl events.jsonl")
    (tmp_path / "events.jsonl").write_text(replay.text, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    code = compile("\n" * block.line + block.text, str(DOCS / block.page), "exec")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(code, {"__name__": "__docs__"})  # the project's own documentation
    shown = [line.split("# ", 1)[1].strip() for line in block.text.splitlines()
             if "print(" in line and "# " in line]
    for expected in shown:  # an output written beside a print() is what it prints
        assert expected in out.getvalue().splitlines(), (expected, out.getvalue())


PLAIN = [b for page in PAGES for b in blocks(page.name, "python")]


@pytest.mark.parametrize("block", PLAIN, ids=ids(PLAIN))
def test_other_python_examples_are_python(block: Block) -> None:
    compile(block.text, str(block), "exec")


# -- every page ---------------------------------------------------------------------------------

def anchors(page: Path) -> set[str]:
    """The heading anchors a Markdown renderer makes (GitHub's rule)."""
    out = set()
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    for heading in re.findall(r"^#+ +(.+)$", text, re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        out.add(slug)
    return out


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_links_resolve_and_stay_inside(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if target.startswith(("http://", "https://")):
            continue
        name, _, anchor = target.partition("#")
        linked = (page.parent / name) if name else page
        assert linked.resolve().is_relative_to(DOCS.parent), target
        assert linked.is_file(), f"{page.name}: {target} does not exist"
        if anchor and linked.suffix == ".md":
            assert anchor in anchors(linked), f"{page.name}: no heading for {target}"
    for outside in ("/work/", "SPEC", "§", "notes/"):
        assert outside not in text, f"{page.name} mentions {outside!r}"
