"""Filter criteria: the whole [MS-COMEV] grammar, errors with positions, and random agreement
with an independent reference evaluator."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pysens.criteria import CriteriaError, compile_criteria
from pysens.events import SensEvent

ALICE = SensEvent(method="SessionReconnect", user_name="Alice", domain="CORP", session_id="3",
                  host="web01", source="logind", remote=True, client_address="10.0.0.7")
BOB = SensEvent(method="Logon", user_name="bob", session_id="c2", host="db01", source="utmp")


@pytest.mark.parametrize(("text", "alice", "bob"), [
    ("ALL", True, True),
    ("all", True, True),
    ("bstrUserName = 'alice'", True, False),  # user names: case-insensitive
    ("BSTRUSERNAME == \"ALICE\"", True, False),
    ("dwSessionId = 3", True, False),  # integers compare with the text id
    ("dwSessionId = 'c2'", False, True),
    ("method = 'SessionReconnect'", True, False),
    ("method = 'sessionreconnect'", False, False),  # other values compare exactly
    ("method != 'Logon'", True, False),
    ("method ~= 'Logon'", True, False),
    ("method <> 'Logon'", True, False),
    ("remote = TRUE", True, False),
    ("remote = false", False, True),
    ("client_address = NULL", False, True),
    ("client_address != NULL", True, False),
    ("domain = 'corp'", True, False),
    ("NOT remote = TRUE", False, True),
    ("! remote = TRUE", False, True),
    ("~ remote = TRUE", False, True),
    ("~remote = TRUE", False, True),
    ("host = 'web01' OR host = 'db01'", True, True),
    ("host = 'web01' | host = 'db01'", True, True),
    ("host = 'web01' AND source = 'utmp'", False, False),
    ("host = 'web01' & source = 'logind'", True, False),
    ("(host = 'web01' OR host = 'x') AND NOT (bstrUserName = 'bob')", True, False),
    ("classes = 'ISensLogon'", False, True),
    ("bstrUserName = 'o''brien'", False, False),
    ("source = \"it\"\"s\"", False, False),
    ("logon_id = {6F9619FF-8B86-D011-B42D-00C04FC964FF}", False, False),
    ("NOT NOT bstrUserName = 'bob'", False, True),
    ("synthesized = FALSE AND seq = NULL", True, True),
])
def test_grammar(text: str, alice: bool, bob: bool) -> None:
    c = compile_criteria(text)
    assert (c.matches(ALICE), c.matches(BOB)) == (alice, bob)
    assert c.text == text


def test_start_shell_names_the_same_occurrence_as_post_shell() -> None:
    e = SensEvent(method="PostShell", user_name="a")
    assert compile_criteria("method = 'StartShell'").matches(e)


@pytest.mark.parametrize(("text", "position", "words"), [
    ("bstrUserName = ", 15, "expected a constant"),
    ("bstrUserName 'x'", 13, "comparison operator"),
    ("bstrUserName = 'x' AND", 22, "column name"),
    ("bstrUserName = 'x' garbage", 19, "AND, OR or the end"),
    ("((method = 'Logon')", 19, "')'"),
    ("method = 'Logon", 9, "not closed"),
    ("method = Logon", 9, "expected a constant"),
    ("", 0, "a comparison or ALL"),
    ("ALL OR method = 'x'", 0, "column name"),
    ("method = 'x' # 1", 13, "unexpected '#'"),
    ("method > 'x'", 7, "unexpected '>'"),
])
def test_syntax_errors_name_the_position(text: str, position: int, words: str) -> None:
    with pytest.raises(CriteriaError) as info:
        compile_criteria(text)
    assert info.value.code == "EVENT_E_QUERYSYNTAX"
    assert info.value.position == position
    assert f"position {position}" in str(info.value) and words in str(info.value)


def test_unknown_column_is_a_field_error() -> None:
    with pytest.raises(CriteriaError) as info:
        compile_criteria("host = 'a' AND colour = 'red'")
    assert info.value.code == "EVENT_E_QUERYFIELD" and info.value.position == 15
    assert "'colour'" in str(info.value)


def test_never_evaluated_as_python(tmp_path: object) -> None:
    for text in ("__import__('os').system('touch /tmp/pwned') = 1",
                 "bstrUserName = '__import__(\"os\")'", "method = ''; import os"):
        try:
            c = compile_criteria(text)
        except CriteriaError:
            continue
        assert c.matches(ALICE) is False


def test_equalities_for_indexing() -> None:
    c = compile_criteria("bstrUserName = 'ALICE' AND dwSessionId = 3 AND NOT host = 'x'")
    assert c.equalities == {"user_name": "alice", "session_id": "3"}
    assert compile_criteria("bstrUserName = 'a' OR host = 'b'").equalities == {}
    assert compile_criteria("(bstrUserName = 'a' AND host = 'b')").equalities == {
        "user_name": "a", "host": "b"}
    assert compile_criteria("NOT bstrUserName = 'a'").equalities == {}
    assert compile_criteria("bstrUserName != 'a'").equalities == {}


def test_guids_compare_without_regard_to_case_or_braces() -> None:
    c = compile_criteria("logon_id = {6F9619FF-8B86-D011-B42D-00C04FC964FF}")
    for held in ("6f9619ff-8b86-d011-b42d-00c04fc964ff", "{6F9619FF-8B86-D011-B42D-00C04FC964FF}"):
        assert c.matches(SensEvent(method="Logon", user_name="a", logon_id=held))
    assert not c.matches(SensEvent(method="Logon", user_name="a", logon_id="0x3e7"))
    assert compile_criteria("logon_id != {6F9619FF-8B86-D011-B42D-00C04FC964FF}").matches(BOB)
    assert c.equalities == {}  # not indexed: the index compares exactly


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    with pytest.raises(CriteriaError):
        compile_criteria("(" * 5000 + "host = 'a'" + ")" * 5000)


# -- random expressions against a reference evaluator -----------------------------------------

COLUMNS = {"bstrUserName": "user_name", "dwSessionId": "session_id", "host": "host",
           "remote": "remote", "client_address": "client_address", "method": "method"}
VALUES = st.one_of(st.sampled_from(["alice", "ALICE", "bob", "web01", "3", "Logon",
                                    "SessionReconnect", "10.0.0.7", "it's"]),
                   st.integers(min_value=0, max_value=4), st.booleans(), st.none())


@dataclass(frozen=True)
class Cmp:
    column: str
    equal: bool
    value: object


@dataclass(frozen=True)
class Not:
    inner: object


@dataclass(frozen=True)
class Bin:
    op: str
    left: object
    right: object


trees = st.recursive(
    st.builds(Cmp, st.sampled_from(sorted(COLUMNS)), st.booleans(), VALUES),
    lambda inner: st.one_of(st.builds(Not, inner),
                            st.builds(Bin, st.sampled_from(["and", "or"]), inner, inner)),
    max_leaves=8,
)


def render(node: object, draw: st.DrawFn) -> str:
    """Text for the tree, with random spellings, case and spacing (always parenthesised)."""
    sp = draw(st.sampled_from([" ", "  ", "\t"]))
    if isinstance(node, Cmp):
        v = node.value
        if v is None:
            const = draw(st.sampled_from(["NULL", "null"]))
        elif isinstance(v, bool):
            const = draw(st.sampled_from(["TRUE", "true"] if v else ["FALSE", "False"]))
        elif isinstance(v, int):
            const = str(v)
        else:
            q = draw(st.sampled_from(["'", '"']))
            const = q + str(v).replace(q, q * 2) + q
        op = draw(st.sampled_from(["=", "=="] if node.equal else ["!=", "~=", "<>"]))
        col = draw(st.sampled_from([node.column, node.column.upper(), node.column.lower()]))
        return f"{col}{sp}{op}{sp}{const}"
    if isinstance(node, Not):
        word = draw(st.sampled_from(["NOT ", "not ", "!", "~"]))
        return f"{word}({render(node.inner, draw)})"
    assert isinstance(node, Bin)
    word = draw(st.sampled_from(
        ["AND", "and", "&"] if node.op == "and" else ["OR", "Or", "|"]))
    return f"({render(node.left, draw)}){sp}{word}{sp}({render(node.right, draw)})"


def reference(node: object, e: SensEvent) -> bool:
    if isinstance(node, Not):
        return not reference(node.inner, e)
    if isinstance(node, Bin):
        a, b = reference(node.left, e), reference(node.right, e)
        return (a and b) if node.op == "and" else (a or b)
    assert isinstance(node, Cmp)
    actual = getattr(e, COLUMNS[node.column])
    v = node.value
    if v is None:
        same = actual is None
    elif isinstance(v, bool):
        same = actual is v
    elif isinstance(actual, bool) or actual is None:
        same = False
    else:
        a_text, b_text = str(actual), str(v)
        if node.column == "bstrUserName":
            a_text, b_text = a_text.lower(), b_text.lower()
        same = a_text == b_text
    return same if node.equal else not same


events = st.builds(
    SensEvent,
    method=st.sampled_from(["Logon", "SessionReconnect", "Logoff"]),
    user_name=st.sampled_from(["alice", "Alice", "bob", None]),
    session_id=st.sampled_from(["3", "0", "c1", None]),
    host=st.sampled_from(["web01", "db01"]),
    remote=st.booleans(),
    client_address=st.sampled_from(["10.0.0.7", None]),
)


@settings(max_examples=400, deadline=None)
@given(st.data(), trees, st.lists(events, min_size=1, max_size=4))
def test_random_expressions_agree_with_the_reference(
    data: st.DataObject, tree: object, evs: list[SensEvent]
) -> None:
    text = render(tree, data.draw)  # type: ignore[arg-type]  # a DataObject draws as DrawFn does
    c = compile_criteria(text)
    for e in evs:
        assert c.matches(e) == reference(tree, e), text


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from([*"()&|!~=<>'\" {}-0123456789abANDORNOTall", "bstrUserName",
                                 "method", "NULL", "TRUE", " AND ", " OR "]),
                max_size=30).map("".join))
def test_garbage_raises_only_criteria_errors(text: str) -> None:
    try:
        c = compile_criteria(text)
    except CriteriaError as e:
        assert 0 <= e.position <= len(text)
        assert e.code in ("EVENT_E_QUERYSYNTAX", "EVENT_E_QUERYFIELD")
        return
    assert isinstance(c.matches(ALICE), bool)


def test_seq_compares_as_a_number_given_either_way() -> None:
    e = BOB.with_seq(5)
    assert compile_criteria("seq = 5").matches(e)
    assert compile_criteria("seq = '5'").matches(e)
    assert not compile_criteria("seq = '6'").matches(e)
    assert compile_criteria("seq != '6'").matches(e)
