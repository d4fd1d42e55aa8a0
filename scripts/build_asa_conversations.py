"""Write the ASA conversations (src/steerlab/data/asa/conversations.jsonl): agent conversations that end with a
tool result, labelled by what the next reply should do.

- label 0 (the answer is due): one tool request in each domain with its call and a realistic result (the number,
  a printed output, a search snippet holding the fact, the translated text), or a two-step task whose second
  result just came back; ``domain`` = the tool whose result came back.
- label 1 (a second call is needed now): a two-step task after its first result (search a price then compute,
  search a headline then translate, compute or translate something then search with it, look up numbers or
  translate a sentence then run code on it); ``domain`` = the second call's tool.

Per (domain, label) cell 10/10/10/20 conversations for CAL/TRAIN/VALID/TEST. Templates AND fillers are
partitioned between splits; fillers shared with the single-turn set (cities, assets, software, teams, sentences)
keep that set's split (``build_asa_data.split_pools`` replayed with its seed), so no TEST filler of either set is
seen in another split. Tool results are computed, not typed: the calculator and the interpreter's outputs come
from ``steerlab.agent.stand_ins`` and Python's own ``statistics``. Deterministic:
``python scripts/build_asa_conversations.py`` rewrites the same file (or writes to the path given).
"""

from __future__ import annotations

import json
import random
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_asa_data import SEED as SINGLE_SEED  # noqa: E402
from build_asa_data import norm, partition, split_pools, wrap  # noqa: E402

from steerlab.agent.stand_ins import calculator  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "src" / "steerlab" / "data" / "asa" / "conversations.jsonl"
SPLITS = {"cal": 10, "train": 10, "valid": 10, "test": 20}  # per (domain, label) cell
SEED = 20261207
LANGS = ("French", "German", "Spanish")  # the languages of the translation tables (not partitioned)

