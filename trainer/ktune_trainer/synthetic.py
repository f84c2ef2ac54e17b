"""A synthetic ESCI-style e-commerce search data set, fully determined by a seed.

The catalog has leaf categories (each with a noun and synonyms) grouped in departments, brands,
colors with synonyms, per-department attributes, and complement categories (smartphone → phone
case, charger). Queries name a target product's category with some of its brand, color and
attributes, with synonyms, reordering and a few typos. Candidates are judged by the ESCI rules:

- E (Exact): the query's category and every stated constraint;
- S (Substitute): the same or a sibling category, but not Exact (a constraint broken);
- C (Complement): a category that complements the query's category;
- I (Irrelevant): the rest.

Like the real ESCI candidates (which a lexical engine retrieved), Irrelevant candidates often
share a brand or a color with the query, half of them are keyword-stuffed listings that repeat
the query's words, and complements often mention the query's product in their title, so word
overlap alone ranks poorly; knowing listing patterns, synonyms and categories ranks well.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from typing import TypedDict

from ktune_trainer.catalog_vocabulary import (
    ACCESSORY_DEPARTMENTS,
    ADJECTIVES,
    CATEGORIES,
    CATEGORY_BY_NAME,
    COLORS,
    DEPARTMENT_ATTRIBUTES,
    DEPARTMENT_BRANDS,
    DESCRIPTION_TEMPLATES,
    STUFFED_SHARE,
    STUFFING_TERMS,
    TITLE_TEMPLATES,
    Category,
)

LABELS = ("E", "S", "C", "I")
LABEL_SHARES = {"E": 0.10, "S": 0.40, "C": 0.10, "I": 0.40}
LABEL_NOISE = 0.05
MIN_CANDIDATES, MAX_CANDIDATES = 20, 40
SPLIT_SHARES = (("train", 0.70), ("validation", 0.15), ("test", 0.15))
@dataclass(frozen=True)
class Product:
    product_id: str
    category: str
    brand: str
    color: str  # base color
    attributes: tuple[tuple[str, str], ...]  # (attribute, value)
    title: str
    description: str
    bullet_point: str
    color_word: str  # the color as the listing spells it


@dataclass(frozen=True)
class Query:
    query_id: str
    text: str
    category: str
    brand: str | None
    color: str | None
    attributes: tuple[tuple[str, str], ...]


def esci_label(query: Query, product: Product) -> str:
    """The ESCI rule for one (query, product) pair, before label noise."""
    category = CATEGORY_BY_NAME[query.category]
    if product.category == query.category and _meets_constraints(query, product):
        return "E"
    if product.category in _substitutes(category):
        return "S"
    if product.category in category.complements:
        return "C"
    return "I"


def _substitutes(category: Category) -> tuple[str, ...]:
    """Same category and its siblings: the categories of the same department that are not complements."""
    return tuple(
        other.name
        for other in CATEGORIES
        if other.department == category.department and other.name not in category.complements
    )


def _meets_constraints(query: Query, product: Product) -> bool:
    if query.brand is not None and product.brand != query.brand:
        return False
    if query.color is not None and product.color != query.color:
        return False
    product_attributes = dict(product.attributes)
    return all(product_attributes.get(name) == value for name, value in query.attributes)


class _Fixed(TypedDict, total=False):
    """What a minted product must have (an unset or empty field is drawn at random)."""

    brand: str | None
    color: str | None
    attributes: dict[str, str]


@dataclass
class _Catalog:
    rng: random.Random
    products: list[Product] = field(default_factory=list)
    by_category: dict[str, list[Product]] = field(default_factory=dict)

    def mint(self, category: str, fixed: _Fixed | None = None, title_suffix: str = "") -> Product:
        """A new product of `category`; `fixed` pins brand, color or attributes."""
        fixed = fixed or {}
        rng = self.rng
        department = CATEGORY_BY_NAME[category].department
        brand = fixed.get("brand") or rng.choice(DEPARTMENT_BRANDS[department])
        color = fixed.get("color") or rng.choice(list(COLORS))
        attributes = dict(fixed.get("attributes", {}))
        for name, values in DEPARTMENT_ATTRIBUTES[department].items():
            attributes.setdefault(name, rng.choice(values))
        product = _listing(rng, f"p{len(self.products):06d}", category, str(brand), str(color), attributes)
        if title_suffix:
            product = replace(product, title=f"{product.title} {title_suffix}")
        self.products.append(product)
        self.by_category.setdefault(category, []).append(product)
        return product


def _listing(
    rng: random.Random, product_id: str, category: str, brand: str, color: str, attributes: dict[str, str]
) -> Product:
    """Title, description and bullet point from varied templates and synonyms."""
    nouns = CATEGORY_BY_NAME[category].nouns
    noun = nouns[0] if rng.random() < 0.5 else rng.choice(nouns[1:])
    color_word = COLORS[color][0] if rng.random() < 0.6 else rng.choice(COLORS[color][1:])
    shown = [value for value in attributes.values() if rng.random() < 0.7] or [next(iter(attributes.values()))]
    title = rng.choice(TITLE_TEMPLATES).format(brand=brand, noun=noun, attrs=" ".join(shown), color=color_word)
    complements = [CATEGORY_BY_NAME[name] for name in CATEGORY_BY_NAME[category].complements]
    if CATEGORY_BY_NAME[category].department in ACCESSORY_DEPARTMENTS and complements and rng.random() < 0.7:
        # "phone case for smartphone": the words of the main product appear in a complement's title.
        title += " for " + rng.choice(rng.choice(complements).nouns)
    sentence = " ".join(f"{name.capitalize()}: {value}." for name, value in attributes.items())
    description = rng.choice(DESCRIPTION_TEMPLATES).format(
        noun=rng.choice(nouns), brand=brand, color=color_word, sentence=sentence, adjective=rng.choice(ADJECTIVES)
    )
    bullet_point = "; ".join(f"{name}: {value}" for name, value in attributes.items())
    return Product(
        product_id=product_id,
        category=category,
        brand=brand,
        color=color,
        attributes=tuple(sorted(attributes.items())),
        title=title,
        description=description,
        bullet_point=bullet_point,
        color_word=color_word,
    )


def _typo(rng: random.Random, word: str) -> str:
    position = rng.randrange(1, len(word) - 1)
    kind = rng.randrange(3)
    if kind == 0:  # swap two neighbours
        return word[: position - 1] + word[position] + word[position - 1] + word[position + 1 :]
    if kind == 1:  # drop a letter
        return word[:position] + word[position + 1 :]
    return word[:position] + word[position] + word[position:]  # double a letter


def _query_for(rng: random.Random, query_id: str, target: Product) -> Query:
    """A shopper's query for `target`: its category noun plus some of its brand, color and attributes."""
    category = CATEGORY_BY_NAME[target.category]
    parts: list[str] = []
    brand = target.brand if rng.random() < 0.45 else None
    color = target.color if rng.random() < 0.55 else None
    attributes = tuple((name, value) for name, value in target.attributes if rng.random() < 0.35)
    if brand:
        parts.append(brand)
    if color:
        parts.append(COLORS[color][0] if rng.random() < 0.5 else rng.choice(COLORS[color][1:]))
    parts.extend(value for _name, value in attributes)
    if rng.random() < 0.3:
        rng.shuffle(parts)
    noun = rng.choice(category.nouns)
    words = [*parts, noun] if rng.random() < 0.7 else [noun, *parts]
    text = " ".join(words)
    tokens = [_typo(rng, token) if len(token) >= 5 and rng.random() < 0.06 else token for token in text.split()]
    return Query(query_id, " ".join(tokens), category.name, brand, color, attributes)


