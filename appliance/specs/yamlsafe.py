"""YAML read with limits: what a user hands us (`apply -f` files, conda files, `--set` values) is parsed
into JSON-like values only, in bounded time and memory, and every refusal is a SpecError naming the
source and the limit.

PyYAML's parser (libyaml's when available) yields events; this module composes them into nodes itself,
without recursion, so that it can count on the way: the text's size, the nesting depth, the aliases,
circular aliases (an alias to a collection still open), and the size the graph would have with every
alias expanded (computed per node from its children, never by expanding). Only then does PyYAML's safe
constructor build the values, from nodes whose tags are the JSON-like ones."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.events import (
    AliasEvent,
    CollectionStartEvent,
    DocumentEndEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    StreamEndEvent,
)
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import Resolver
from yaml.scanner import Scanner

from appliance.specs.errors import SpecError

MAX_BYTES = 1 << 20  # of text: a spec or a conda file is a few kilobytes
MAX_ALIASES = 100  # alias uses per document
MAX_DEPTH = 100  # nested collections
MAX_NODES = 100_000  # in the whole stream, every alias expanded
MAX_NUMBER = 100  # characters of an int or a float: int("9" * 10**6) and sexagesimals are slow

_Y = "tag:yaml.org,2002:"
ALLOWED = tuple(_Y + t for t in ("str", "int", "float", "bool", "null", "map", "seq"))
_MERGE = _Y + "merge"  # `<<: *base`, as a mapping key: the merged result is a plain mapping
_NUMBERS = (_Y + "int", _Y + "float")


class _PyParser(Reader, Scanner, Parser):
    """PyYAML's pure-Python parser: the fallback when PyYAML was built without libyaml."""

    def __init__(self, stream: str) -> None:
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)


try:
    from yaml._yaml import CParser as _Parser
except ImportError:
    _Parser = _PyParser  # type: ignore[assignment,misc]


class _Resolver(Resolver):
    """YAML 1.1's implicit types but dates and `=`: `2024-01-01` stays the string it is in JSON."""

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_Y + "timestamp", _Y + "value")]
        for first, resolvers in Resolver.yaml_implicit_resolvers.items()
    }


def _shown(tag: str) -> str:
    if tag.startswith(_Y):
        return "!!" + tag.removeprefix(_Y)
    return tag if tag.startswith("!") else f"!<{tag}>"


def _where(event: Any) -> str:
    mark = getattr(event, "start_mark", None)
    return f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""


def _invalid(exc: Exception) -> str:
    """A PyYAML error as one line: the problem and where it is."""
    if isinstance(exc, yaml.MarkedYAMLError) and (exc.problem or exc.context):
        mark = exc.problem_mark or exc.context_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        return f"not valid YAML{where}: {exc.problem or exc.context}"
    return f"not valid YAML: {' '.join(str(exc).split())}"


class _Frame:
    __slots__ = ("anchor", "items", "node", "size")

    def __init__(self, node: Node, anchor: str | None) -> None:
        self.node, self.anchor, self.size = node, anchor, 1
        self.items: list[Node] = []


def _check_tag(tag: str, event: Any, is_key: bool, source: str | None) -> None:
    if tag in ALLOWED or (tag == _MERGE and is_key):
        return
    raise SpecError(f"tag {_shown(tag)} is not allowed{_where(event)}; allowed: "
                    f"{', '.join(map(_shown, ALLOWED))}", source=source)


