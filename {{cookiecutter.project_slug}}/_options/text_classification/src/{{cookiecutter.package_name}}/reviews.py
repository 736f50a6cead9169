"""The sample data: product reviews with a 1 to 5 star rating, written by a seeded generator.

Every review is composed from the phrases below, so the data is the same on every machine
and carries no one's personal text. Licence: CC0 1.0 (public domain dedication); use it for
anything. It is made to be learnable but not trivially so, like real reviews:

- each review has a latent rating; its sentences praise or criticise aspects of the product
  with a sentiment drawn *around* that rating, so many reviews are mixed;
- negations flip phrases ("not bad", "not great"), openers and closers are optional;
- lengths range from a few words to a paragraph; a few words carry typos;
- some ratings are one star off what the text says, as with real reviewers (label noise).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

PRODUCTS = {
    "headphones": ["sound", "battery", "noise cancelling", "ear cushions", "bluetooth range"],
    "blender": ["motor", "jug", "blades", "noise level", "lid"],
    "backpack": ["zippers", "straps", "laptop sleeve", "fabric", "pockets"],
    "coffee maker": ["coffee", "carafe", "water tank", "timer", "filter"],
    "running shoes": ["fit", "sole", "cushioning", "laces", "grip"],
    "desk lamp": ["brightness", "dimmer", "arm", "base", "colour temperature"],
    "phone case": ["fit", "buttons", "grip", "drop protection", "finish"],
    "e-reader": ["screen", "battery", "page turns", "backlight", "store app"],
    "vacuum cleaner": ["suction", "battery", "brush", "dust bin", "attachments"],
    "air fryer": ["basket", "timer", "cooking results", "cleaning", "controls"],
}
SHARED_ASPECTS = ["price", "delivery", "packaging", "instructions", "customer service", "quality"]

# Sentiment levels: -2 very negative, -1 negative, 0 neutral, 1 positive, 2 very positive.
ADJECTIVES = {
    -2: ["awful", "terrible", "useless", "horrible", "a joke", "broken"],
    -1: ["disappointing", "flimsy", "mediocre", "poor", "annoying", "cheap feeling"],
    0: ["okay", "average", "fine", "acceptable", "as expected", "nothing special"],
    1: ["good", "solid", "nice", "decent", "pleasant", "reliable"],
    2: ["excellent", "fantastic", "superb", "amazing", "perfect", "outstanding"],
}
NEGATED = {-1: ["not great", "not good", "not ideal"], 1: ["not bad", "not terrible"]}
OPENERS = {
    1: ["Worst purchase this year.", "Do not buy.", "Complete waste of money.", "Avoid."],
    2: ["Disappointed.", "Expected more.", "Not happy with this.", "Meh, it let me down."],
    3: ["It's okay.", "Mixed feelings.", "Does the job, mostly.", "Average product."],
    4: ["Pretty good.", "Happy overall.", "Good value.", "Nice purchase."],
    5: ["Love it!", "Absolutely brilliant.", "Best buy in ages!", "Highly recommend!"],
}
CLOSERS = {
    1: ["Returned it the next day.", "Asked for a refund.", "Never again."],
    2: ["Probably returning it.", "Would not buy again.", "Look elsewhere."],
    3: ["Might keep it.", "It is what it is.", "Fine for the price, I guess."],
    4: ["Would buy again.", "Recommended with small reservations.", "Worth it."],
    5: ["Buying one for my sister too.", "Five stars, no doubt.", "Would buy again tomorrow."],
}
OCCASIONS = ["last month", "for work", "as a gift", "on sale", "after reading reviews"]
PATTERNS = [
    "The {aspect} is {adjective}.",
    "{Aspect}: {adjective}.",
    "I found the {aspect} {adjective}.",
    "Honestly, the {aspect} was {adjective}.",
    "{Aspect} {adjective}, at least for me.",
    "After two weeks the {aspect} is still {adjective}.",
]
# Share of reviews per star rating, skewed towards the top like most review sites.
STAR_SHARES = [0.14, 0.11, 0.17, 0.25, 0.33]


def _typo(word: str, rng: np.random.Generator) -> str:
    if len(word) < 4:
        return word
    i = int(rng.integers(1, len(word) - 2))
    return word[:i] + word[i + 1] + word[i] + word[i + 2 :]


def _sentence(product: str, stars: int, rng: np.random.Generator) -> str:
    aspects = PRODUCTS[product] + SHARED_ASPECTS
    aspect = aspects[rng.integers(len(aspects))]
    level = int(np.clip(np.rint(stars - 3 + rng.normal(0, 1.1)), -2, 2))
    negate = level in NEGATED and rng.random() < 0.25
    choices = NEGATED[level] if negate else ADJECTIVES[level]
    adjective = choices[rng.integers(len(choices))]
    pattern = PATTERNS[rng.integers(len(PATTERNS))]
    return pattern.format(aspect=aspect, Aspect=aspect.capitalize(), adjective=adjective).replace(
        "..", "."
    )


def review(stars: int, rng: np.random.Generator) -> str:
    """One review whose wording leans towards `stars`."""
    product = list(PRODUCTS)[rng.integers(len(PRODUCTS))]
    parts = []
    if rng.random() < 0.35:
        parts.append(OPENERS[stars][rng.integers(len(OPENERS[stars]))])
    if rng.random() < 0.5:
        parts.append(f"Bought this {product} {OCCASIONS[rng.integers(len(OCCASIONS))]}.")
    parts += [_sentence(product, stars, rng) for _ in range(1 + rng.poisson(1.3))]
    if rng.random() < 0.25:
        parts.append(CLOSERS[stars][rng.integers(len(CLOSERS[stars]))])
    words = " ".join(parts).split(" ")
    words = [_typo(w, rng) if rng.random() < 0.03 else w for w in words]
    return " ".join(words)


def generate(rows: int = 1500, seed: int = 7) -> pd.DataFrame:
    """`rows` reviews with their star rating; 10% of ratings are one star off the text."""
    rng = np.random.default_rng(seed)
    stars = rng.choice(np.arange(1, 6), size=rows, p=STAR_SHARES)
    texts = [review(int(s), rng) for s in stars]
    noisy = rng.random(rows) < 0.1
    shifted = np.clip(stars + rng.choice([-1, 1], size=rows), 1, 5)
    return pd.DataFrame({"review": texts, "stars": np.where(noisy, shifted, stars)})