def _pick(rng: random.Random, pool: list[Product], count: int, taken: set[str]) -> list[Product]:
    available = [product for product in pool if product.product_id not in taken]
    chosen = rng.sample(available, min(count, len(available)))
    taken.update(product.product_id for product in chosen)
    return chosen


def _broken_constraint(rng: random.Random, query: Query) -> _Fixed:
    """Fixed fields for a same-category product that breaks one stated constraint (a Substitute)."""
    department = CATEGORY_BY_NAME[query.category].department
    fixed: _Fixed = {"brand": query.brand, "color": query.color, "attributes": dict(query.attributes)}
    stated = [key for key, value in (("brand", query.brand), ("color", query.color)) if value] + [
        f"attr:{name}" for name, _ in query.attributes]
    broken = rng.choice(stated)
    if broken == "brand":
        fixed["brand"] = rng.choice([b for b in DEPARTMENT_BRANDS[department] if b != query.brand])
    elif broken == "color":
        fixed["color"] = rng.choice([c for c in COLORS if c != query.color])
    else:
        name = broken.removeprefix("attr:")
        values = DEPARTMENT_ATTRIBUTES[department][name]
        fixed["attributes"][name] = rng.choice([v for v in values if v != dict(query.attributes)[name]])
    return fixed


def _candidates(rng: random.Random, catalog: _Catalog, query: Query, target: Product) -> list[tuple[Product, str]]:
    """20-40 judged candidates with about the ESCI label shares (before noise)."""
    total = rng.randint(MIN_CANDIDATES, MAX_CANDIDATES)
    wanted = {
        "E": max(1, round(total * rng.uniform(0.06, 0.14))),
        "C": round(total * rng.uniform(0.06, 0.14)),
        "S": round(total * rng.uniform(0.34, 0.46)),
    }
    wanted["I"] = total - sum(wanted.values())
    category = CATEGORY_BY_NAME[query.category]
    taken = {target.product_id}
    chosen: list[Product] = [target]
    fixed_exact: _Fixed = {"brand": query.brand, "color": query.color, "attributes": dict(query.attributes)}

    same = catalog.by_category.get(query.category, [])
    exact_pool = [p for p in same if esci_label(query, p) == "E"]
    chosen += _pick(rng, exact_pool, wanted["E"] - 1, taken)
    while len(chosen) < wanted["E"]:
        chosen.append(catalog.mint(query.category, fixed_exact))
        taken.add(chosen[-1].product_id)

    substitute_pool = [
        p for name in _substitutes(category) for p in catalog.by_category.get(name, []) if esci_label(query, p) == "S"
    ]
    substitutes = _pick(rng, substitute_pool, wanted["S"], taken)
    has_constraints = bool(query.brand or query.color or query.attributes)
    siblings = [name for name in _substitutes(category) if name != query.category]
    while len(substitutes) < wanted["S"]:
        if has_constraints and rng.random() < 0.6:
            product = catalog.mint(query.category, _broken_constraint(rng, query))
        else:
            product = catalog.mint(rng.choice(siblings))
        substitutes.append(product)
        taken.add(product.product_id)
    chosen += substitutes

    if category.complements:
        complement_pool = [p for name in category.complements for p in catalog.by_category.get(name, [])]
        complements = _pick(rng, complement_pool, wanted["C"], taken)
        while len(complements) < wanted["C"]:
            complements.append(catalog.mint(rng.choice(category.complements)))
            taken.add(complements[-1].product_id)
        chosen += complements
    else:
        wanted["I"] += wanted["C"]

    # Irrelevant products, half of them sharing the brand or the color the query asks for.
    unrelated = [
        c.name for c in CATEGORIES if c.department != category.department and c.name not in category.complements
    ]
    irrelevant: list[Product] = []
    while len(irrelevant) < wanted["I"]:
        other = rng.choice(unrelated)
        fixed: _Fixed = {}
        if query.color and rng.random() < 0.5:
            fixed["color"] = query.color
        if query.brand and query.brand in DEPARTMENT_BRANDS[CATEGORY_BY_NAME[other].department]:
            fixed["brand"] = query.brand
        if rng.random() < STUFFED_SHARE:
            product = catalog.mint(other, fixed, title_suffix=_keyword_stuffing(rng, query))
        else:
            reused = _pick(rng, catalog.by_category.get(other, []), 1, taken) if not fixed else []
            product = reused[0] if reused else catalog.mint(other, fixed)
        taken.add(product.product_id)
        irrelevant.append(product)
    chosen += irrelevant

    judged = [(product, esci_label(query, product)) for product in chosen]
    rng.shuffle(judged)
    return judged