# Hand translations of 20 single-turn sentences (4 of each of CAL/TRAIN/VALID's, 8 of TEST's): French, German,
# Spanish. Each sentence keeps its single-turn split.
TRANSLATIONS = {
    "the battery needs to be replaced": (
        "La batterie doit être remplacée.",
        "Die Batterie muss ausgetauscht werden.",
        "Hay que cambiar la batería.",
    ),
    "the lecture was postponed": (
        "Le cours a été reporté.",
        "Die Vorlesung wurde verschoben.",
        "La conferencia fue aplazada.",
    ),
    "the tickets are sold out": (
        "Les billets sont épuisés.",
        "Die Karten sind ausverkauft.",
        "Las entradas están agotadas.",
    ),
    "the cat is hiding under the bed": (
        "Le chat se cache sous le lit.",
        "Die Katze versteckt sich unter dem Bett.",
        "El gato se esconde debajo de la cama.",
    ),
    "the children are asleep": ("Les enfants dorment.", "Die Kinder schlafen.", "Los niños están dormidos."),
    "the library opens at nine": (
        "La bibliothèque ouvre à neuf heures.",
        "Die Bibliothek öffnet um neun Uhr.",
        "La biblioteca abre a las nueve.",
    ),
    "your order has been shipped": (
        "Votre commande a été expédiée.",
        "Ihre Bestellung wurde versandt.",
        "Su pedido ha sido enviado.",
    ),
    "where can I buy a train ticket": (
        "Où puis-je acheter un billet de train ?",
        "Wo kann ich eine Fahrkarte kaufen?",
        "¿Dónde puedo comprar un billete de tren?",
    ),
    "this seat is taken": (
        "Cette place est prise.",
        "Dieser Platz ist besetzt.",
        "Este asiento está ocupado.",
    ),
    "thank you for your patience": (
        "Merci de votre patience.",
        "Vielen Dank für Ihre Geduld.",
        "Gracias por su paciencia.",
    ),
    "I am allergic to peanuts": (
        "Je suis allergique aux cacahuètes.",
        "Ich bin allergisch gegen Erdnüsse.",
        "Soy alérgico a los cacahuetes.",
    ),
    "do you accept credit cards": (
        "Acceptez-vous les cartes de crédit ?",
        "Akzeptieren Sie Kreditkarten?",
        "¿Aceptan tarjetas de crédito?",
    ),
    "the road is blocked because of snow": (
        "La route est bloquée à cause de la neige.",
        "Die Straße ist wegen Schnee gesperrt.",
        "La carretera está cortada por la nieve.",
    ),
    "the elevator is out of order": (
        "L'ascenseur est en panne.",
        "Der Aufzug ist außer Betrieb.",
        "El ascensor no funciona.",
    ),
    "we ran out of coffee": (
        "Nous n'avons plus de café.",
        "Uns ist der Kaffee ausgegangen.",
        "Se nos acabó el café.",
    ),
    "the price includes taxes": (
        "Le prix comprend les taxes.",
        "Der Preis enthält die Steuern.",
        "El precio incluye los impuestos.",
    ),
    "my phone number has changed": (
        "Mon numéro de téléphone a changé.",
        "Meine Telefonnummer hat sich geändert.",
        "Mi número de teléfono ha cambiado.",
    ),
    "the soup is too salty": (
        "La soupe est trop salée.",
        "Die Suppe ist zu salzig.",
        "La sopa está demasiado salada.",
    ),
    "the museum is closed on Mondays": (
        "Le musée est fermé le lundi.",
        "Das Museum ist montags geschlossen.",
        "El museo cierra los lunes.",
    ),
    "the concert starts in ten minutes": (
        "Le concert commence dans dix minutes.",
        "Das Konzert beginnt in zehn Minuten.",
        "El concierto empieza en diez minutos.",
    ),
}
# Shop words for "translate a word, then search with it" (partitioned here)
WORDS = {
    "bakery": ("boulangerie", "Bäckerei", "panadería"),
    "bookshop": ("librairie", "Buchhandlung", "librería"),
    "pharmacy": ("pharmacie", "Apotheke", "farmacia"),
    "flea market": ("marché aux puces", "Flohmarkt", "mercadillo"),
    "swimming pool": ("piscine", "Schwimmbad", "piscina"),
    "cheese shop": ("fromagerie", "Käseladen", "quesería"),
    "ice cream parlour": ("glacier", "Eisdiele", "heladería"),
    "hardware store": ("quincaillerie", "Baumarkt", "ferretería"),
    "florist": ("fleuriste", "Blumenladen", "floristería"),
    "bike rental": ("location de vélos", "Fahrradverleih", "alquiler de bicicletas"),
    "laundromat": ("laverie", "Waschsalon", "lavandería"),
    "fish market": ("marché aux poissons", "Fischmarkt", "mercado de pescado"),
}
ITEMS = [  # things with a local price (searched, then multiplied)
    "a monthly public transport pass",
    "a ticket to the city aquarium",
    "a litre of petrol",
    "a night in a hostel dorm bed",
    "an adult ticket to the football stadium",
    "a day pass for the ski lifts",
    "a guided walking tour",
    "a one-hour parking permit downtown",
    "a seat on the airport shuttle bus",
    "an entry to the public swimming pool",
]
HEADLINES = [
    "{city} council approves a new tram line to the airport",
    "Heavy rain floods the old town of {city}",
    "{city} hospital opens a new children's wing",
    "Bus drivers in {city} announce a two-day strike",
    "{city} marathon draws a record 30,000 runners",
    "New footbridge in {city} opens to cyclists",
    "{city} zoo welcomes twin red panda cubs",
    "Power cut leaves the north of {city} in the dark",
    "{city} closes its city centre to cars on Sundays",
    "Historic theatre in {city} reopens after renovation",
    "{city} airport adds direct flights to Singapore",
    "Water bills in {city} to rise by 4 percent",
]
MAYORS = [
    "Helena Marsh",
    "Tomás Ibarra",
    "Ingrid Solberg",
    "Kofi Mensah",
    "Aiko Tanabe",
    "Pieter de Vries",
    "Lucía Ferrer",
    "Daniel Okafor",
    "Marta Kowalczyk",
    "Samuel Brandt",
]
CONDITIONS = [
    "light rain",
    "sunny spells",
    "overcast",
    "clear skies",
    "scattered showers",
    "fog in the morning",
]


