"""The synthetic product catalogue: a 3-level taxonomy and the products in it.

Why it looks the way it does: an ensemble only beats its best member when the members make
different mistakes, so the text carries several partly independent, partly misleading kinds of
evidence, as real listings do:

- every leaf has a name word and five signature words; two of the five are borrowed from sibling
  leaves, and the category's own words are shared by all 24 siblings, so siblings are confused
  realistically;
- brands belong to a category (three per leaf, sometimes a sibling's): they narrow the answer
  down, never to one leaf;
- the kind noun ("holders", "kits") is shared across the whole taxonomy;
- titles and descriptions are written independently (different samples of the evidence), so a
  title-only and a description-only model see different things; a quarter of the descriptions
  are missing or one sentence long;
- half the titles are in Title Case, words get typos and trailing punctuation (fastText is
  case-sensitive and splits on whitespace only: `Velmora` and `velmora,` are not `velmora`;
  subword and lower-casing character n-gram models cope, plain word models do not);
- 2 % of the labels are a sibling's (irreducible noise), 2 % of the items say almost nothing;
- one new leaf, `Office Products > Gift Cards > E-Gift Cards`, has only 4 training items but
  always says "eGift" in its title: the manifest's keyword rule knows what the models could not
  learn.

Everything is drawn from one seeded `random.Random`, so a run writes the same bytes every time.
"""

import json
import random

