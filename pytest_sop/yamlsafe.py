"""Safe YAML loading that keeps source positions.

Only plain data is built: no Python tags, no custom tags, duplicate keys refused,
alias expansion and nesting bounded, and a size limit on files. Every failure is a
:class:`SopSyntaxError` naming the file, line and column.
"""

from __future__ import annotations

import math
import os
import re
import stat
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from .errors import SopSyntaxError

Path_ = tuple[str | int, ...]

MAX_FILE_BYTES = 1024 * 1024
# A 10-step SOP has a few hundred nodes; this leaves room for big input tables while a
# "billion laughs" alias bomb is stopped after a few milliseconds.
MAX_NODES = 100_000
MAX_DEPTH = 64

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_TAG = "tag:yaml.org,2002:"
_SCALAR_TAGS = {_TAG + t for t in ("str", "int", "float", "bool", "null")}
_constructor = yaml.constructor.SafeConstructor()
# YAML 1.2 (core schema) booleans: PyYAML resolves YAML 1.1's yes/no/on/off too, which would
# turn a key `on:` or a value `no` into a boolean. Only these spellings are booleans here.
_BOOLEANS = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}


@dataclass(frozen=True, slots=True)
class Pos:
    line: int
    col: int


@dataclass(frozen=True, slots=True)
class Loaded:
    """A YAML document as plain data plus the position of every key and value."""

    path: str
    data: Any
    # Plain (line, column) tuples: a suite holds hundreds of thousands, and tuples of
    # ints are not tracked by the garbage collector.
    key_pos: Mapping[Path_, tuple[int, int]]
    value_pos: Mapping[Path_, tuple[int, int]]

    def at(self, path: Path_, *, key: bool = False) -> Pos:
        """Where ``path`` is written; the nearest written ancestor when it is not."""
        table = self.key_pos if key else self.value_pos
        while True:
            if path in table:
                return Pos(*table[path])
            if key and path in self.value_pos:
                return Pos(*self.value_pos[path])
            if not path:
                return Pos(1, 1)
            path = path[:-1]


