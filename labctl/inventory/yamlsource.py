"""YAML with line numbers, shared by the inventory and runbook loaders: the document composed
into nodes by hand (so duplicate keys are refused, which PyYAML's loader silently overwrites)
and a map from each field path to the 1-based line that defines it, for errors that name
`file:line` and the dotted field (pure).
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Union

import yaml

from labctl.errors import InventoryError

PathKey = tuple[Union[str, int], ...]

#: What a valid value looks like, by pydantic error type (appended to its message).
VALID_HINTS = {
    "ip_v4_address": "an IPv4 address like 192.168.44.130",
    "ip_v4_network": "a network with zero host bits like 62.135.200.0/24",
    "int_type": "a whole number without quotes",
    "int_parsing": "a whole number without quotes",
    "bool_type": "true or false",
    "string_type": "a string",
    "list_type": "a YAML list, e.g. [a, b]",
    "model_type": "a mapping of keys to values",
    "missing": "this field is required",
    "literal_error": "",
}


class Located:
    """YAML data plus a map from field path to the 1-based line that defines it."""

    def __init__(self, source: str):
        self.source = source
        self.lines: dict[PathKey, int] = {}
        self._constructor = yaml.constructor.SafeConstructor()

    def build(self, node: yaml.Node, path: PathKey, depth: int = 0) -> Any:
        if depth > 50:
            raise InventoryError(f"{self.source}:{line_of(node)}: YAML nested too deeply")
        self.lines.setdefault(path, line_of(node))
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = self._construct(key_node)
                if not isinstance(key, str):
                    raise InventoryError(
                        f"{self.source}:{line_of(key_node)}: {dotted(path) or 'top level'}: "
                        f"key {key!r} is not a name", hint="keys are plain words like `address`"
                    )
                if key in out:
                    raise InventoryError(
                        f"{self.source}:{line_of(key_node)}: {dotted((*path, key))}: duplicate key "
                        f"(first at line {self.lines[(*path, key)]})", hint="remove one of them"
                    )
                self.lines[(*path, key)] = line_of(key_node)
                out[key] = self.build(value_node, (*path, key), depth + 1)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(n, (*path, i), depth + 1) for i, n in enumerate(node.value)]
        return self._construct(node)

    def _construct(self, node: yaml.Node) -> Any:
        """A scalar's value; a tag the safe loader does not know (`!!python/object:...`) is
        refused naming its line, like any other bad YAML."""
        try:
            return self._constructor.construct_object(node)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise InventoryError(f"{self.source}:{line_of(node)}: not valid here: {problem}",
                                 hint="remove the YAML tag (a value is plain text, a number, "
                                      "true/false, a list or a mapping)") from None


def line_of(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def dotted(path: PathKey) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def nearest_line(loc: PathKey, lines: dict[PathKey, int]) -> int:
    for cut in range(len(loc), -1, -1):
        if loc[:cut] in lines:
            return lines[loc[:cut]]
    return 1




def compose_mapping(text: str, source: str,
                    error: Callable[..., Exception]) -> Optional[yaml.MappingNode]:
    """The document's top node if it is a mapping, else None; not YAML at all raises
    `error(message, hint=...)` naming `source:line`."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        too_big = root is not None and expanded_size(root) > MAX_EXPANDED_NODES
    except RecursionError:
        raise error(f"{source}: nested too deeply to be an inventory or runbook",
                    hint="check the file: lists or mappings nest thousands of levels") from None
    except yaml.reader.ReaderError as exc:  # a control character: name its line, not offset
        line = text.count("\n", 0, exc.position) + 1
        char = exc.character if isinstance(exc.character, int) else ord(exc.character[:1] or "?")
        raise error(f"{source}:{line}: not valid YAML: character U+{char:04X} is not allowed "
                    "in YAML text", hint="remove the control character") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise error(f"{where}: not valid YAML: {problem}",
                    hint="check indentation and quoting near that line") from None
    if too_big:
        raise error(f"{source}: aliases expand to more than {MAX_EXPANDED_NODES:,} YAML nodes",
                    hint="an inventory or runbook never needs that many; a file of nested "
                         "aliases (a 'billion laughs' YAML bomb) is refused before it expands")
    return root if isinstance(root, yaml.MappingNode) else None


MAX_EXPANDED_NODES = 100_000


def expanded_size(root: yaml.Node) -> int:
    """How many nodes the document has once every alias is expanded (aliases are shared node
    objects after `compose`; each is counted once per use, in time linear in the file)."""
    memo: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in memo:
            return memo[key]
        memo[key] = 1                       # (a recursive alias counts once)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(child) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in node.value)
        total = min(total, MAX_EXPANDED_NODES + 1)
        memo[key] = total
        return total

    return size(root)
