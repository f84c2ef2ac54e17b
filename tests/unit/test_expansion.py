from ktune.local.expansion import expand, expand_env

VARS = {"A": "1", "LR": "0.001", "EMPTY": ""}


def test_defined_variable_is_replaced():
    assert expand("--lr=$(LR)", VARS) == "--lr=0.001"


def test_undefined_variable_is_kept_as_written():
    assert expand("$(MISSING) and $(A)", VARS) == "$(MISSING) and 1"


def test_double_dollar_escapes_a_reference():
    assert expand("$$(A)", VARS) == "$(A)"
    assert expand("$$$(A)", VARS) == "$1"


def test_lone_and_trailing_dollars_are_kept():
    assert expand("cost $5 $", VARS) == "cost $5 $"


def test_unclosed_reference_is_kept():
    assert expand("$(A", VARS) == "$(A"


def test_empty_value_and_adjacent_references():
    assert expand("$(EMPTY)$(A)$(A)", VARS) == "11"


def test_env_entries_see_earlier_entries_only():
    env = expand_env([("X", "$(A)-$(Y)"), ("Y", "y"), ("Z", "$(Y)$(X)")], {"A": "a"})
    assert env == {"A": "a", "X": "a-$(Y)", "Y": "y", "Z": "ya-$(Y)"}