def money(rng: random.Random, lo: float, hi: float) -> str:
    return f"{rng.uniform(lo, hi):.2f}"


def plain(n: str) -> str:
    """A number as the calculator takes it (no thousands separators)."""
    return n.replace(",", "")


# ---------------------------------------------------------------------------------------------- single steps
# Each template: (request, call builder). A call builder takes (rng, pools) and returns the request's fillers and
# the one tool step (tool, arguments, result).


def _math(expr: str) -> Callable:
    def build(rng: random.Random, pools: dict) -> tuple[dict, list]:
        v = {
            "a": f"{rng.randint(1500, 90000):,}",
            "b": f"{rng.randint(14, 960)}",
            "c": f"{rng.randint(6, 48)}",
            "k": f"{rng.randint(3, 19)}",
            "p": f"{rng.choice([4.5, 6, 8.25, 12, 15, 18.5, 22, 35])}",
            "y": f"{rng.randint(3, 30)}",
        }
        e = expr.format(**{k: plain(x) for k, x in v.items()})
        return v, [("calculator", {"expression": e}, calculator({"expression": e}))]

    return build


MATH_SINGLE = [
    ("What's {a} multiplied by {b}?", _math("{a} * {b}")),
    ("Please add {a}, {b} and {c} together.", _math("{a} + {b} + {c}")),
    ("Work out {p}% of {a} for me.", _math("{a} * {p} / 100")),
    ("If I split {a} evenly into {k} parts, how big is each part?", _math("{a} / {k}")),
    ("Take {b} away from {a}. What's left?", _math("{a} - {b}")),
    ("What's {b} cubed?", _math("{b} ** 3")),
    ("I drove {a} km over {y} days; what's my average distance per day?", _math("{a} / {y}")),
    ("What do you get for {b} times {c}, plus {a}?", _math("{b} * {c} + {a}")),
    ("A crate holds {c} bottles. How many bottles are in {b} crates?", _math("{c} * {b}")),
    ("What's the total of {k} monthly payments of {a} dollars?", _math("{k} * {a}")),
]

# print-only snippets and their exact output (computed here, by Python, from the same fillers)
CODE_SHAPES = [
    ("print({x} * {y} % {z})", lambda x, y, z, w, s: str(x * y % z)),
    (
        "print(sorted([{y}, {x}, {w}, {z}], reverse=True))",
        lambda x, y, z, w, s: str(sorted([y, x, w, z])[::-1]),
    ),
    ("print(len('{s}') * {w})", lambda x, y, z, w, s: str(len(s) * w)),
    ("print(str({y})[::-1])", lambda x, y, z, w, s: str(y)[::-1]),
    (
        "print(max({x}, {y}, {z}) - min({x}, {y}, {z}))",
        lambda x, y, z, w, s: str(max(x, y, z) - min(x, y, z)),
    ),
    ("print([n * n for n in range({w})])", lambda x, y, z, w, s: str([n * n for n in range(w)])),
    ("print(divmod({y}, {z}))", lambda x, y, z, w, s: str(divmod(y, z))),
    ("print(bin({x}).count('1'))", lambda x, y, z, w, s: str(bin(x).count("1"))),
    ("print(round({y} / {z}, 3))", lambda x, y, z, w, s: str(round(y / z, 3))),
    ("print('{s}'.upper()[:{w}])", lambda x, y, z, w, s: s.upper()[:w]),
]
CODE_WORDS = [
    "harbour",
    "lanterns",
    "quartz",
    "meadow",
    "compass",
    "saffron",
    "glacier",
    "orchard",
    "velvet",
    "ember",
]


def _code(rng: random.Random, pools: dict) -> tuple[dict, list]:
    shape, out = rng.choice(pools["code_shapes"])
    f = {
        "x": rng.randint(100, 9999),
        "y": rng.randint(10000, 99999),
        "z": rng.randint(3, 97),
        "w": rng.randint(2, 9),
        "s": rng.choice(pools["code_words"]),
    }
    code = shape.format(**f)
    return {"code": code}, [("python_interpreter", {"code": code}, out(**f))]


