"""Safe YAML loading that keeps source positions.

Only plain data is built: no Python tags, no custom tags, duplicate keys refused,
alias expansion and nesting bounded, and a size limit on files. Every failure is a
:class:`SopSyntaxError` naming the file, line and column.
"""

from __future__ import annotations

import math
import os
import stat
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
        mark = e.problem_mark or e.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = e.problem or e.context or "malformed YAML"
        if _char_at(source, line, col) == "\t":
            problem = "a tab character; YAML is indented with spaces only"
        raise SopSyntaxError(path, line, col, "", f"malformed YAML: {problem}") from None
    except (yaml.YAMLError, UnicodeError, ValueError) as e:
        raise SopSyntaxError(path, 1, 1, "", f"malformed YAML: {e}") from None
    except RecursionError:
        raise SopSyntaxError(path, 1, 1, "", f"nested deeper than {MAX_DEPTH} levels") from None
    if node is None:
        raise SopSyntaxError(path, 1, 1, "", "the file is empty; expected a mapping")
    return _Builder(path).build(node)


def _char_at(source: str | bytes, line: int, col: int) -> str:
    text = source.decode("utf-8", "replace") if isinstance(source, bytes) else source
    lines = text.splitlines()
    if 0 < line <= len(lines) and 0 < col <= len(lines[line - 1]):
        return lines[line - 1][col - 1]
    return ""


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