SEED = 20241127
DEPARTMENTS = {
    "Home & Kitchen": [
        "Cookware", "Bakeware", "Cutlery", "Small Appliances", "Bedding", "Bath Linens", "Storage",
        "Lighting", "Furniture", "Home Decor", "Cleaning Supplies", "Tableware", "Drinkware",
        "Coffee & Tea", "Kitchen Utensils", "Rugs", "Curtains", "Candles", "Laundry", "Wall Art",
        "Clocks", "Mirrors", "Pillows", "Vacuums", "Food Storage",
    ],
    "Electronics": [
        "Headphones", "Speakers", "Televisions", "Cameras", "Phone Accessories", "Laptops",
        "Tablets", "Monitors", "Keyboards", "Mice", "Cables", "Chargers", "Smart Home", "Wearables",
        "Drones", "Projectors", "Microphones", "Routers", "Storage Drives", "Printers",
        "Gaming Consoles", "Car Electronics", "Radios", "Batteries", "Video Accessories",
    ],
    "Clothing & Shoes": [
        "Dresses", "Shirts", "Trousers", "Jeans", "Jackets", "Coats", "Sweaters", "Skirts",
        "Shorts", "Socks", "Underwear", "Sleepwear", "Swimwear", "Activewear", "Sneakers", "Boots",
        "Sandals", "Heels", "Slippers", "Hats", "Scarves", "Gloves", "Belts", "Ties", "Uniforms",
    ],
    "Sports & Outdoors": [
        "Camping", "Hiking", "Cycling", "Running", "Fitness Equipment", "Yoga", "Swimming",
        "Fishing", "Hunting", "Climbing", "Skiing", "Snowboarding", "Team Sports", "Racket Sports",
        "Golf", "Boxing", "Skateboarding", "Water Sports", "Archery", "Equestrian", "Paddling",
        "Trail Gear", "Outdoor Cooking", "Sports Nutrition", "Fan Shop",
    ],
    "Toys & Games": [
        "Board Games", "Puzzles", "Dolls", "Action Figures", "Building Sets", "Plush Toys",
        "Remote Control", "Educational Toys", "Arts & Crafts", "Outdoor Play", "Baby Toys",
        "Card Games", "Model Kits", "Play Vehicles", "Pretend Play", "Musical Toys",
        "Science Kits", "Ride-On Toys", "Water Toys", "Party Supplies", "Kites", "Magic Sets",
        "Stacking Toys", "Toy Figures", "Collectibles",
    ],
    "Beauty & Personal Care": [
        "Skincare", "Makeup", "Hair Care", "Fragrance", "Nail Care", "Shaving", "Oral Care",
        "Bath & Body", "Sun Care", "Hair Tools", "Cosmetic Bags", "Eye Care", "Lip Care",
        "Deodorants", "Face Masks", "Brushes & Sponges", "Hair Color", "Beard Care",
        "Massage Tools", "Manicure Sets", "Body Lotions", "Cleansers", "Serums", "Toners",
        "Mirrors & Lights",
    ],
    "Health & Household": [
        "Vitamins", "First Aid", "Pain Relief", "Cold & Flu", "Digestive Health", "Sleep Aids",
        "Medical Supplies", "Mobility Aids", "Thermometers", "Blood Pressure", "Hearing Aids",
        "Contact Lenses", "Incontinence", "Baby Care", "Paper Towels", "Trash Bags",
        "Dish Detergents", "Air Fresheners", "Pest Control", "Light Bulbs", "Household Batteries",
        "Sanitizers", "Protein Supplements", "Herbal Remedies", "Allergy Relief",
    ],
    "Automotive": [
        "Car Care", "Tires", "Wheels", "Motor Oil", "Filters", "Brakes", "Lighting Kits",
        "Interior Accessories", "Exterior Accessories", "Car Audio", "Tools & Equipment",
        "Batteries & Chargers", "Wipers", "Seat Covers", "Floor Mats", "Motorcycle Parts",
        "RV Parts", "Towing", "Engine Parts", "Exhaust", "Suspension", "Cooling Systems",
        "Fuel Systems", "Ignition", "Car Electronics Mounts",
    ],
    "Garden & Outdoor": [
        "Lawn Mowers", "Garden Tools", "Planters", "Seeds", "Fertilizers", "Watering",
        "Outdoor Furniture", "Grills", "Patio Heaters", "Fire Pits", "Outdoor Lighting",
        "Greenhouses", "Bird Feeders", "Composting", "Hedge Trimmers", "Leaf Blowers",
        "Garden Decor", "Fencing", "Pool Supplies", "Hammocks", "Weed Control", "Sheds",
        "Hoses", "Pruners", "Raised Beds",
    ],
    "Office Products": [
        "Pens", "Pencils", "Notebooks", "Paper", "Binders", "Folders", "Desk Organizers",
        "Staplers", "Labels", "Envelopes", "Calendars", "Whiteboards", "Office Chairs", "Desks",
        "Shredders", "Calculators", "Ink & Toner", "Tape", "Markers", "Filing Cabinets",
        "Presentation Supplies", "Mailing Supplies", "Planners", "Sticky Notes", "Gift Cards",
    ],
    "Pet Supplies": [
        "Dog Food", "Cat Food", "Dog Toys", "Cat Toys", "Leashes", "Collars", "Pet Beds",
        "Litter", "Aquarium", "Bird Supplies", "Small Animals", "Reptile Supplies",
        "Grooming", "Pet Health", "Feeders", "Crates", "Pet Carriers", "Scratchers", "Treats",
        "Training Aids", "Pet Apparel", "Pet Doors", "Fish Food", "Horse Care", "Waste Bags",
    ],
    "Tools & Home Improvement": [
        "Power Drills", "Saws", "Hand Tools", "Measuring Tools", "Fasteners", "Plumbing",
        "Electrical", "Paint", "Flooring", "Hardware", "Door Locks", "Ladders", "Safety Gear",
        "Tool Storage", "Welding", "Sanders", "Air Compressors", "Generators", "Heating",
        "Ventilation", "Insulation", "Adhesives", "Wall Repair", "Kitchen Fixtures",
        "Bathroom Fixtures",
    ],
}
LEAVES_PER_CATEGORY = 24

# Kinds of product: shared across the whole taxonomy, so alone they say little.
KINDS = [
    "Sets", "Kits", "Holders", "Mats", "Packs", "Cases", "Covers", "Stands", "Bags", "Lamps",
    "Tools", "Refills", "Adapters", "Cleaners", "Organizers", "Brushes", "Pads", "Bundles",
    "Boxes", "Racks", "Mounts", "Wraps", "Clips", "Sprays", "Straps", "Liners", "Trays",
    "Bottles", "Jars", "Hooks", "Rolls", "Sheets", "Caps", "Shields", "Guards", "Frames",
    "Cushions", "Tubes", "Pumps", "Filters", "Cords", "Panels", "Baskets", "Kits Pro",
    "Starters", "Essentials", "Accessories", "Supplies",
]