CODE_SINGLE = [
    ("Run this and tell me what it prints: {code}", _code),
    ("Execute `{code}` and report the output.", _code),
    ("What does {code} output when you run it?", _code),
    ("Please run {code} in Python.", _code),
    ("Try this in the interpreter and show me the result: {code}", _code),
    ("I'd like the actual output of {code}, run it please.", _code),
    ("Can you execute the line {code} and tell me what comes out?", _code),
    ("Use Python to run {code} and give me its output.", _code),
    ("Paste me what Python prints for {code}", _code),
    ("Run the snippet {code} and let me know what it shows.", _code),
]


def _fact(kind: str) -> Callable:
    def build(rng: random.Random, pools: dict) -> tuple[dict, list]:
        city, city2 = rng.sample(pools["cities"], 2)
        v = {"city": city, "asset": rng.choice(pools["assets"]), "software": rng.choice(pools["software"])}
        teams = pools["teams"]
        v["team"] = rng.choice(teams)
        if kind == "weather":
            q = f"weather {city} today"
            r = (
                f"{city} today: {rng.randint(-3, 31)}°C, {rng.choice(CONDITIONS)}, wind {rng.randint(5, 40)} km/h "
                "(forecast issued 06:00)."
            )
        elif kind == "price":
            q = f"{v['asset']} price now"
            r = (
                f"{v['asset'][0].upper() + v['asset'][1:]} is trading at {money(rng, 0.5, 900)} this morning, "
                f"{rng.choice(['up', 'down'])} {rng.uniform(0.1, 3.5):.1f}% on the day."
            )
        elif kind == "score":
            other = next(t for t in teams if t != v["team"])
            a, b = rng.randint(0, 4), rng.randint(0, 4)
            q = f"{v['team']} last match result"
            r = f"Final score: {v['team']} {a}, {other} {b} (played last night)."
        elif kind == "version":
            ver = f"{rng.randint(2, 30)}.{rng.randint(0, 12)}.{rng.randint(0, 9)}"
            q = f"{v['software']} latest version"
            r = f"{v['software']} {ver} is the latest stable release, published earlier this month."
        elif kind == "mayor":
            q = f"current mayor of {city}"
            r = f"{rng.choice(pools['mayors'])} has been mayor of {city} since the last municipal election."
        elif kind == "hours":
            q = f"{city} central library opening hours today"
            r = f"{city} Central Library: open today from {rng.randint(8, 10)}:00 to {rng.randint(17, 21)}:00."
        elif kind == "news":
            q = f"{city} top news today"
            r = f'Top story in {city} today: "{rng.choice(pools["headlines"]).format(city=city)}" (City Herald).'
        elif kind == "trams":
            q = f"{city} tram service status today"
            r = f"{city} trams today: line {rng.randint(1, 9)} suspended until {rng.randint(12, 18)}:00 for track works; other lines normal."
        else:
            raise ValueError(kind)
        return v | {"city2": city2}, [("web_search", {"query": q}, r)]

    return build


SEARCH_SINGLE = [
    ("What's the weather like in {city} today?", _fact("weather")),
    ("Check the forecast for {city} today, please.", _fact("weather")),
    ("How much is {asset} going for right now?", _fact("price")),
    ("What was the result of {team}'s last match?", _fact("score")),
    ("Which version of {software} is the newest one out?", _fact("version")),
    ("Who is {city}'s mayor these days?", _fact("mayor")),
    ("Until when is the central library in {city} open today?", _fact("hours")),
    ("What's the big news story in {city} today?", _fact("news")),
    ("Are the trams in {city} running normally today?", _fact("trams")),
    ("Look up how {asset} is trading this morning.", _fact("price")),
]


