"""YAML as Kubernetes reads it: the values kubectl sends to the API server, as the operator reads them back.

kubectl turns a YAML file into JSON (sigs.k8s.io/yaml over its fork of go-yaml v2) before the API server
sees it, and the operator reads that JSON back. Neither YAML 1.1 (PyYAML's defaults) nor YAML 1.2 is what
it does. Measured with kubectl 1.32 (`kubectl label --local -o json -f FILE x=y` parses offline):
- numbers: `1e-5`, `1.e3`, `.5` are floats, `0o17`, `017`, `0x1F`, `0b101`, `1_000` integers (underscores
  anywhere in a number starting with a digit or sign are dropped); `08` is the float 8; sexagesimal
  `1:30` and dates stay strings; `1e400` (out of range) stays a string;
- booleans are YAML 1.1's plus `y`/`n` in any of `y, Y, yes, Yes, YES, on, On, ON, true, True, TRUE` (and
  the matching false words); nulls are `~`, `null`, `Null`, `NULL` and nothing;
- `.inf` and `.nan` cannot become JSON: kubectl refuses the file;
- map keys become strings (`1` -> "1", `y` -> "true", `1.5` -> "1.5"); a null key is refused;
- through JSON, a whole float is a whole number (`5.0`, `1e5` arrive as 5, 100000) and an integer outside
  int64 arrives as a float; so `load_all` returns exactly what the operator reads from the API server.
`KubeDumper` writes YAML that kubectl reads back as the same values (it quotes `y`, `0o17` and `1e-5`).
"""

from __future__ import annotations

import math
import re
import struct
from decimal import Decimal
from typing import IO, Any

import yaml
from yaml.constructor import ConstructorError

NUMBER_TAG = "tag:ktune.dev,2026:kubectl-number"
"""The tag of a plain scalar kubectl may read as a number (it starts with a digit, sign or dot)."""

_INT64 = range(-(2**63), 2**63)
_UINT64_MAX = 2**64 - 1
_BOOLS = {word: value for value, words in ((True, "y Y yes Yes YES on On ON true True TRUE"),
                                           (False, "n N no No NO off Off OFF false False FALSE"))
          for word in words.split()}
_NOT_JSON = {f"{sign}.{word}" for sign in ("", "+", "-") for word in ("inf", "Inf", "INF")} | {".nan", ".NaN", ".NAN"}
_GO_INT = re.compile(r"[-+]?(0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|0[0-7]*|[1-9][0-9]*)\Z")
_OCTAL_WITHOUT_O = re.compile(r"0[0-7]+\Z")
_YAML_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?\Z")
_DOT_FLOAT = re.compile(r"\.[0-9](_?[0-9])*([eE][-+]?[0-9](_?[0-9])*)?\Z")


def as_json(value: int | float) -> int | float:
    """A number as the API server stores it and the operator reads it: through JSON and Go's int64/float64."""
    if isinstance(value, int) and value in _INT64:
        return value
    number = float(value)
    # Go writes a float64 below 1e21 in plain digits, the shortest that read back the same, zero-padded
    return int(Decimal(repr(number))) if number.is_integer() and abs(number) < 1e21 else number


def _go_int(text: str) -> int | None:
    """strconv.ParseInt(text, 0, 64), then ParseUint for unsigned values past int64; None when neither parses."""
    if not _GO_INT.match(text):
        return None
    sign, digits = (-1, text[1:]) if text[0] == "-" else (1, text.lstrip("+"))
    value = sign * (int(digits, 8) if _OCTAL_WITHOUT_O.match(digits) else int(digits, 0))
    return value if value in _INT64 or (text[0] not in "+-" and 0 <= value <= _UINT64_MAX) else None


def _go_value(text: str) -> int | float | str:
    """go-yaml v2's value of a plain scalar starting with a digit, sign or dot: an int, a float or the text."""
    if text in _NOT_JSON:
        raise ValueError(f"{text} has no JSON form (kubectl refuses the file); quote it for a string")
    if text.startswith("."):
        return float(text) if _DOT_FLOAT.match(text) else text
    plain = text.replace("_", "")
    whole = _go_int(plain)
    if whole is not None:
        return whole
    if _YAML_FLOAT.match(plain) and math.isfinite(number := float(plain)):
        return number
    return text


def kubectl_scalar(text: str) -> int | float | str:
    """The value the operator reads for a plain scalar starting with a digit, sign or dot; ValueError for .inf."""
    value = _go_value(text)
    return value if isinstance(value, str) else as_json(value)


def _go_float32_key(value: float) -> str:
    """strconv.FormatFloat(value, 'g', -1, 32): how sigs.k8s.io/yaml writes a float map key."""
    if math.isnan(value):
        return ".nan"
    try:
        single = struct.unpack("f", struct.pack("f", value))[0]
    except OverflowError:  # past float32's range: Go's float32 conversion makes it infinite
        single = math.copysign(math.inf, value)
    if math.isinf(single):
        return ".inf" if single > 0 else "-.inf"
    shortest = next(text for text in (f"{single:.{precision}e}" for precision in range(9))
                    if struct.unpack("f", struct.pack("f", float(text)))[0] == single)
    mantissa, exponent = shortest.split("e")
    power = int(exponent)
    digits = mantissa.replace(".", "").lstrip("-").rstrip("0") or "0"
    sign = "-" if math.copysign(1, single) < 0 else ""
    if power < -4 or power >= 6:  # Go's shortest %g writes an exponent from 1e6 up and below 1e-4
        fraction = f".{digits[1:]}" if len(digits) > 1 else ""
        return f"{sign}{digits[0]}{fraction}e{'-' if power < 0 else '+'}{abs(power):02d}"
    if power < 0:
        return f"{sign}0.{'0' * (-power - 1)}{digits}"
    whole, fraction = digits[:power + 1].ljust(power + 1, "0"), digits[power + 1:]
    return f"{sign}{whole}{'.' + fraction if fraction else ''}"