# Words that appear on products of every kind: noise to every model.
GENERIC = """
new premium classic deluxe essential original professional compact portable lightweight heavy
duty durable soft strong large small medium mini extra xl xxl black white grey blue red green
pink beige brown silver gold clear natural organic eco recycled bamboo steel wooden cotton
leather plastic glass ceramic rubber metal nylon wool silicone waterproof washable reusable
adjustable foldable universal family kids adult women men unisex home travel outdoor indoor
daily gift set pack pcs piece count value bundle edition series model version style design
quality best top sale limited special easy quick smart modern vintage retro simple elegant
stylish cute fun bright warm cool fresh gentle safe sturdy stable ergonomic multi purpose
""".split()
SIZES = ["2pcs", "3pcs", "4pcs", "6pcs", "10pcs", "12pcs", "500ml", "1l", "250g", "1kg", "10in",
         "12in", "2m", "5m", "16oz", "32oz", "3-pack", "2-pack", "x2", "x4", "2024", "2025"]
CONNECTORS = ["with", "for", "and", "in", "of", "to", "by", "from", "on", "the", "a", "your"]
TEMPLATES = [
    "Made with {g} {g} for {c} and {s}.",
    "This {k} is {g} and {g}, ideal for {s} {s}.",
    "Perfect for {d} and {c} {s}.",
    "Includes {s}, {s} and {g} {g}.",
    "{B} designs {g} {s} for {d}.",
    "Compatible with {x} {k}.",
    "Easy to clean, {g} and {g}.",
    "Our {n} {s} line: {g} {s} {g}.",
    "Great {g} {c} for {g} {d}.",
    "Features {s} with {g} {s}.",
]

ONSETS = ["b", "c", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "cl",
          "dr", "fl", "gr", "pl", "st", "tr", "sh", "ch", "j", "w", "h"]
VOWELS = ["a", "e", "i", "o", "u", "a", "e", "i", "o", "ai", "ea", "ou"]
CODAS = ["", "", "", "", "", "n", "r", "l", "s", "x", "m"]

SPECIAL_DEPT, SPECIAL_CAT, SPECIAL_LEAF = "Office Products", "Gift Cards", "E-Gift Cards"
SPECIAL_TRAIN = 4  # the new leaf's training items (others have 15-35)
NOISE_LABEL, WEAK_ITEM = 0.02, 0.02
TRAIN_PER_LEAF = (10, 30)
P_TYPO, P_NAME, P_CROSS, P_TITLE_CASE = 0.08, 0.45, 0.15, 0.5
TITLE_SIGS = (1, 1, 1, 2, 2)
P_NO_DESC, P_SHORT_DESC, DESC_SENTENCES = 0.10, 0.15, (2, 2, 3)


class Leaf:
    """One leaf category and the words its products are written with."""

    __slots__ = ("id", "dept", "cat", "name", "path", "slug", "name_word", "kind", "sig", "brands")

    def __init__(self, id, dept, cat, name, name_word, kind):
        self.id, self.dept, self.cat, self.name = id, dept, cat, name
        self.path = f"{dept} > {cat} > {name}"
        self.slug = slug(self.path)
        self.name_word, self.kind = name_word, kind
        self.sig, self.brands = [], []


def slug(path):
    """fastText labels cannot hold whitespace: `Home & Kitchen > Cookware > X` → `home_&_kitchen>cookware>x`."""
    return path.lower().replace(" > ", ">").replace(" ", "_")


class Words:
    """Readable made-up words (syllables), each handed out once."""

    def __init__(self, rng, reserved):
        self.rng, self.used = rng, set(w.lower() for w in reserved)

    def new(self, syllables=None):
        while True:
            n = syllables or self.rng.choice((2, 2, 3))
            w = "".join(self.rng.choice(ONSETS) + self.rng.choice(VOWELS) + self.rng.choice(CODAS)
                        for _ in range(n))
            if 4 <= len(w) <= 11 and w not in self.used:
                self.used.add(w)
                return w