def _translate(rng: random.Random, pools: dict) -> tuple[dict, list]:
    sentence = rng.choice(pools["sentences"])
    i = rng.randrange(len(LANGS))
    lang = LANGS[i]
    step = ("translator", {"text": sentence, "target_language": lang}, TRANSLATIONS[sentence][i])
    return {"sentence": sentence, "lang": lang}, [step]


TRANSLATION_SINGLE = [
    ("Could you translate '{sentence}' into {lang} for me?", _translate),
    ("How would I say '{sentence}' in {lang}?", _translate),
    ("Give me '{sentence}' in {lang}, please.", _translate),
    ("I need '{sentence}' in {lang} for a note.", _translate),
    ("What's the {lang} for '{sentence}'?", _translate),
    ("Put '{sentence}' into {lang}.", _translate),
    ("Please write '{sentence}' in {lang}.", _translate),
    ("Help me say '{sentence}' to a {lang} speaker.", _translate),
    ("Render '{sentence}' in {lang} for my message.", _translate),
    ("Can I get a {lang} version of '{sentence}'?", _translate),
]

# ---------------------------------------------------------------------------------------------- two-step tasks
# Each builder returns (fillers, [step 1, step 2]); step 2 may be None where its result is not known (the task is
# only used after its first step, label 1).


def _price_times(rng: random.Random, pools: dict) -> tuple[dict, list]:
    city, item, n = rng.choice(pools["cities"]), rng.choice(pools["items"]), rng.randint(3, 24)
    price = money(rng, 2, 120)
    s1 = (
        "web_search",
        {"query": f"price of {item} in {city}"},
        f"{city}: {item} costs {price} euros (updated this week).",
    )
    e = f"{n} * {price}"
    return {"city": city, "item": item, "n": n}, [
        s1,
        ("calculator", {"expression": e}, calculator({"expression": e})),
    ]


def _population_share(rng: random.Random, pools: dict) -> tuple[dict, list]:
    city, p = rng.choice(pools["cities"]), rng.choice([3, 7.5, 12, 18, 25, 40])
    pop = rng.randint(90_000, 3_500_000)
    s1 = (
        "web_search",
        {"query": f"population of {city}"},
        f"The latest estimate puts {city}'s population at {pop:,}.",
    )
    e = f"{pop} * {p} / 100"
    return {"city": city, "p": p}, [s1, ("calculator", {"expression": e}, calculator({"expression": e}))]


SEARCH_THEN_MATH = [
    ("Search for the price of {item} in {city}, then work out what {n} of them cost.", _price_times),
    (
        "How much would {n} times {item} in {city} cost at today's price? Look the price up first.",
        _price_times,
    ),
    ("Find today's price of {item} in {city} and multiply it by {n} for me.", _price_times),
    ("I need {n} of {item} in {city}. Check the current price online and compute the total.", _price_times),
    ("Look up {city}'s population and tell me what {p}% of it is.", _population_share),
    (
        "Find how many people live in {city} now, then calculate {p} percent of that number.",
        _population_share,
    ),
    (
        "What is {p}% of {city}'s current population? Search for the population, then compute.",
        _population_share,
    ),
    ("Get the latest price of {item} in {city} and calculate the cost for a group of {n}.", _price_times),
    ("Check what {item} costs in {city} these days and tell me the bill for {n} of them.", _price_times),
    ("Search {city}'s population, then compute {p}% of the figure you find.", _population_share),
]


def _headline(rng: random.Random, pools: dict) -> tuple[dict, list]:
    city, lang = rng.choice(pools["cities"]), rng.choice(LANGS)
    h = rng.choice(pools["headlines"]).format(city=city)
    s1 = (
        "web_search",
        {"query": f"{city} top news headline today"},
        f'Top story in {city} today: "{h}" (City Herald).',
    )
    return {"city": city, "lang": lang}, [s1, None]


def _bill_message(rng: random.Random, pools: dict) -> tuple[dict, list]:
    total, k, lang = rng.randint(40, 900), rng.randint(2, 9), rng.choice(LANGS)
    e = f"{total} / {k}"
    return {"total": total, "k": k, "lang": lang}, [
        ("calculator", {"expression": e}, calculator({"expression": e})),
        None,
    ]