def _json_key(key: Any, node: yaml.Node) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, int):
        return str(key)
    if isinstance(key, float):
        return _go_float32_key(key)
    raise ConstructorError(None, None, f"a map key kubectl cannot turn into JSON (got {key!r}); quote it",
                           node.start_mark)


class KubeLoader(yaml.SafeLoader):
    """PyYAML's safe loader with kubectl's scalars and JSON's map keys (see the module docstring)."""

    def construct_kubectl_number(self, node: yaml.ScalarNode) -> int | float | str:
        try:
            return kubectl_scalar(self.construct_scalar(node))
        except ValueError as error:
            raise ConstructorError(None, None, str(error), node.start_mark) from None

    def construct_kubectl_bool(self, node: yaml.ScalarNode) -> bool:
        return _BOOLS[self.construct_scalar(node)]

    def construct_json_int(self, node: yaml.ScalarNode) -> int | float:
        return as_json(self.construct_yaml_int(node))

    def construct_json_float(self, node: yaml.ScalarNode) -> int | float:
        number = self.construct_yaml_float(node)
        if not math.isfinite(number):
            raise ConstructorError(None, None, f"{node.value} has no JSON form (kubectl refuses the file)",
                                   node.start_mark)
        return as_json(number)

    def construct_timestamp_text(self, node: yaml.ScalarNode) -> str:
        """An explicit !!timestamp: its text (go-yaml v2 hands a timestamp to JSON as a string too)."""
        return str(self.construct_scalar(node))

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        """A mapping whose keys are strings made as JSON's are, before they meet (`1` and `true` are two keys)."""
        self.flatten_mapping(node)
        return {_json_key(self._key(key_node), key_node): self.construct_object(value_node, deep=deep)
                for key_node, value_node in node.value}

    def _key(self, node: yaml.Node) -> Any:
        """A key as go-yaml v2 types it: `1e7` stays a float (written "1e+07"), it never goes through JSON."""
        if isinstance(node, yaml.ScalarNode) and node.tag == NUMBER_TAG:
            try:
                return _go_value(node.value)
            except ValueError:  # .inf or .nan: a key may be one (it is written ".inf", ".nan")
                return float(node.value.replace(".", ""))
        return self.construct_object(node, deep=True)


class KubeDumper(yaml.SafeDumper):
    """PyYAML's safe dumper that quotes every string kubectl would read as something else."""

    def resolve(self, kind: type[yaml.Node], value: str, implicit: tuple[bool, bool]) -> str:
        tag: str = super().resolve(kind, value, implicit)  # type: ignore[no-untyped-call]
        if tag != NUMBER_TAG:
            return tag
        try:
            number = _go_value(value)
        except ValueError:
            return "tag:yaml.org,2002:float"
        if isinstance(number, str):
            return self.DEFAULT_SCALAR_TAG
        return "tag:yaml.org,2002:int" if isinstance(number, int) else "tag:yaml.org,2002:float"


for _cls in (KubeLoader, KubeDumper):
    _cls.yaml_implicit_resolvers = {}  # none of PyYAML's: only these
    _cls.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(f"(?:{'|'.join(_BOOLS)})\\Z"),
                               list("yYnNoOtTfF"))
    _cls.add_implicit_resolver("tag:yaml.org,2002:null", re.compile(r"(~|null|Null|NULL|)\Z"), ["~", "n", "N", ""])
    _cls.add_implicit_resolver("tag:yaml.org,2002:merge", re.compile(r"<<\Z"), ["<"])
    _cls.add_implicit_resolver(NUMBER_TAG, re.compile(r"[-+.0-9]"), list("-+.0123456789"))
KubeLoader.add_constructor(NUMBER_TAG, KubeLoader.construct_kubectl_number)
KubeLoader.add_constructor("tag:yaml.org,2002:bool", KubeLoader.construct_kubectl_bool)
KubeLoader.add_constructor("tag:yaml.org,2002:int", KubeLoader.construct_json_int)
KubeLoader.add_constructor("tag:yaml.org,2002:float", KubeLoader.construct_json_float)
KubeLoader.add_constructor("tag:yaml.org,2002:timestamp", KubeLoader.construct_timestamp_text)


def load_all(stream: str | IO[str]) -> list[Any]:
    """Every non-empty document of a YAML stream, read as kubectl reads it; raises yaml.YAMLError."""
    return [document for document in yaml.load_all(stream, Loader=KubeLoader) if document is not None]


def load(stream: str | IO[str]) -> Any:
    """The one document of a YAML stream, read as kubectl reads it; raises yaml.YAMLError."""
    return yaml.load(stream, Loader=KubeLoader)


def dump(value: Any) -> str:
    """YAML that kubectl reads back as `value` (keys in the given order)."""
    return yaml.dump(value, Dumper=KubeDumper, sort_keys=False)