def _compose(text: str, source: str | None) -> list[Node]:
    """The documents' root nodes, refusing whatever breaks a limit before it costs anything."""
    parser = _Parser(text)
    resolver = _Resolver()
    roots: list[Node] = []
    total = 0
    anchors: dict[str, tuple[Node, int]] = {}
    open_nodes: set[int] = set()
    stack: list[_Frame] = []
    aliases = 0
    root: tuple[Node, int] | None = None

    def fail(message: str, event: Any) -> SpecError:
        return SpecError(f"{message}{_where(event)}", source=source)

    def add(node: Node, size: int, event: Any) -> None:
        nonlocal root
        if not stack:
            root = (node, size)
            return
        frame = stack[-1]
        frame.items.append(node)
        frame.size += size
        if total + frame.size > MAX_NODES:
            raise fail(f"the YAML expands to more than {MAX_NODES} nodes (aliases included)", event)

    while True:
        event = parser.get_event()
        if isinstance(event, StreamEndEvent):
            return roots
        if isinstance(event, DocumentStartEvent):
            anchors, aliases, root = {}, 0, None
        elif isinstance(event, DocumentEndEvent):
            if root is None:  # the parser always gives a document a node; be safe anyway
                continue
            roots.append(root[0])
            total += root[1]
            if total > MAX_NODES:
                raise fail(f"the YAML expands to more than {MAX_NODES} nodes (aliases included)", event)
        elif isinstance(event, AliasEvent):
            aliases += 1
            if aliases > MAX_ALIASES:
                raise fail(f"more than {MAX_ALIASES} aliases (*name) in one document", event)
            if event.anchor not in anchors:
                raise fail(f"undefined alias *{event.anchor}", event)
            node, size = anchors[event.anchor]
            if id(node) in open_nodes:
                raise fail(f"circular alias *{event.anchor}: it refers to a collection that contains it", event)
            add(node, size, event)
        elif isinstance(event, ScalarEvent | CollectionStartEvent):
            if event.anchor is not None and event.anchor in anchors:
                raise fail(f"duplicate anchor &{event.anchor}", event)
            is_key = bool(stack) and isinstance(stack[-1].node, MappingNode) and len(stack[-1].items) % 2 == 0
            if isinstance(event, ScalarEvent):
                tag = event.tag
                if tag is None or tag == "!":
                    tag = resolver.resolve(ScalarNode, event.value, event.implicit)
                _check_tag(tag, event, is_key, source)
                if tag in _NUMBERS and len(event.value) > MAX_NUMBER:
                    raise fail(f"a number of more than {MAX_NUMBER} characters", event)
                node = ScalarNode(tag, event.value, event.start_mark, event.end_mark, style=event.style)
                if event.anchor is not None:
                    anchors[event.anchor] = (node, 1)
                add(node, 1, event)
                continue
            if len(stack) >= MAX_DEPTH:
                raise fail(f"collections nested more than {MAX_DEPTH} levels deep (the nesting depth limit)", event)
            kind = MappingNode if isinstance(event, MappingStartEvent) else SequenceNode
            tag = event.tag
            if tag is None or tag == "!":
                tag = resolver.resolve(kind, None, event.implicit)
            _check_tag(tag, event, False, source)
            node = kind(tag, [], event.start_mark, None, flow_style=event.flow_style)
            stack.append(_Frame(node, event.anchor))
            open_nodes.add(id(node))
            if event.anchor is not None:
                anchors[event.anchor] = (node, 0)  # for now: an alias to it is circular
        elif isinstance(event, SequenceEndEvent | MappingEndEvent):
            frame = stack.pop()
            open_nodes.discard(id(frame.node))
            node = frame.node
            node.end_mark = event.end_mark
            items = frame.items
            node.value = list(zip(items[::2], items[1::2], strict=True)) if isinstance(node, MappingNode) else items
            if frame.anchor is not None:
                anchors[frame.anchor] = (node, frame.size)
            add(node, frame.size, event)


def load_all(text: str, source: str | None = None) -> list[Any]:
    """Every document of `text` as JSON-like values (an empty document is None)."""
    if len(text) > MAX_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise SpecError(f"the text is larger than {MAX_BYTES} bytes (1 MiB); YAML specs are small", source=source)
    try:
        roots = _compose(text.removeprefix("\ufeff"), source)
        return [SafeConstructor().construct_document(root) for root in roots]
    except SpecError:
        raise
    except yaml.YAMLError as exc:
        raise SpecError(_invalid(exc), source=source) from None
    except Exception as exc:  # a constructor's own complaint (`!!int x`: ValueError, `!!bool maybe`: KeyError)
        what = (f"value {exc.args[0]!r} does not fit its tag" if isinstance(exc, KeyError) and exc.args
                else " ".join(str(exc).split()) or type(exc).__name__)
        raise SpecError(f"not valid YAML: {what}", source=source) from None


def load(text: str, source: str | None = None) -> Any:
    """The one document of `text` (None for empty text)."""
    documents = load_all(text, source)
    if len(documents) > 1:
        raise SpecError(f"expected one YAML document, found {len(documents)}", source=source)
    return documents[0] if documents else None


# YAML 1.2's core schema, the types JSON has: `on`/`yes` stay strings, `1.10` is the float YAML 1.2 makes of it.
_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_INT = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_FLOAT = re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|"
                    r"\.(?:nan|NaN|NAN))$")


def typed(text: str) -> Any:
    """A command-line value (`--set k=VALUE`) typed as YAML 1.2 / JSON would type it: null, booleans and
    numbers by YAML 1.2's core schema (`on`, `yes`, `1_000` stay strings); anything else read by `load`, with
    its limits and refusals (tags, several documents, bombs)."""
    value = text.strip()
    if len(value) <= MAX_NUMBER:
        if _NULL.match(value):
            return None
        if _BOOL.match(value):
            return value.lower() == "true"
        if _INT.match(value):
            return int(value, 0) if value[:2] in ("0o", "0x") else int(value)
        if _FLOAT.match(value):
            return float(value.lower().replace(".inf", "inf").replace(".nan", "nan"))
    parsed = load(text)
    if isinstance(parsed, bool | int | float) or parsed is None:
        return text  # only YAML 1.1 makes this a scalar of another type (`on`, `1_000`, `0b1`, `1:20`)
    return parsed


def read_text(path: str | Path) -> str:
    """A file's text: at most MAX_BYTES of UTF-8 (a byte-order mark is dropped)."""
    source = str(path)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise SpecError(f"cannot read file: {exc.strerror or exc}", source=source) from None
    if len(data) > MAX_BYTES:
        raise SpecError(f"the file is larger than {MAX_BYTES} bytes (1 MiB); YAML specs are small", source=source)
    try:
        return data.decode("utf-8")  # a byte-order mark decodes to U+FEFF, which load_all drops
    except UnicodeDecodeError as exc:
        raise SpecError(f"not UTF-8 text: byte 0x{data[exc.start]:02x} at offset {exc.start}",
                        source=source) from None


def read_all(path: str | Path) -> list[Any]:
    """Every document of a YAML file, read with the limits above."""
    return load_all(read_text(path), str(path))