SEARCH_THEN_TRANSLATE = [
    ("Search for today's top news headline from {city} and translate it into {lang}.", _headline),
    ("What's the main headline in {city} right now? Give it to me in {lang}.", _headline),
    ("Look up the latest local news from {city} and translate the headline to {lang}.", _headline),
    ("Get me {city}'s top story today, translated into {lang}.", _headline),
    (
        "Work out each person's share of a {total} euro bill split {k} ways, then translate 'you owe me' "
        "with that amount into {lang}.",
        _bill_message,
    ),
    (
        "Divide {total} dollars by {k}, then give me the sentence 'each of us pays' plus that amount in {lang}.",
        _bill_message,
    ),
    (
        "Calculate {total} / {k} and translate a short note saying everyone owes that much into {lang}.",
        _bill_message,
    ),
    ("Check the news for {city} and translate the first headline into {lang}.", _headline),
    ("Find out what today's leading story in {city} is and translate its headline into {lang}.", _headline),
    (
        "Split {total} euros among {k} friends and translate a message with each share into {lang}.",
        _bill_message,
    ),
]


def _flat_size(rng: random.Random, pools: dict) -> tuple[dict, list]:
    city, w, d = rng.choice(pools["cities"]), rng.randint(4, 12), rng.randint(5, 14)
    e = f"{w} * {d}"
    area = calculator({"expression": e})
    q = f"flats for rent {city} {area} square metres"
    r = f"{rng.randint(3, 40)} flats of about {area} m² for rent in {city}, from {rng.randint(600, 2400)} euros a month."
    return {"city": city, "w": w, "l": d}, [
        ("calculator", {"expression": e}, area),
        ("web_search", {"query": q}, r),
    ]


def _future_year(rng: random.Random, pools: dict) -> tuple[dict, list]:
    city, y0, n = rng.choice(pools["cities"]), rng.randint(2026, 2031), rng.randint(2, 9)
    e = f"{y0} + {n}"
    year = calculator({"expression": e})
    q = f"{city} events planned {year}"
    r = f"{city} in {year}: the city plans to host {rng.choice(['a jazz festival', 'a design biennale', 'a sailing regatta', 'a science fair'])}."
    return {"city": city, "y0": y0, "n": n}, [
        ("calculator", {"expression": e}, year),
        ("web_search", {"query": q}, r),
    ]


def _word_then_search(rng: random.Random, pools: dict) -> tuple[dict, list]:
    city, word, i = rng.choice(pools["cities"]), rng.choice(pools["words"]), rng.randrange(len(LANGS))
    local = WORDS[word][i]
    s1 = ("translator", {"text": word, "target_language": LANGS[i]}, local)
    q = f"best rated {local} {city}"
    r = f"Top-rated {local} in {city}: 'Chez {rng.choice(['Marin', 'Bodo', 'Lina', 'Oskar'])}', 4.{rng.randint(5, 9)} stars, near the old town."
    return {"city": city, "word": word, "lang": LANGS[i]}, [s1, ("web_search", {"query": q}, r)]


THEN_SEARCH = [
    (
        "A flat is {w} by {l} metres. Work out its area, then search for flats of that size for rent in {city}.",
        _flat_size,
    ),
    ("Compute {w} times {l} square metres and look up rentals of about that size in {city}.", _flat_size),
    (
        "What year is {n} years after {y0}? Then search for events planned in {city} for that year.",
        _future_year,
    ),
    ("Add {n} to {y0} and look up what {city} is planning for that year.", _future_year),
    (
        "Translate '{word}' into {lang}, then search for the best-rated one in {city} using that word.",
        _word_then_search,
    ),
    ("Find the {lang} word for '{word}' and use it to search for one in {city}.", _word_then_search),
    ("I'm in {city}: give me the {lang} for '{word}', then look one up nearby with it.", _word_then_search),
    (
        "How do you say '{word}' in {lang}? Search {city} listings with that word afterwards.",
        _word_then_search,
    ),
    ("Multiply {w} by {l} to get a flat's area, then find listings of that size in {city}.", _flat_size),
    ("Which year comes {n} years after {y0}? Look up {city}'s plans for it once you know.", _future_year),
]