class Taxonomy:
    """Departments → categories → leaves, with every word the products are made of."""

    def __init__(self, rng):
        reserved = set(GENERIC) | set(CONNECTORS) | {k.lower() for k in KINDS}
        for d, cats in DEPARTMENTS.items():
            reserved |= set(d.lower().split()) | {w for c in cats for w in c.lower().split()}
        words = Words(rng, reserved)
        self.leaves, self.dept_words, self.cat_words, self.cat_leaves = [], {}, {}, {}
        self.dept_cats = {}
        for dept, cats in DEPARTMENTS.items():
            assert len(cats) == 25 and len(set(cats)) == 25, dept
            self.dept_words[dept] = [words.new() for _ in range(8)]
            brands = [words.new(2).capitalize() for _ in range(60)]
            self.dept_cats[dept] = []
            for cat in cats:
                key = (dept, cat)
                self.dept_cats[dept].append(key)
                # The category's own name words plus four made-up ones, shared by its leaves.
                own = [w for w in cat.lower().replace("&", " ").split() if len(w) > 2]
                self.cat_words[key] = own + [words.new() for _ in range(4)]
                cat_brands = rng.sample(brands, 8)
                kinds = rng.sample(KINDS, LEAVES_PER_CATEGORY)
                leaves = []
                for i, kind in enumerate(kinds):
                    name_word = words.new()
                    name = f"{name_word.capitalize()} {kind}"
                    if key == (SPECIAL_DEPT, SPECIAL_CAT) and i == 0:
                        name, kind = SPECIAL_LEAF, "Gift Cards"
                    leaf = Leaf(len(self.leaves), dept, cat, name, name_word, kind)
                    leaf.sig = [words.new() for _ in range(5)]
                    leaf.brands = rng.sample(cat_brands, 3)
                    leaves.append(leaf)
                    self.leaves.append(leaf)
                # Two signature words of each leaf are also siblings': honest sibling confusion.
                for leaf in leaves:
                    a, b = rng.sample([l for l in leaves if l is not leaf], 2)
                    leaf.sig[3], leaf.sig[4] = a.sig[0], b.sig[1]
                self.cat_leaves[key] = leaves
        self.by_path = {l.path: l for l in self.leaves}
        assert len(self.by_path) == len(self.leaves), "leaf paths must be unique"
        assert len({l.slug for l in self.leaves}) == len(self.leaves), "slugs must be unique"

    def siblings(self, leaf):
        return [l for l in self.cat_leaves[(leaf.dept, leaf.cat)] if l is not leaf]


def typo(rng, w):
    """One keyboard slip: a dropped, doubled or swapped letter."""
    if len(w) < 4:
        return w
    i = rng.randrange(1, len(w) - 1)
    r = rng.random()
    if r < 0.4:
        return w[:i] + w[i + 1:]
    if r < 0.7:
        return w[:i] + w[i] + w[i:]
    return w[:i - 1] + w[i] + w[i - 1] + w[i + 1:]


class Writer:
    """Writes the title and description of one product of a leaf."""

    def __init__(self, rng, tax):
        self.rng, self.tax = rng, tax

    def sig(self, leaf, p_typo=P_TYPO):
        # Zipf-like: the first signature words are the most used.
        w = leaf.sig[min(int(self.rng.expovariate(0.6)), 4)]
        return typo(self.rng, w) if self.rng.random() < p_typo else w

    def kind_word(self, leaf):
        k = leaf.kind.split()[0].lower()
        return k[:-1] if k.endswith("s") and self.rng.random() < 0.5 else k

    def title(self, leaf):
        rng = self.rng
        if leaf.name == SPECIAL_LEAF:
            return self.gift_title(leaf)
        words = []
        if rng.random() < P_NAME:
            words.append(leaf.name_word if rng.random() > P_TYPO else typo(rng, leaf.name_word))
        words += [self.sig(leaf) for _ in range(rng.choice(TITLE_SIGS))]
        if rng.random() < 0.6:
            words.append(self.kind_word(leaf))
        if rng.random() < 0.4:
            words.append(rng.choice(self.tax.cat_words[(leaf.dept, leaf.cat)]))
        if rng.random() < 0.15:
            words.append(rng.choice(self.tax.dept_words[leaf.dept]))
        if rng.random() < P_CROSS:  # cross-talk from a sibling ("fits velmora holders")
            words.append(self.sig(rng.choice(self.tax.siblings(leaf))))
        words += rng.sample(GENERIC, rng.choice((1, 2, 2, 3)))
        if rng.random() < 0.3:
            words.append(rng.choice(SIZES))
        rng.shuffle(words)
        if rng.random() < 0.8:
            words.insert(0, self.brand(leaf))
        return self.case(words)

    def gift_title(self, leaf):
        rng = self.rng
        store = rng.choice(self.tax.siblings(leaf))
        words = [rng.choice(("eGift", "eGift", "e-Gift")), "Card", store.name_word,
                 rng.choice(("$25", "$50", "$100", "email delivery", "digital code"))]
        return self.case(words)

    def brand(self, leaf):
        rng = self.rng
        if rng.random() < 0.85:
            return rng.choice(leaf.brands)
        return rng.choice(rng.choice(self.tax.siblings(leaf)).brands)

    def case(self, words):
        """Half the sellers write Title Case, half lower case (fastText is case-sensitive)."""
        r = self.rng.random()
        if r < P_TITLE_CASE:
            return " ".join(w[:1].upper() + w[1:] for w in words)
        return " ".join(w.lower() for w in words)

    def description(self, leaf):
        rng = self.rng
        r = rng.random()
        if r < P_NO_DESC:
            return ""
        n = 1 if r < P_NO_DESC + P_SHORT_DESC else rng.choice(DESC_SENTENCES)
        cat = self.tax.cat_words[(leaf.dept, leaf.cat)]
        fill = {
            "g": lambda: rng.choice(GENERIC),
            "s": lambda: self.sig(leaf),
            "c": lambda: rng.choice(cat),
            "d": lambda: rng.choice(self.tax.dept_words[leaf.dept]),
            "k": lambda: self.kind_word(leaf),
            "n": lambda: leaf.name_word,
            "B": lambda: self.brand(leaf),
            "x": lambda: self.sig(rng.choice(self.tax.siblings(leaf))),
        }
        out = []
        for template in rng.sample(TEMPLATES, n):
            words = []
            for tok in template.split():
                core, tail = tok, ""
                while core and core[-1] in ",.:":
                    core, tail = core[:-1], core[-1] + tail
                if core.startswith("{") and core.endswith("}"):
                    core = fill[core[1:-1]]()
                words.append(core + tail)
            s = " ".join(words)
            out.append(s[:1].upper() + s[1:])
        return " ".join(out)

    def weak(self, leaf):
        """A listing that says almost nothing: a brand-less generic title, no description."""
        rng = self.rng
        words = rng.sample(GENERIC, rng.choice((2, 3)))
        if rng.random() < 0.5:
            words.append(self.kind_word(leaf))
        return self.case(words), ""


