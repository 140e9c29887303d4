"""Hypothesis strategies for YAML files a careless or hostile author could write: the
project's own flow and policy files mutated in their data or in their text, and YAML
shapes that hurt parsers (aliases that expand exponentially or refer to themselves, keys
that are lists, deep nesting, tags, several documents, bytes that are not text)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parents[2]

WRONG_VALUES: list[Any] = [
    None, "", " ", 0, -1, 1.5, 10**30, True, [], {}, [None], {"x": None}, "x" * 3000,
    "0s", "-5m", "1e9d", "P1D", "10 minutes", "30", "25:61", "99:00", "Mars/Base",
    "{{ ", "{% if %}", "{{ x | no_such_filter }}", "{% for i in (1..100000000) %}x{% endfor %}",
    "{{ 'a' | append: 'b' | upcase", "https://", "javascript:alert(1)", "\x00", "\u202e", "é" * 500,
    {"gt": "x"}, {"between": [1]}, ["marketing", "marketing"], "!!python/object", "*ref",
]
SNIPPETS = [":", ": ", "- ", "-", "\t", "  ", "\n", "\n  ", "&a ", "*a", "*missing", "!!python/object:os.system ",
            "!!binary ", "!!str ", "{", "}", "[", "]", "'", '"', "#", "|", ">", "? ", "%YAML 1.1\n", "---\n",
            "...\n", "\x00", "\ufeff", "\u2028", "\r", "@", "`", "{{", "{%", "%}", "}}", "~", "null", "0x1F",
            "1_000", ".inf", ".nan", "<<: *a\n", "\\", "\\u0000"]


def flow_texts() -> list[tuple[str, str]]:
    return sorted((p.name, p.read_text()) for p in (REPO / "flows").glob("*.yaml"))


def policy_texts() -> list[tuple[str, str]]:
    paths = [REPO / "deploy" / "policy.yaml", *sorted((REPO / "tests").glob("*/policy*.yaml"))]
    return [(p.name, p.read_text()) for p in paths]


def _nodes(doc: Any, path: tuple = ()) -> list[tuple]:
    out = [path]
    if isinstance(doc, dict):
        for key, value in doc.items():
            out.extend(_nodes(value, (*path, key)))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            out.extend(_nodes(value, (*path, i)))
    return out


def _parent(doc: Any, path: tuple) -> Any:
    for name in path[:-1]:
        doc = doc[name]
    return doc


@st.composite
def mutated_data(draw: st.DrawFn, texts: list[tuple[str, str]]) -> str:
    """A file's data with 1-4 changes (a value replaced, removed, a key added or renamed,
    a list item duplicated), dumped back to YAML."""
    _, text = draw(st.sampled_from(texts))
    doc = copy.deepcopy(yaml.safe_load(text))
    for _ in range(draw(st.integers(1, 4))):
        paths = [p for p in _nodes(doc) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = _parent(doc, path)
        action = draw(st.sampled_from(["replace", "replace", "remove", "add", "rename", "dup"]))
        if action == "replace":
            parent[path[-1]] = copy.deepcopy(draw(st.sampled_from(WRONG_VALUES)))
        elif action == "remove":
            del parent[path[-1]]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.sampled_from(["chanel", "stepz", "next", "id", "wait", "x" * 300, "7"]))] = \
                copy.deepcopy(draw(st.sampled_from(WRONG_VALUES)))
        elif action == "rename" and isinstance(parent, dict):
            parent[str(path[-1]) + draw(st.sampled_from(["_", "s", " ", "\u00e9"]))] = parent.pop(path[-1])
        elif action == "dup" and isinstance(parent, list):
            parent.insert(path[-1], copy.deepcopy(parent[path[-1]]))
    return yaml.safe_dump(doc, default_flow_style=draw(st.sampled_from([False, None, True])),
                          allow_unicode=draw(st.booleans()), sort_keys=False)


@st.composite
def mutated_text(draw: st.DrawFn, texts: list[tuple[str, str]]) -> str:
    """A file's text with 1-5 edits: a range cut, a snippet inserted, a line repeated or
    re-indented, the text truncated."""
    _, text = draw(st.sampled_from(texts))
    for _ in range(draw(st.integers(1, 5))):
        if not text:
            break
        at = draw(st.integers(0, len(text)))
        action = draw(st.sampled_from(["cut", "insert", "insert", "line", "indent", "truncate"]))
        if action == "cut":
            text = text[:at] + text[at + draw(st.integers(1, 40)):]
        elif action == "insert":
            text = text[:at] + draw(st.sampled_from(SNIPPETS)) + text[at:]
        elif action == "truncate":
            text = text[:at]
        else:
            lines = text.split("\n")
            i = draw(st.integers(0, len(lines) - 1))
            if action == "line":
                lines.insert(i, lines[i])
            else:
                lines[i] = draw(st.sampled_from(["", " ", "   ", "\t"])) + lines[i].lstrip(" ")
            text = "\n".join(lines)
    return text


def billion_laughs(levels: int, fanout: int = 9) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * fanout) + "]")
    return "\n".join(lines) + f"\nid: laughs\ncategory: marketing\nname: *a{levels - 1}\n"


PATHOLOGICAL = st.one_of(
    st.integers(5, 12).map(billion_laughs),
    st.sampled_from(["a: &a [*a]\nid: x\n", "a: &a {b: *a}\n", "- &x [*x]\n", "steps: &s [{id: a, next: *s}]\n",
                     "? [a, b]\n: c\n", "{[1]: 2}\n", "? {a: 1}\n: x\nid: y\n", "id: x\n---\nid: y\n",
                     "!!python/object/apply:os.system [ls]\n", "id: !!binary aGVsbG8=\ncategory: marketing\n",
                     "id: 1\ncategory: 2\nsteps: 3\n", "<<: {id: x}\n", "&a a: b\n", "", "\n\n\n", "---\n...\n",
                     "%TAG ! tag:x,2000:\n---\n!foo bar\n", "\ufeffid: x\n", "id: x\r\ncategory: marketing\r\n"]),
    st.integers(50, 3000).map(lambda d: "id: deep\nsteps: " + "[" * d + "]" * d + "\n"),
    st.integers(50, 3000).map(lambda d: "id: deep\nsteps:\n" + "".join(" " * (i + 1) + "- a:\n" for i in range(d))),
    st.integers(1, 5).map(lambda n: "id: " + "x" * (10**n) + "\n"),
    st.text(max_size=200),
)


def yaml_files(texts: list[tuple[str, str]]) -> st.SearchStrategy[str]:
    return st.one_of(mutated_data(texts), mutated_text(texts), PATHOLOGICAL,
                     st.sampled_from([t for _, t in texts]))