def _keyword_stuffing(rng: random.Random, query: Query) -> str:
    """Search terms a seller appends to an unrelated listing to be found for popular queries."""
    words = [rng.choice(CATEGORY_BY_NAME[query.category].nouns)]
    if query.brand:
        words.append(query.brand)
    if query.color:
        words.append(rng.choice(COLORS[query.color]))
    words += [value for _name, value in query.attributes]
    words += rng.sample(STUFFING_TERMS, 2)
    rng.shuffle(words)
    return "| " + " ".join(words)


def _noisy(rng: random.Random, label: str) -> str:
    if rng.random() < LABEL_NOISE:
        return rng.choice([other for other in LABELS if other != label])
    return label


def _split_of(position: int, queries: int) -> str:
    bound = 0.0
    for name, share in SPLIT_SHARES:
        bound += share
        if position < round(bound * queries):
            return name
    return SPLIT_SHARES[-1][0]


def generate(queries: int = 400, seed: int = 1) -> list[dict[str, str]]:
    """ESCI-shaped rows (one per judged query-product pair), the same for the same arguments."""
    if queries < 10:
        raise ValueError(f"queries={queries}: need at least 10 to fill train, validation and test")
    rng = random.Random(seed)
    catalog = _Catalog(rng)
    for _ in range(queries * 4):
        catalog.mint(rng.choice(CATEGORIES).name)
    split_order = list(range(queries))
    rng.shuffle(split_order)
    rows: list[dict[str, str]] = []
    for number in range(queries):
        target = catalog.mint(rng.choice(CATEGORIES).name)
        query = _query_for(rng, f"q{number:05d}", target)
        split = _split_of(split_order[number], queries)
        for product, label in _candidates(rng, catalog, query, target):
            rows.append(
                {
                    "query_id": query.query_id,
                    "query": query.text,
                    "product_id": product.product_id,
                    "product_title": product.title,
                    "product_description": product.description,
                    "product_bullet_point": product.bullet_point,
                    "product_brand": product.brand,
                    "product_color": product.color_word,
                    "esci_label": _noisy(rng, label),
                    "split": split,
                }
            )
    return rows