def _numbers_then_code(kind: str) -> Callable:
    def build(rng: random.Random, pools: dict) -> tuple[dict, list]:
        city, asset = rng.choice(pools["cities"]), rng.choice(pools["assets"])
        if kind == "stdev":
            vals = [round(rng.uniform(20, 400), 1) for _ in range(5)]
            q, what = f"{asset} closing prices last five days", f"{asset} closing prices, last five sessions"
            code, out = f"import statistics; print(statistics.stdev({vals}))", str(statistics.stdev(vals))
        elif kind == "sort":
            base = rng.randint(-2, 26)
            vals = [base + rng.randint(-3, 5) for _ in range(7)]
            q, what = f"{city} daily high temperatures this week", f"{city} daily highs this week (°C)"
            code, out = f"print(sorted({vals}))", str(sorted(vals))
        elif kind == "mean":
            vals = [rng.randint(10, 180) for _ in range(6)]
            q, what = f"{city} monthly rainfall this year", f"{city} rainfall January-June (mm)"
            code, out = f"print(sum({vals}) / len({vals}))", str(sum(vals) / len(vals))
        else:  # range
            base = rng.randint(-6, 22)
            vals = [base + rng.randint(-2, 8) for _ in range(8)]
            q, what = f"{city} hourly temperatures today", f"{city} temperatures every 3 hours today (°C)"
            code, out = f"print(max({vals}) - min({vals}))", str(max(vals) - min(vals))
        s1 = ("web_search", {"query": q}, f"{what}: {', '.join(str(v) for v in vals)}.")
        return {"city": city, "asset": asset}, [s1, ("python_interpreter", {"code": code}, out)]

    return build


def _translation_length(rng: random.Random, pools: dict) -> tuple[dict, list]:
    (v, [s1]) = _translate(rng, pools)
    code = f"print(len({json.dumps(s1[2], ensure_ascii=False)}))"
    return v, [s1, ("python_interpreter", {"code": code}, str(len(s1[2])))]


THEN_CODE = [
    (
        "Find the last five closing prices of {asset} and run Python to get their standard deviation.",
        _numbers_then_code("stdev"),
    ),
    (
        "Search for this week's daily high temperatures in {city}, then use Python to sort them.",
        _numbers_then_code("sort"),
    ),
    (
        "Look up {city}'s monthly rainfall so far this year and run a Python script to average it.",
        _numbers_then_code("mean"),
    ),
    (
        "Get today's hourly temperatures for {city} and write Python that prints the range (max minus min).",
        _numbers_then_code("range"),
    ),
    (
        "Translate '{sentence}' into {lang}, then run Python to count the characters of the translation.",
        _translation_length,
    ),
    (
        "Put '{sentence}' into {lang} and use the interpreter to print how long the result is.",
        _translation_length,
    ),
    (
        "Fetch the recent closing prices of {asset} online, then compute their standard deviation in code.",
        _numbers_then_code("stdev"),
    ),
    (
        "I want '{sentence}' in {lang} and then its length in characters, computed with Python.",
        _translation_length,
    ),
    (
        "Search for {city}'s temperatures every few hours today and have Python print the spread between max and "
        "min.",
        _numbers_then_code("range"),
    ),
    (
        "Find {city}'s rainfall figures for this year and compute their mean with a Python one-liner.",
        _numbers_then_code("mean"),
    ),
]

DOMAIN_OF = {
    "calculator": "math",
    "python_interpreter": "code",
    "web_search": "search",
    "translator": "translation",
}
# cell -> (two-step task families, fraction of the cell that is two-step); label 0 two-step tasks are complete
CELLS = {
    ("math", 0): (MATH_SINGLE, [SEARCH_THEN_MATH]),
    ("code", 0): (CODE_SINGLE, [THEN_CODE]),
    ("search", 0): (SEARCH_SINGLE, [THEN_SEARCH]),
    ("translation", 0): (TRANSLATION_SINGLE, []),
    ("math", 1): (None, [SEARCH_THEN_MATH]),
    ("code", 1): (None, [THEN_CODE]),
    ("search", 1): (None, [THEN_SEARCH]),
    ("translation", 1): (None, [SEARCH_THEN_TRANSLATE]),
}


