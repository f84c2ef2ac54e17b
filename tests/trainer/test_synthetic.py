from collections import Counter

import pytest

from ktune_trainer.synthetic import LABEL_SHARES, Product, Query, esci_label, generate


@pytest.fixture(scope="module")
def rows():
    return generate(queries=300, seed=5)


def test_same_seed_gives_the_same_rows_and_another_seed_different_ones(rows):
    assert generate(queries=300, seed=5) == rows
    assert generate(queries=300, seed=6) != rows


def test_label_shares_are_close_to_esci(rows):
    counts = Counter(row["esci_label"] for row in rows)
    for label, share in LABEL_SHARES.items():
        assert counts[label] / len(rows) == pytest.approx(share, abs=0.04), label


def test_every_query_has_20_to_40_candidates_and_one_split(rows):
    per_query = Counter(row["query_id"] for row in rows)
    assert len(per_query) == 300
    assert min(per_query.values()) >= 20
    assert max(per_query.values()) <= 40
    splits = {}
    for row in rows:
        assert splits.setdefault(row["query_id"], row["split"]) == row["split"]
    shares = Counter(splits.values())
    assert shares["train"] == 210 and shares["validation"] == 45 and shares["test"] == 45


def _product(category: str, brand: str = "voltra", color: str = "red", storage: str = "128gb") -> Product:
    return Product("p1", category, brand, color, (("network", "5g"), ("storage", storage)), "t", "d", "b", color)


def test_esci_rules_judge_category_and_stated_constraints():
    query = Query("q1", "red voltra cell phone", "smartphone", "voltra", "red", ())
    assert esci_label(query, _product("smartphone")) == "E"
    assert esci_label(query, _product("smartphone", color="blue")) == "S"  # a constraint broken
    assert esci_label(query, _product("tablet")) == "S"  # a sibling category
    assert esci_label(query, _product("phone case")) == "C"
    assert esci_label(query, _product("running shoes")) == "I"


def test_unstated_attributes_do_not_matter_but_stated_ones_do():
    query = Query("q1", "128gb smartphone", "smartphone", None, None, (("storage", "128gb"),))
    assert esci_label(query, _product("smartphone", brand="nexon", color="pink")) == "E"
    assert esci_label(query, _product("smartphone", storage="256gb")) == "S"
