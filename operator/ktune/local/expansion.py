"""Kubernetes' `$(VAR)` expansion for container `command`, `args` and `env` values.

The local runner and the test node agent must expand exactly as the kubelet does, so that one
TuningJob behaves the same on a laptop and on a cluster. The rules (from Kubernetes'
`third_party/forked/golang/expansion`):
- `$(NAME)` becomes the value of NAME when NAME is defined, and stays as written when it is not;
- `$$` becomes `$`, so `$$(NAME)` yields the literal text `$(NAME)`;
- any other `$` is kept, and an unclosed `$(` is kept as written.
"""

from collections.abc import Iterable, Mapping

_OPERATOR = "$"
_OPENER = "("
_CLOSER = ")"


def expand(text: str, variables: Mapping[str, str]) -> str:
    """Expand `$(VAR)` references in ``text`` from ``variables`` the way the kubelet does."""
    out: list[str] = []
    checkpoint = 0
    cursor = 0
    while cursor < len(text):
        if text[cursor] == _OPERATOR and cursor + 1 < len(text):
            out.append(text[checkpoint:cursor])
            replacement, advance = _read_reference(text[cursor + 1 :], variables)
            out.append(replacement)
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    out.append(text[checkpoint:])
    return "".join(out)


def _read_reference(rest: str, variables: Mapping[str, str]) -> tuple[str, int]:
    """What the text after a `$` expands to, and how many characters of ``rest`` it consumed."""
    first = rest[0]
    if first == _OPERATOR:
        return _OPERATOR, 1
    if first == _OPENER:
        closer = rest.find(_CLOSER, 1)
        if closer == -1:
            return _OPERATOR + _OPENER, 1
        name = rest[1:closer]
        return variables.get(name, f"$({name})"), closer + 1
    return _OPERATOR + first, 1


def expand_env(env: Iterable[tuple[str, str]], base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Resolve a container's ordered `env` list: each value may refer to variables defined before it.

    ``base`` holds variables visible to every entry (for ktune: the injected `KTUNE_*` contract
    variables, which Kubernetes would see first because the operator puts them first).
    """
    resolved: dict[str, str] = dict(base or {})
    for name, value in env:
        resolved[name] = expand(value, resolved)
    return resolved
