"""Write steerlab's small MCQ set (src/steerlab/data/mcq/steerlab_mcq.jsonl) from fact tables.

Every item comes from a table below (capitals, chemical symbols, antonyms, dates, units, arithmetic), so each
answer is checkable and each distractor is a real member of the same table. The gold answer is stored at a varied
index; PAS reshuffles options per question anyway. Deterministic: ``python scripts/build_mcq_data.py``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "src" / "steerlab" / "data" / "mcq" / "steerlab_mcq.jsonl"
CAPITALS = {
    "France": "Paris",
    "Japan": "Tokyo",
    "Kenya": "Nairobi",
    "Canada": "Ottawa",
    "Australia": "Canberra",
    "Brazil": "Brasília",
    "Egypt": "Cairo",
    "Norway": "Oslo",
    "Peru": "Lima",
    "Turkey": "Ankara",
    "Vietnam": "Hanoi",
    "Portugal": "Lisbon",
    "Chile": "Santiago",
    "Poland": "Warsaw",
    "Morocco": "Rabat",
    "Thailand": "Bangkok",
    "Argentina": "Buenos Aires",
    "Hungary": "Budapest",
    "Ireland": "Dublin",
    "Nigeria": "Abuja",
    "New Zealand": "Wellington",
    "Switzerland": "Bern",
    "South Korea": "Seoul",
    "Finland": "Helsinki",
    "Greece": "Athens",
    "Colombia": "Bogotá",
    "Austria": "Vienna",
    "Cuba": "Havana",
    "Ethiopia": "Addis Ababa",
    "Indonesia": "Jakarta",
    "Pakistan": "Islamabad",
    "Sweden": "Stockholm",
    "Mexico": "Mexico City",
    "Czechia": "Prague",
    "Ghana": "Accra",
    "Iceland": "Reykjavík",
    "Philippines": "Manila",
    "Denmark": "Copenhagen",
    "Saudi Arabia": "Riyadh",
    "Ukraine": "Kyiv",
    "Belgium": "Brussels",
    "Bolivia": "Sucre",
    "Malaysia": "Kuala Lumpur",
    "Romania": "Bucharest",
    "Tanzania": "Dodoma",
    "Uruguay": "Montevideo",
    "Nepal": "Kathmandu",
    "Croatia": "Zagreb",
}
ELEMENTS = {
    "gold": "Au",
    "silver": "Ag",
    "iron": "Fe",
    "sodium": "Na",
    "potassium": "K",
    "lead": "Pb",
    "tin": "Sn",
    "copper": "Cu",
    "mercury": "Hg",
    "tungsten": "W",
    "helium": "He",
    "neon": "Ne",
    "calcium": "Ca",
    "carbon": "C",
    "nitrogen": "N",
    "oxygen": "O",
    "sulfur": "S",
    "zinc": "Zn",
    "chlorine": "Cl",
    "magnesium": "Mg",
    "phosphorus": "P",
    "uranium": "U",
    "silicon": "Si",
    "nickel": "Ni",
    "aluminium": "Al",
    "argon": "Ar",
    "iodine": "I",
    "platinum": "Pt",
    "cobalt": "Co",
    "lithium": "Li",
    "fluorine": "F",
    "barium": "Ba",
    "chromium": "Cr",
    "manganese": "Mn",
    "titanium": "Ti",
}
ANTONYMS = {
    "ancient": "modern",
    "generous": "stingy",
    "fragile": "sturdy",
    "scarce": "plentiful",
    "timid": "bold",
    "transparent": "opaque",
    "humble": "arrogant",
    "expand": "contract",
    "permanent": "temporary",
    "vague": "precise",
    "reluctant": "eager",
    "shallow": "deep",
    "rigid": "flexible",
    "accept": "reject",
    "ascend": "descend",
    "frequent": "rare",
    "hostile": "friendly",
    "minimum": "maximum",
    "victory": "defeat",
    "innocent": "guilty",
    "artificial": "natural",
    "external": "internal",
    "noisy": "silent",
    "optimist": "pessimist",
    "polite": "rude",
    "strengthen": "weaken",
    "visible": "hidden",
    "vertical": "horizontal",
    "include": "exclude",
    "inferior": "superior",
    "gradual": "sudden",
    "complex": "simple",
    "dawn": "dusk",
    "majority": "minority",
}
EVENTS = {
    "the first Moon landing": 1969,
    "the fall of the Berlin Wall": 1989,
    "the start of the French Revolution": 1789,
    "Columbus's first voyage to the Americas": 1492,
    "the end of the Second World War": 1945,
    "the sinking of the Titanic": 1912,
    "the signing of the Magna Carta": 1215,
    "the US Declaration of Independence": 1776,
    "the start of the First World War": 1914,
    "the first powered flight by the Wright brothers": 1903,
    "the dissolution of the Soviet Union": 1991,
    "the Battle of Hastings": 1066,
    "the publication of Darwin's On the Origin of Species": 1859,
    "the invention of Gutenberg's printing press (approximately)": 1440,
    "the launch of Sputnik 1": 1957,
    "the Chernobyl nuclear accident": 1986,
    "the first public release of the World Wide Web": 1991,
    "the founding of the United Nations": 1945,
    "the abolition of slavery in the British Empire": 1833,
    "the eruption of Mount Vesuvius that buried Pompeii": 79,
    "the end of apartheid elections in South Africa": 1994,
    "the completion of the Panama Canal": 1914,
    "the start of the Meiji Restoration in Japan": 1868,
    "the unification of Germany": 1871,
    "the first ascent of Mount Everest": 1953,
}
PLANETS = ["Mercury", "Venus", "Earth", "Mars", "Jupiter", "Saturn", "Uranus", "Neptune"]
SCIENCE = [  # (question, answer, distractors) written by hand
    (
        "Which gas do plants absorb from the air for photosynthesis?",
        "carbon dioxide",
        ["oxygen", "nitrogen", "helium"],
    ),
    ("What is the boiling point of water at sea level in degrees Celsius?", "100", ["90", "110", "212"]),
    (
        "Which organ pumps blood through the human body?",
        "the heart",
        ["the liver", "the lungs", "the kidneys"],
    ),
    ("What is the largest planet in the Solar System?", "Jupiter", ["Saturn", "Neptune", "Earth"]),
    ("Which planet is closest to the Sun?", "Mercury", ["Venus", "Mars", "Earth"]),
    (
        "What force keeps the planets in orbit around the Sun?",
        "gravity",
        ["magnetism", "friction", "air pressure"],
    ),
    ("What is the chemical formula of water?", "H2O", ["CO2", "O2", "H2O2"]),
    (
        "Which part of the cell contains most of its DNA?",
        "the nucleus",
        ["the ribosome", "the cell wall", "the vacuole"],
    ),
    ("What kind of animal is a whale?", "a mammal", ["a fish", "an amphibian", "a reptile"]),
    (
        "Which blood cells carry oxygen?",
        "red blood cells",
        ["white blood cells", "platelets", "plasma cells"],
    ),
    ("What is the hardest natural substance?", "diamond", ["quartz", "granite", "iron"]),
    ("At what temperature in Celsius does pure water freeze at sea level?", "0", ["4", "-10", "32"]),
    ("Which planet is known as the Red Planet?", "Mars", ["Jupiter", "Venus", "Mercury"]),
    ("What is the main gas in Earth's atmosphere?", "nitrogen", ["oxygen", "carbon dioxide", "argon"]),
    ("How many bones does an adult human typically have?", "206", ["150", "306", "412"]),
    ("What do bees collect from flowers to make honey?", "nectar", ["pollen only", "sap", "dew"]),
    ("Which vitamin does the skin make in sunlight?", "vitamin D", ["vitamin C", "vitamin A", "vitamin K"]),
    (
        "What is the speed of light in a vacuum, roughly?",
        "300,000 km per second",
        ["3,000 km per second", "30,000 km per second", "3 million km per second"],
    ),
    (
        "Which layer of the atmosphere contains the ozone layer?",
        "the stratosphere",
        ["the troposphere", "the mesosphere", "the exosphere"],
    ),
    ("What type of rock forms from cooled lava?", "igneous", ["sedimentary", "metamorphic", "limestone"]),
    ("Which organ of the body produces insulin?", "the pancreas", ["the liver", "the stomach", "the spleen"]),
    (
        "What is the centre of an atom called?",
        "the nucleus",
        ["the electron cloud", "the orbital", "the proton shell"],
    ),
    ("How many chromosomes do most human body cells have?", "46", ["23", "44", "48"]),
    ("What is the chemical symbol for table salt's metal element?", "Na", ["Cl", "S", "K"]),
]
LOGIC = [
    (
        "If all bloops are razzies and all razzies are lazzies, are all bloops lazzies?",
        "yes",
        ["no", "only some", "cannot be known"],
    ),
    (
        "Tom is taller than Ann, and Ann is taller than Raj. Who is the shortest?",
        "Raj",
        ["Tom", "Ann", "they are equal"],
    ),
    ("A farmer has 17 sheep and all but 9 run away. How many are left?", "9", ["8", "17", "0"]),
    ("Which number comes next: 2, 4, 8, 16, ...?", "32", ["24", "18", "30"]),
    ("If today is Wednesday, what day will it be in 10 days?", "Saturday", ["Friday", "Sunday", "Thursday"]),
    (
        "A clock shows 3:15. What is the angle between the hands, to the nearest degree?",
        "8",
        ["0", "15", "90"],
    ),
    ("Which word does not belong: apple, banana, carrot, cherry?", "carrot", ["apple", "banana", "cherry"]),
    ("How many months have 28 days?", "all 12", ["1", "2", "none"]),
    (
        "If you overtake the person in second place in a race, what place are you in?",
        "second",
        ["first", "third", "last"],
    ),
    ("Which number comes next: 1, 1, 2, 3, 5, 8, ...?", "13", ["11", "12", "16"]),
    ("What is the opposite direction of north-east?", "south-west", ["south-east", "north-west", "west"]),
    (
        "If a shirt costs twice as much as a hat and the hat costs 15, what does the shirt cost?",
        "30",
        ["15", "45", "7.5"],
    ),
    (
        "A bat and a ball cost 1.10 in total and the bat costs 1.00 more than the ball. What does the ball cost?",
        "0.05",
        ["0.10", "0.01", "0.15"],
    ),
    (
        "Which is heavier: a kilogram of feathers or a kilogram of iron?",
        "they weigh the same",
        ["the iron", "the feathers", "it depends on volume"],
    ),
    (
        "Mary's father has five daughters: Nana, Nene, Nini, Nono. What is the fifth daughter's name?",
        "Mary",
        ["Nunu", "Nina", "Nanu"],
    ),
    (
        "If it takes 5 machines 5 minutes to make 5 widgets, how long do 100 machines take to make 100 widgets?",
        "5 minutes",
        ["100 minutes", "20 minutes", "1 minute"],
    ),
]
UNITS = [
    ("metres", "centimetres", 100),
    ("kilograms", "grams", 1000),
    ("hours", "minutes", 60),
    ("kilometres", "metres", 1000),
    ("litres", "millilitres", 1000),
    ("minutes", "seconds", 60),
    ("days", "hours", 24),
    ("weeks", "days", 7),
]


def options(rng: random.Random, answer: str, pool: list[str], k: int) -> tuple[list[str], int]:
    distract = rng.sample([p for p in pool if p != answer], k - 1)
    opts = distract + [answer]
    rng.shuffle(opts)
    return opts, opts.index(answer)


def main() -> None:
    rng = random.Random(7)
    items = []

    def add(subject: str, q: str, opts: list[str], ans: int) -> None:
        items.append(
            {
                "id": f"{subject}-{len(items):04d}",
                "subject": subject,
                "question": q,
                "choices": opts,
                "answer": ans,
            }
        )

    caps = list(CAPITALS.values())
    for country, cap in CAPITALS.items():
        add(
            "geography",
            f"What is the capital of {country}?",
            *options(rng, cap, caps, rng.choice([3, 4, 4, 5])),
        )
    for country, cap in list(CAPITALS.items())[:20]:
        add("geography", f"{cap} is the capital of which country?", *options(rng, country, list(CAPITALS), 4))
    syms = list(ELEMENTS.values())
    for el, sym in ELEMENTS.items():
        add(
            "chemistry",
            f"What is the chemical symbol for {el}?",
            *options(rng, sym, syms, rng.choice([3, 4, 4])),
        )
    ants = list(ANTONYMS.values())
    for word, ant in ANTONYMS.items():
        add("vocabulary", f"Which word is the opposite of '{word}'?", *options(rng, ant, ants, 4))
    for event, year in EVENTS.items():
        near = sorted({year + d for d in (-50, -20, -11, -5, 5, 10, 23, 40) if year + d > 0})
        add(
            "history",
            f"In which year did {event} happen?",
            *options(rng, str(year), [str(y) for y in near] + [str(year)], 4),
        )
    for q, a, d in SCIENCE:
        add("science", q, *options(rng, a, d + [a], 4))
    for q, a, d in LOGIC:
        add("logic", q, *options(rng, a, d + [a], 4))
    seen_units: set[tuple[str, int]] = set()
    for i in range(40):
        big, small, f = UNITS[i % len(UNITS)]
        n = rng.choice([2, 3, 4, 5, 6, 7, 8, 9, 12, 15]) + (i // len(UNITS))
        while (big, n) in seen_units:
            n += 1
        seen_units.add((big, n))
        ans = n * f
        pool = [
            str(ans),
            str(ans * 10),
            str(ans // 10 if f >= 100 else ans + 2 * f),
            str(ans + f),
            str(ans - n),
        ]
        add(
            "units",
            f"How many {small} are there in {n} {big}?",
            *options(rng, str(ans), list(dict.fromkeys(pool)), 4),
        )
    for _ in range(51):
        a, b = rng.randint(12, 99), rng.randint(3, 29)
        kind = rng.choice(["buy", "share", "save"])
        if kind == "buy":
            q, ans = f"A notebook costs {b} coins. How much do {a} notebooks cost?", a * b
        elif kind == "share":
            q, ans = f"{a * b} sweets are shared equally among {b} children. How many does each child get?", a
        else:
            q, ans = f"Lena saves {b} coins a week. How much has she saved after {a} weeks?", a * b
        pool = [str(ans), str(ans + b), str(ans - b if ans > b else ans + 2 * b), str(ans + 10), str(ans * 2)]
        add("arithmetic", q, *options(rng, str(ans), list(dict.fromkeys(pool)), 4))
    for i, p in enumerate(PLANETS):
        if i == 0:
            continue
        add(
            "astronomy",
            f"Which planet is the {['', 'second', 'third', 'fourth', 'fifth', 'sixth', 'seventh', 'eighth'][i]} from the Sun?",
            *options(rng, p, PLANETS, 4),
        )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with open(OUT, "w") as f:
        for it in items:
            f.write(json.dumps(it, ensure_ascii=False) + "\n")
    from collections import Counter

    print(
        len(items),
        dict(Counter(it["subject"] for it in items)),
        dict(Counter(len(it["choices"]) for it in items)),
        "gold index:",
        dict(Counter(it["answer"] for it in items)),
    )


if __name__ == "__main__":
    main()
