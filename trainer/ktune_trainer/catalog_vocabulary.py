"""The vocabulary of the synthetic catalog: categories (nouns, synonyms, complements) in departments,
brands, colors, attributes, and the templates listings are written from (see `ktune_trainer.synthetic`)."""

from __future__ import annotations

from dataclasses import dataclass

# Listings in these departments name the product they go with ("charger for smartphone").
ACCESSORY_DEPARTMENTS = frozenset(
    {"phone accessories", "clothing accessories", "kitchen supplies", "computer accessories"}
)


@dataclass(frozen=True)
class Category:
    name: str
    department: str
    nouns: tuple[str, ...]  # nouns[0] is the usual one; the others are synonyms
    complements: tuple[str, ...] = ()


DEPARTMENT_ATTRIBUTES: dict[str, dict[str, tuple[str, ...]]] = {
    "phones": {"storage": ("64gb", "128gb", "256gb", "512gb"), "network": ("5g", "4g lte", "wifi only")},
    "phone accessories": {
        "material": ("silicone", "leather", "plastic"),
        "feature": ("fast charging", "magnetic", "slim"),
    },
    "audio": {"connection": ("wireless", "wired"), "feature": ("noise cancelling", "waterproof", "bass boost")},
    "footwear": {
        "size": ("size 7", "size 8", "size 9", "size 10", "size 11"),
        "material": ("leather", "mesh", "suede"),
    },
    "clothing accessories": {"pack": ("3 pack", "6 pack", "single"), "size": ("small", "medium", "large")},
    "kitchen appliances": {
        "capacity": ("1 liter", "1.5 liter", "2 liter"),
        "material": ("stainless steel", "glass", "plastic"),
    },
    "kitchen supplies": {"pack": ("2 pack", "12 pack", "single"), "material": ("ceramic", "paper", "stainless steel")},
    "computers": {"memory": ("8gb ram", "16gb ram", "32gb ram"), "screen": ("13 inch", "15 inch", "27 inch")},
    "computer accessories": {"connection": ("wireless", "usb c", "bluetooth"), "feature": ("ergonomic", "slim", "rgb")},
}

CATEGORIES: tuple[Category, ...] = (
    Category(
        "smartphone",
        "phones",
        ("smartphone", "cell phone", "mobile phone"),
        ("phone case", "charger", "screen protector"),
    ),
    Category("tablet", "phones", ("tablet", "tab", "touchscreen tablet"), ("charger", "screen protector")),
    Category("smartwatch", "phones", ("smartwatch", "fitness watch", "smart watch"), ("charger",)),
    Category("phone case", "phone accessories", ("phone case", "phone cover", "bumper case"), ("smartphone",)),
    Category("charger", "phone accessories", ("charger", "power adapter", "charging brick"), ("smartphone", "tablet")),
    Category(
        "screen protector", "phone accessories", ("screen protector", "tempered glass", "screen guard"), ("smartphone",)
    ),
    Category("headphones", "audio", ("headphones", "headset", "over ear headphones"), ("charger",)),
    Category("earbuds", "audio", ("earbuds", "earphones", "in ear buds"), ("charger",)),
    Category("speaker", "audio", ("speaker", "bluetooth speaker", "portable speaker"), ()),
    Category("running shoes", "footwear", ("running shoes", "sneakers", "trainers"), ("socks", "insoles")),
    Category("hiking boots", "footwear", ("hiking boots", "trail boots", "walking boots"), ("socks", "insoles")),
    Category("sandals", "footwear", ("sandals", "flip flops", "slides"), ()),
    Category(
        "socks", "clothing accessories", ("socks", "athletic socks", "crew socks"), ("running shoes", "hiking boots")
    ),
    Category(
        "insoles",
        "clothing accessories",
        ("insoles", "shoe inserts", "arch supports"),
        ("running shoes", "hiking boots"),
    ),
    Category("backpack", "clothing accessories", ("backpack", "rucksack", "daypack"), ()),
    Category(
        "coffee maker",
        "kitchen appliances",
        ("coffee maker", "coffee machine", "drip brewer"),
        ("coffee filters", "mug", "descaler"),
    ),
    Category("kettle", "kitchen appliances", ("kettle", "electric kettle", "water boiler"), ("mug", "descaler")),
    Category("blender", "kitchen appliances", ("blender", "smoothie maker", "food mixer"), ()),
    Category(
        "coffee filters", "kitchen supplies", ("coffee filters", "paper filters", "filter cones"), ("coffee maker",)
    ),
    Category("mug", "kitchen supplies", ("mug", "coffee cup", "travel mug"), ("coffee maker", "kettle")),
    Category(
        "descaler",
        "kitchen supplies",
        ("descaler", "descaling solution", "limescale remover"),
        ("coffee maker", "kettle"),
    ),
    Category("laptop", "computers", ("laptop", "notebook", "notebook computer"), ("laptop bag", "mouse", "usb hub")),
    Category("monitor", "computers", ("monitor", "display", "computer screen"), ("usb hub",)),
    Category("desktop pc", "computers", ("desktop pc", "desktop computer", "tower pc"), ("mouse", "monitor")),
    Category("mouse", "computer accessories", ("mouse", "computer mouse", "trackball"), ("laptop", "desktop pc")),
    Category("laptop bag", "computer accessories", ("laptop bag", "laptop sleeve", "notebook case"), ("laptop",)),
    Category("usb hub", "computer accessories", ("usb hub", "docking station", "port adapter"), ("laptop", "monitor")),
)
CATEGORY_BY_NAME = {category.name: category for category in CATEGORIES}