def counts(rng, tax):
    """Training items per leaf: a long tail from 15 to 35 (the new gift-card leaf: 4)."""
    return [SPECIAL_TRAIN if l.name == SPECIAL_LEAF else rng.randint(*TRAIN_PER_LEAF) for l in tax.leaves]


def items(rng, tax, per_leaf):
    """Products for every leaf, shuffled. `per_leaf` is a count or a list of counts."""
    w = Writer(rng, tax)
    out = []
    for leaf in tax.leaves:
        n = per_leaf if isinstance(per_leaf, int) else per_leaf[leaf.id]
        for _ in range(n):
            if rng.random() < WEAK_ITEM:
                title, desc = w.weak(leaf)
            else:
                title, desc = w.title(leaf), w.description(leaf)
            label = leaf
            if rng.random() < NOISE_LABEL:
                label = rng.choice(tax.siblings(leaf))
            out.append({"title": title, "description": desc, "label": label.path})
    rng.shuffle(out)
    return out


SPLITS = ("train", "calib", "valid", "test")


def build(seed=SEED, valid_per_leaf=3, test_per_leaf=3, calib_per_leaf=1):
    """The taxonomy and the splits, all from one seed. `calib` (one item per leaf) is what the
    generator fits each model's temperature on, so that validation stays unseen."""
    rng = random.Random(seed)
    tax = Taxonomy(rng)
    train = items(rng, tax, counts(rng, tax))
    calib = items(rng, tax, calib_per_leaf)
    valid = items(rng, tax, valid_per_leaf)
    test = items(rng, tax, test_per_leaf)
    return tax, {"train": train, "calib": calib, "valid": valid, "test": test}


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=True) + "\n")


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def join_fields(item, fields):
    """The text a model sees: its fields joined with one space, as the server joins them."""
    return " ".join(item.get(f, "") for f in fields)


if __name__ == "__main__":
    import collections
    import time

    t = time.monotonic()
    tax, splits = build()
    print(f"{len(tax.leaves)} leaves, built in {time.monotonic() - t:.1f}s")
    for name, rows in splits.items():
        print(name, len(rows))
    for r in splits["train"][:12]:
        print(r)
    vocab = collections.Counter(w for r in splits["train"] for w in (r["title"] + " " + r["description"]).split())
    print("tokens", sum(vocab.values()), "types", len(vocab), "types>=2", sum(1 for c in vocab.values() if c >= 2))