def format_path(path: Path_) -> str:
    """``("steps", 2, "tap")`` -> ``steps[2].tap``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def read_file(path: str, shown: str | None = None) -> bytes:
    """Read a SOP or config file, refusing one too large to be a hand-written file.

    A FIFO, device or folder is refused before it is read: reading a FIFO would wait for a
    writer forever. It is opened non-blocking, and checked again once open (it may have been
    swapped in between).
    """
    shown = shown or path
    try:
        _check_regular(shown, os.stat(path).st_mode)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            info = os.fstat(fd)
            _check_regular(shown, info.st_mode)
            if info.st_size > MAX_FILE_BYTES:
                raise SopSyntaxError(
                    shown, 1, 1, "", f"file is {info.st_size} bytes; at most {MAX_FILE_BYTES} bytes expected"
                )
            chunks = []
            left = MAX_FILE_BYTES + 1
            while left > 0:
                chunk = os.read(fd, left)
                if not chunk:
                    break
                chunks.append(chunk)
                left -= len(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)
    except OSError as e:
        raise SopSyntaxError(shown, 1, 1, "", f"cannot read file: {e.strerror}") from None


_KINDS = {
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def _check_regular(shown: str, mode: int) -> None:
    if stat.S_ISREG(mode):
        return
    if stat.S_ISDIR(mode):
        raise SopSyntaxError(shown, 1, 1, "", "is a folder, not a file")
    kind = _KINDS.get(stat.S_IFMT(mode))
    raise SopSyntaxError(shown, 1, 1, "", f"is {kind}, not a regular file" if kind else "is not a regular file")


def load(path: str, source: str | bytes) -> Loaded:
    """Parse one YAML document from ``source``; ``path`` is only used in messages."""
    if len(source) > MAX_FILE_BYTES:
        raise SopSyntaxError(path, 1, 1, "", f"file is larger than {MAX_FILE_BYTES} bytes")
    try:
        node = yaml.compose(source, Loader=_Loader)
    except yaml.MarkedYAMLError as e:
        line, col, problem = explain(e, source)
        raise SopSyntaxError(path, line, col, "", f"malformed YAML: {problem}") from None
    except (yaml.YAMLError, UnicodeError, ValueError) as e:
        raise SopSyntaxError(path, 1, 1, "", f"malformed YAML: {e}") from None
    except RecursionError:
        raise SopSyntaxError(path, 1, 1, "", f"nested deeper than {MAX_DEPTH} levels") from None
    if node is None:
        raise SopSyntaxError(path, 1, 1, "", "the file is empty; expected a mapping")
    return _Builder(path).build(node)


def explain(e: yaml.MarkedYAMLError, source: str | bytes) -> tuple[int, int, str]:
    """PyYAML's parser words (``mapping values are not allowed here``, ``expected <block end>``)
    turned into what is wrong in the user's terms and how to fix it, at the most useful position
    (1-based line and column). Works with the C and the Python loader, whose words differ."""
    text = source.decode("utf-8", "replace") if isinstance(source, bytes) else source
    return _Explainer(text.splitlines(), e).explain()


_INDENTATION = "check the indentation of this line against the lines above"


class _Explainer:
    def __init__(self, lines: list[str], e: yaml.MarkedYAMLError) -> None:
        self.lines = lines
        self.problem = str(e.problem or "")
        self.context = str(e.context or "")
        mark = e.problem_mark or e.context_mark
        self.line, self.col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        ctx = e.context_mark
        self.ctx_line, self.ctx_col = (ctx.line + 1, ctx.column + 1) if ctx else (self.line, self.col)

    def text(self, line: int) -> str:
        return self.lines[line - 1] if 0 < line <= len(self.lines) else ""

    def char(self, line: int, col: int) -> str:
        text = self.text(line)
        return text[col - 1] if 0 < col <= len(text) else ""

    @staticmethod
    def indent(text: str) -> int:
        return len(text) - len(text.lstrip(" "))

    def above(self, line: int) -> int:
        """The nearest line above ``line`` that holds something (not blank, not only a comment); 0 if none."""
        for n in range(line - 1, 0, -1):
            stripped = self.text(n).strip()
            if stripped and not stripped.startswith("#"):
                return n
        return 0

    def explain(self) -> tuple[int, int, str]:
        p, here = self.problem, (self.line, self.col)
        tab = self.tab()
        if tab is not None:
            return tab
        if "another document" in p:
            return (*here, "a second document ('---'); a file holds one SOP (or one config): remove the '---' line")
        if "end of stream" in p and "quoted scalar" in self.context:
            quote = self.char(self.ctx_line, self.ctx_col) or "quote"
            return (
                self.ctx_line,
                self.ctx_col,
                f"this {quote} is never closed: end the text with a matching {quote} on the same line",
            )
        if "escape" in p:
            return (
                *here,
                "a backslash in double quotes starts an escape such as \\n; for text with backslashes use single "
                "quotes ('a\\b') or write each backslash twice",
            )
        if "flow sequence" in self.context or "flow mapping" in self.context:
            return self.flow()
        if "cannot start any token" in p:
            c = self.char(*here)
            return (*here, f"a value cannot start with {c!r} unless it is quoted: write it in quotes ('{c}...')")
        if "undefined alias" in p:
            return (
                *here,
                "a value starting with '*' names an anchor (&name) that is not defined above: quote the value "
                "if '*' is part of the text",
            )
        if "sequence entries are not allowed" in p:
            return (
                *here,
                "a list cannot start on the same line as its key: put each '- item' on a line of its own, "
                "indented under the key",
            )
        if "mapping values are not allowed" in p:
            return self.colon()
        if "could not find expected ':'" in p:
            return (
                self.ctx_line,
                self.ctx_col,
                "this line is not `key: value` nor a '- item': is the ':' after the key missing (or the space "
                "after it)? A longer text goes on one line, or in quotes",
            )
        if "block end" in p or "expected key" in p or "expected '-' indicator" in p:
            return self.block()
        return (*here, p or self.context or "not valid YAML")

    def tab(self) -> tuple[int, int, str] | None:
        text = self.text(self.line)
        lead = text[: len(text) - len(text.lstrip(" \t"))]
        if self.char(self.line, self.col) == "\t" or "\t" in lead:
            col = self.col if self.char(self.line, self.col) == "\t" else lead.index("\t") + 1
            return self.line, col, "a tab character; YAML is indented with spaces only: replace the tab with spaces"
        return None

    def flow(self) -> tuple[int, int, str]:
        opener = self.char(self.ctx_line, self.ctx_col) or ("[" if "sequence" in self.context else "{")
        closer = "]" if opener == "[" else "}"
        what = "list" if opener == "[" else "mapping"
        if self.line > self.ctx_line:
            return (
                self.ctx_line,
                self.ctx_col,
                f"this {opener!r} is never closed: end the {what} with {closer!r} on the same line",
            )
        if self.char(self.line, self.col) == ":":
            return (
                self.line,
                self.col,
                f"a ':' inside {opener}...{closer} that is not after a key: quote a value that holds ': ' "
                '(text: "Sign in: now")',
            )
        return (
            self.line,
            self.col,
            f"expected ',' or {closer!r} here: separate the entries of {opener}...{closer} with ', ' and quote a "
            "value that holds ',', ':' or brackets",
        )

    def colon(self) -> tuple[int, int, str]:
        text = self.text(self.line)
        before = text[: self.col - 1]
        if ": " in before.lstrip(" -") or before.rstrip().endswith(":"):
            # `title: Sign in: now`: the second ': ' on the line.
            return (
                self.line,
                self.col,
                "a second ': ' on this line: quote a value that holds ': ' (title: \"Sign in: now\")",
            )
        prev = self.above(self.line)
        hint = _INDENTATION
        if prev and re.match(r"\s*-[^\s-]", self.text(prev)):
            hint = f"line {prev} starts '-' with no space after it: a list item is '- item'"
        elif prev and self.indent(text) > self.indent(self.text(prev)) and not self.text(prev).rstrip().endswith(":"):
            hint = (
                f"this line is indented more than line {prev} above, which does not end with ':' to open "
                f"a mapping: line it up with the key it belongs beside"
            )
        col = self.indent(text) + 1
        return self.line, col, f"a `key: value` cannot start here: {hint}"

    def block(self) -> tuple[int, int, str]:
        text = self.text(self.line)
        content = self.indent(text) + 1
        if self.col > content:
            # `title: "a" b`: something after a complete value on the same line.
            return (
                self.line,
                self.col,
                "more text after a complete value: quote the whole value, or none of it",
            )
        if "collection" in self.context or "'-' indicator" in self.problem or "'?'" in self.problem:
            m = re.match(r"(\s*-\s+)([^\s:]*)", self.text(self.ctx_line))
            col = len(m.group(1)) + 1 if m else self.ctx_col + 2
            under = f" (under {m.group(2)!r})" if m and m.group(2) else ""
            return (
                self.line,
                self.col,
                f"this line is lined up with the '-' of the item on line {self.ctx_line} but does not start with "
                f"'- ': indent it to column {col}{under} to add it to that item (a step's timeout, retry, optional "
                "or name), start it with '- ' for a new item, or indent it less to end the list",
            )
        prev = self.above(self.line)
        if text.lstrip().startswith("- ") and prev and self.text(prev).lstrip().startswith("- "):
            return (
                self.line,
                self.col,
                f"this '- ' item is indented {self.indent(text)} space(s), the item on line {prev} "
                f"{self.indent(self.text(prev))}: line up the '-' of the items of one list",
            )
        # A line of a mapping indented to no level of it: name the levels it could mean.
        levels = {self.ctx_col - 1: self.ctx_line}
        if prev:  # `  - wait_for: ...`: its keys are indented past the '- '
            levels.setdefault(len(self.text(prev)) - len(self.text(prev).lstrip(" -")), prev)
        known = " or ".join(f"{n} (line {line})" for n, line in sorted(levels.items()))
        return (
            self.line,
            self.col,
            f"this line is indented {self.indent(text)} space(s), but the keys around it are indented {known}: "
            "line it up with the keys it belongs beside",
        )


class _Builder:
    def __init__(self, path: str) -> None:
        self.path = path
        self.nodes = 0
        self.key_pos: dict[Path_, tuple[int, int]] = {}
        self.value_pos: dict[Path_, tuple[int, int]] = {}

    def build(self, node: yaml.Node) -> Loaded:
        data = self.convert(node, (), 0)
        return Loaded(self.path, data, self.key_pos, self.value_pos)

    def fail(self, node: yaml.Node, path: Path_, message: str) -> SopSyntaxError:
        m = node.start_mark
        return SopSyntaxError(self.path, m.line + 1, m.column + 1, format_path(path), message)

    def convert(self, node: yaml.Node, path: Path_, depth: int) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise self.fail(node, path, f"more than {MAX_NODES} values after expanding aliases")
        if depth > MAX_DEPTH:
            raise self.fail(node, path, f"nested deeper than {MAX_DEPTH} levels")
        self.value_pos.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node, path)
        if isinstance(node, yaml.SequenceNode):
            if node.tag != _TAG + "seq":
                raise self.fail(node, path, f"tag {node.tag} is not allowed; plain data only")
            return [self.convert(child, path + (i,), depth + 1) for i, child in enumerate(node.value)]
        if isinstance(node, yaml.MappingNode):
            if node.tag != _TAG + "map":
                raise self.fail(node, path, f"tag {node.tag} is not allowed; plain data only")
            return self.mapping(node, path, depth)
        raise self.fail(node, path, "unsupported YAML node")  # pragma: no cover

    def scalar(self, node: yaml.ScalarNode, path: Path_) -> Any:
        if node.tag == _TAG + "timestamp":
            return node.value  # dates stay text: no SOP field is a datetime
        if node.tag not in _SCALAR_TAGS:
            raise self.fail(node, path, f"tag {node.tag} is not allowed; plain data only")
        if node.tag == _TAG + "str":
            return node.value
        if node.tag == _TAG + "bool":
            # YAML 1.1's yes, On, off... stay text (`!!bool yes` too: the loader cannot tell them apart).
            return _BOOLEANS.get(node.value, node.value)
        try:
            value = _constructor.yaml_constructors[node.tag](_constructor, node)
        except (ValueError, TypeError, OverflowError, yaml.YAMLError):
            raise self.fail(node, path, f"{node.value!r} is not a valid {node.tag[len(_TAG) :]}") from None
        # .nan and .inf make every comparison with a bound false: no field wants them.
        if isinstance(value, float) and not math.isfinite(value):
            raise self.fail(node, path, f"expected a finite number, got {node.value}")
        return value

    def mapping(self, node: yaml.MappingNode, path: Path_, depth: int) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        merged: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _TAG + "merge":
                merged.update(self.merge(value_node, path, depth))
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                raise self.fail(key_node, path, "a key must be a plain scalar")
            key = self.scalar(key_node, path)
            if type(key) is str:  # keys are a small vocabulary: one string each, however many files
                key = sys.intern(key)
            if key in out:
                first = self.key_pos[path + (key,)]
                raise self.fail(key_node, path + (key,), f"duplicate key {key!r} (first at line {first[0]})")
            self.key_pos[path + (key,)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            out[key] = self.convert(value_node, path + (key,), depth + 1)
        for key, value in merged.items():
            out.setdefault(key, value)
        return out

    def merge(self, node: yaml.Node, path: Path_, depth: int) -> dict[Any, Any]:
        """``<<: *defaults``: keys written in the mapping itself win."""
        sources = node.value if isinstance(node, yaml.SequenceNode) else [node]
        merged: dict[Any, Any] = {}
        for src in reversed(sources):
            if not isinstance(src, yaml.MappingNode):
                raise self.fail(src, path, "'<<' merges mappings only")
            value = self.convert(src, path, depth + 1)
            merged.update(value)
        return merged