# Brands per department; a few span departments, as real brands do.
DEPARTMENT_BRANDS: dict[str, tuple[str, ...]] = {
    "phones": ("voltra", "nexon", "orbis", "kairo"),
    "phone accessories": ("voltra", "gripco", "shieldy", "ampere"),
    "audio": ("sonique", "nexon", "bassline", "kairo"),
    "footwear": ("stridex", "trailmark", "velo", "northpeak"),
    "clothing accessories": ("trailmark", "comfy", "northpeak", "packwell"),
    "kitchen appliances": ("brewmaster", "kitchora", "vitamix pro", "steamly"),
    "kitchen supplies": ("brewmaster", "kitchora", "mugsy", "cleanse"),
    "computers": ("orbis", "lumen", "techna", "nexon"),
    "computer accessories": ("techna", "logix", "packwell", "lumen"),
}

# Base color → words a title or a shopper may use for it (the base word first).
COLORS: dict[str, tuple[str, ...]] = {
    "black": ("black", "jet black", "onyx"),
    "white": ("white", "ivory", "snow"),
    "red": ("red", "crimson", "scarlet"),
    "blue": ("blue", "navy", "cobalt"),
    "green": ("green", "olive", "emerald"),
    "gray": ("gray", "grey", "graphite"),
    "pink": ("pink", "rose", "blush"),
    "silver": ("silver", "metallic", "chrome"),
}

TITLE_TEMPLATES = (
    "{brand} {noun} {attrs} {color}",
    "{brand} {color} {noun} with {attrs}",
    "{noun} by {brand}, {color}, {attrs}",
    "{color} {noun} {attrs} | {brand}",
    "{brand} {attrs} {noun} in {color}",
)
DESCRIPTION_TEMPLATES = (
    "This {noun} from {brand} comes in {color}. {sentence}",
    "{sentence} A {adjective} {noun} in {color}, made by {brand}.",
    "Meet the {brand} {noun}: {adjective}, {color} and built to last. {sentence}",
    "{adjective} {noun} for everyday use. {sentence}",
)
# Irrelevant candidates that are keyword-stuffed listings: a seller appends popular search terms
# to an unrelated product. They match a query word for word (lexical retrieval's classic
# failure); what gives them away is the pattern, which a trained ranker can learn.
STUFFED_SHARE = 0.5
STUFFING_TERMS = ("best seller", "gift", "cheap", "deal", "top rated", "2024 new", "for men women", "free shipping")
ADJECTIVES = ("durable", "lightweight", "premium", "compact", "popular", "classic", "new", "reliable")