def messages(prompt: str, steps: list) -> list[dict]:
    """OpenAI messages: the user's request, then each step's call and result."""
    out: list[dict] = [{"role": "user", "content": prompt}]
    for k, (tool, args, result) in enumerate(steps, 1):
        out.append(
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {"id": f"call_{k}", "type": "function", "function": {"name": tool, "arguments": args}}
                ],
            }
        )
        out.append({"role": "tool", "tool_call_id": f"call_{k}", "content": str(result)})
    return out


def conversation_pools(rng: random.Random) -> dict[str, dict]:
    """Fillers per split: the single-turn set's partition where shared, this script's own partition otherwise."""
    single = split_pools(random.Random(SINGLE_SEED))
    own = {
        "items": ITEMS,
        "headlines": HEADLINES,
        "mayors": MAYORS,
        "words": list(WORDS),
        "code_shapes": CODE_SHAPES,
        "code_words": CODE_WORDS,
    }
    pools = {s: {k: single[s][k] for k in ("cities", "assets", "software", "teams")} for s in SPLITS}
    for s in SPLITS:
        pools[s]["sentences"] = [x for x in single[s]["sentences"] if x in TRANSLATIONS]
    for name, items in own.items():
        for s, part in partition(items, rng).items():
            pools[s][name] = part
    for s, p in pools.items():
        for name, items in p.items():
            if len(items) < (2 if name in ("cities", "teams") else 1):
                raise ValueError(f"split {s} has too few {name}: {items}")
    return pools


def main(out: Path = OUT) -> None:
    rng = random.Random(SEED)
    pools = conversation_pools(rng)
    families = {
        id(f): partition(f, rng) for f in (SEARCH_THEN_MATH, SEARCH_THEN_TRANSLATE, THEN_SEARCH, THEN_CODE)
    }
    rows, seen = [], set()
    for (domain, label), (single, chains) in CELLS.items():
        single_parts = partition(single, rng) if single else None
        for split, quota in SPLITS.items():
            got, tries = 0, 0
            while got < quota:
                tries += 1
                if tries > 20000:
                    raise RuntimeError(
                        f"cannot make {quota} unique conversations for {domain}/{label}/{split}"
                    )
                two_step = single is None or (chains and got % 5 in (1, 3))
                if two_step:
                    template, build = rng.choice(families[id(chains[0])][split])
                else:
                    template, build = rng.choice(single_parts[split])
                fill, steps = build(rng, pools[split])
                steps = steps[:1] if label == 1 else steps
                if any(s is None for s in steps):
                    raise RuntimeError(f"{template!r}: a label-0 conversation needs every result")
                prompt = wrap(template.format(**fill), rng)
                key = norm(prompt)
                if key in seen:
                    continue
                seen.add(key)
                last_tool = steps[-1][0]
                if label == 0 and DOMAIN_OF[last_tool] != domain:
                    raise RuntimeError(f"{template!r}: its last result is {last_tool}'s, not {domain}'s")
                rows.append(
                    {
                        "split": split,
                        "domain": domain,
                        "label": label,
                        "prompt": prompt,
                        "messages": messages(prompt, steps),
                    }
                )
                got += 1
    rng.shuffle(rows)
    rows.sort(key=lambda r: list(SPLITS).index(r["split"]))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    counters = dict.fromkeys(SPLITS, 0)
    with open(tmp, "w", encoding="utf-8") as f:
        for r in rows:
            i = counters[r["split"]]
            counters[r["split"]] += 1
            f.write(json.dumps({"id": f"{r['split']}-conv-{i:03d}", **r}, ensure_ascii=False) + "\n")
    tmp.replace(out)
    print(counters)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT)
