"""Write the example "own tools" set (examples/own-tools/): three tools that are not steerlab's shipped four (a
weather lookup, a unit converter, a calendar) and labelled prompts for them.

Why: the guide (docs/own-tools.md) and the learning curve (``steerlab asa curve``) need a tool set nobody fitted the
shipped asset on. Design:
- 3 domains (weather -> get_weather, units -> convert_units, calendar -> calendar) x {tool (1), non-tool (0)}.
- Fit splits (CAL, TRAIN, VALID): 24 prompts per (domain, label) cell each, from FIT templates and fillers.
- TEST: 40 per cell, from TEST templates and fillers written separately (no template or filler is shared with the
  fit splits), so TEST measures prompts the fit never saw in any form.
- A tool prompt needs the tool (live weather, an exact conversion of an odd quantity, the user's own calendar); a
  non-tool prompt of the same domain is answerable from general knowledge (how weather works, what a unit is, how
  calendars work), with the same fillers, so a word alone does not give the label away.
Deterministic: ``python scripts/build_own_tools_data.py`` rewrites the same files.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "examples" / "own-tools"
FIT_SPLITS = {"cal": 24, "train": 24, "valid": 24}
TEST_PER_CELL = 40
SEED = 20261202

TOOLS = [
    {
        "type": "function",
        "domain": "weather",
        "function": {
            "name": "get_weather",
            "description": "Current conditions or the forecast for a place.",
            "parameters": {
                "type": "object",
                "properties": {
                    "location": {"type": "string", "description": "city or place"},
                    "when": {"type": "string", "description": "now, today, tomorrow or a date"},
                },
                "required": ["location"],
            },
        },
    },
    {
        "type": "function",
        "domain": "units",
        "function": {
            "name": "convert_units",
            "description": "Convert a quantity from one unit to another exactly.",
            "parameters": {
                "type": "object",
                "properties": {
                    "value": {"type": "number", "description": "the quantity"},
                    "from_unit": {"type": "string", "description": "e.g. miles"},
                    "to_unit": {"type": "string", "description": "e.g. kilometres"},
                },
                "required": ["value", "from_unit", "to_unit"],
            },
        },
    },
    {
        "type": "function",
        "domain": "calendar",
        "function": {
            "name": "calendar",
            "description": "Read or change the user's calendar: list the events of a day or add an event.",
            "parameters": {
                "type": "object",
                "properties": {
                    "action": {"type": "string", "enum": ["list", "add"]},
                    "date": {"type": "string", "description": "e.g. 2026-05-14 or next Friday"},
                    "title": {"type": "string", "description": "the event, when adding"},
                    "time": {"type": "string", "description": "e.g. 15:30, when adding"},
                },
                "required": ["action", "date"],
            },
        },
    },
]

# fillers: FIT and TEST lists are disjoint
PLACES = {
    "fit": [
        "Lisbon",
        "Denver",
        "Osaka",
        "Nairobi",
        "Bergen",
        "Hanoi",
        "Quito",
        "Tallinn",
        "Perth",
        "Seville",
        "Montreal",
        "Tbilisi",
        "Cork",
        "Leipzig",
        "Cusco",
        "Aarhus",
    ],
    "test": [
        "Vancouver",
        "Marseille",
        "Busan",
        "Accra",
        "Gdańsk",
        "Kyoto",
        "La Paz",
        "Helsinki",
        "Auckland",
        "Valencia",
        "Winnipeg",
        "Yerevan",
    ],
}
WHEN = {
    "fit": ["right now", "tomorrow", "this weekend", "tonight", "on Saturday"],
    "test": ["this afternoon", "on Monday morning", "over the next three days", "at sunrise tomorrow"],
}
QUANT = {
    "fit": [
        ("37.4", "miles", "kilometres"),
        ("187.3", "pounds", "kilograms"),
        ("2.75", "gallons", "litres"),
        ("68.9", "Fahrenheit", "Celsius"),
        ("413", "feet", "metres"),
        ("9.6", "ounces", "grams"),
        ("1,250", "square feet", "square metres"),
        ("83.5", "inches", "centimetres"),
        ("14.2", "stones", "kilograms"),
        ("3.3", "cups", "millilitres"),
    ],
    "test": [
        ("52.8", "kilometres", "miles"),
        ("7.45", "litres", "pints"),
        ("246", "grams", "ounces"),
        ("31.7", "Celsius", "Fahrenheit"),
        ("1.83", "metres", "feet"),
        ("920", "acres", "hectares"),
        ("15.6", "nautical miles", "kilometres"),
        ("4.4", "tablespoons", "millilitres"),
    ],
}
UNIT_WORDS = {
    "fit": ["miles", "pounds", "gallons", "Fahrenheit", "feet", "ounces", "inches", "stones", "cups"],
    "test": ["kilometres", "litres", "grams", "Celsius", "metres", "acres", "nautical miles", "tablespoons"],
}
EVENTS = {
    "fit": [
        ("dentist appointment", "Friday", "3 pm"),
        ("call with Priya", "next Tuesday", "10:30"),
        ("team lunch", "May 14", "noon"),
        ("yoga class", "Thursday", "7 am"),
        ("parent-teacher meeting", "the 22nd", "4:15 pm"),
        ("flight to Rome", "June 3", "6:40 am"),
        ("haircut", "Saturday", "11 am"),
        ("budget review", "next Wednesday", "2 pm"),
    ],
    "test": [
        ("vet visit for the cat", "Monday", "9:45"),
        ("dinner with Omar", "the 18th", "8 pm"),
        ("quarterly planning", "next Thursday", "1 pm"),
        ("piano lesson", "Sunday", "5:30 pm"),
        ("car service", "March 9", "8 am"),
        ("book club", "the last Friday of the month", "7 pm"),
    ],
}
DAYS = {
    "fit": ["Friday", "next Tuesday", "May 14", "Thursday", "Saturday", "tomorrow"],
    "test": ["Monday", "the 18th", "next Thursday", "Sunday", "March 9", "the day after tomorrow"],
}

OPENERS = {
    "fit": ["", "", "Quick question: ", "Hi! ", "I was wondering: ", "Hey, ", "Please help: "],
    "test": ["", "", "Hello there. ", "One thing: ", "Sorry to bother you. "],
}
CLOSERS = {
    "fit": ["", "", " Thanks!", " Cheers.", " Thank you."],
    "test": ["", "", " Much appreciated.", " Thanks a lot."],
}
MONTHS = {
    "fit": ["January", "April", "July", "October"],
    "test": ["February", "June", "September", "December"],
}

T = {  # (domain, label, part) -> templates; {p} place, {w} when, {v} {a} {b} quantity, {u} unit, {e} {d} {t} event
    ("weather", 1, "fit"): [
        "What's the weather in {p} {w}?",
        "Will it rain in {p} {w}?",
        "How cold is it in {p} {w}?",
        "Do I need an umbrella in {p} {w}?",
        "Check the forecast for {p} {w}, please.",
        "Is it windy in {p} {w}?",
        "What temperature is it in {p} {w}?",
        "Any snow expected in {p} {w}?",
    ],
    ("weather", 0, "fit"): [
        "Why does {p} get so much fog in general?",
        "What causes thunderstorms?",
        "How do meteorologists make a forecast?",
        "What is the difference between weather and climate?",
        "Why is the sky blue?",
        "What does humidity mean?",
        "What kind of climate does {p} have, broadly speaking?",
        "How are hurricanes named?",
        "What is the weather usually like in {p} in {m}?",
        "Why is {p} colder in {m} than in other months?",
    ],
    ("units", 1, "fit"): [
        "Convert {v} {a} to {b}.",
        "How many {b} is {v} {a}?",
        "What is {v} {a} in {b}?",
        "I need {v} {a} expressed in {b}.",
        "Please turn {v} {a} into {b}.",
        "{v} {a} equals how many {b}?",
    ],
    ("units", 0, "fit"): [
        "What is the history of {u} as a unit?",
        "Why does the US still use {u}?",
        "Which countries use the metric system?",
        "What is a unit of measurement?",
        "Is {u} part of the imperial system?",
        "Who defined the metre originally?",
        "Is {u} a unit of length, mass or volume?",
        "Why do scientists prefer metric units over {u}?",
    ],
    ("calendar", 1, "fit"): [
        "Add a {e} on {d} at {t} to my calendar.",
        "What's on my calendar {d}?",
        "Put {e} in my schedule for {d} at {t}.",
        "Do I have anything booked on {d}?",
        "Schedule a {e} for {d}, {t}.",
        "Show me my events for {d}.",
    ],
    ("calendar", 0, "fit"): [
        "Why do months have different numbers of days?",
        "How does a leap year work?",
        "What is the origin of the name of the month of May?",
        "How can I be better at keeping a schedule?",
        "Why is a week seven days long?",
        "What is the Julian calendar?",
        "How many days does {m} have?",
        "What holidays usually fall in {m}?",
    ],
    # TEST: separately written templates
    ("weather", 1, "test"): [
        "Tell me the current conditions in {p}.",
        "Should I pack a raincoat for {p} {w}?",
        "Look up how hot it will be in {p} {w}.",
        "I'm heading to {p}; what's the forecast {w}?",
        "Is it sunny in {p} {w}?",
    ],
    ("weather", 0, "test"): [
        "How does a barometer predict changes in weather?",
        "Explain what a cold front is.",
        "Why is {p} rainy in general?",
        "What makes a rainbow appear?",
        "Why do clouds float?",
        "Is {m} a good month to visit {p}, climate-wise?",
    ],
    ("units", 1, "test"): [
        "Could you change {v} {a} into {b} for me?",
        "Give me {v} {a} in {b}, exactly.",
        "My recipe says {v} {a}; how much is that in {b}?",
        "Express {v} {a} as {b}.",
    ],
    ("units", 0, "test"): [
        "Why is {u} called that?",
        "What is the SI system of units?",
        "When did Britain adopt metric units?",
        "What does {u} measure?",
    ],
    ("calendar", 1, "test"): [
        "Book {e} on {d} at {t} in my calendar.",
        "Am I free on {d}?",
        "Create an event '{e}' on {d} at {t}.",
        "List my appointments for {d}.",
    ],
    ("calendar", 0, "test"): [
        "Why does February have 28 days?",
        "What is the Gregorian calendar?",
        "What are good habits for planning a week?",
        "Where does the name Wednesday come from?",
        "Why is {m} named the way it is?",
    ],
}


def _fill(tpl: str, part: str, rng: random.Random) -> str:
    v, a, b = rng.choice(QUANT[part])
    e, d, t = rng.choice(EVENTS[part])
    if "{d}" in tpl and "{e}" not in tpl:
        d = rng.choice(DAYS[part])
    text = tpl.format(
        p=rng.choice(PLACES[part]),
        w=rng.choice(WHEN[part]),
        v=v,
        a=a,
        b=b,
        u=rng.choice(UNIT_WORDS[part]),
        e=e,
        d=d,
        t=t,
        m=rng.choice(MONTHS[part]),
    )
    return rng.choice(OPENERS[part]) + text + rng.choice(CLOSERS[part])


def _cell(domain: str, label: int, part: str, n: int, rng: random.Random, seen: set[str]) -> list[str]:
    out, tries = [], 0
    tpls = T[(domain, label, part)]
    while len(out) < n:
        text = _fill(tpls[len(out) % len(tpls)] if tries < n else rng.choice(tpls), part, rng)
        tries += 1
        if text not in seen or tries > 50 * n:
            seen.add(text)
            out.append(text)
    return out


def build() -> list[dict]:
    rng = random.Random(SEED)
    rows, seen = [], set()
    plan = [(s, n, "fit") for s, n in FIT_SPLITS.items()] + [("test", TEST_PER_CELL, "test")]
    for split, n, part in plan:
        for domain in ("weather", "units", "calendar"):
            for label in (1, 0):
                for k, text in enumerate(_cell(domain, label, part, n, rng, seen)):
                    rows.append(
                        {
                            "id": f"{split}-{domain}-{label}-{k:02d}",
                            "prompt": text,
                            "domain": domain,
                            "label": label,
                            "split": split,
                        }
                    )
    return rows


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "my_tools.json").write_text(json.dumps(TOOLS, indent=2) + "\n")
    rows = build()
    (OUT / "my.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    print(f"wrote {len(rows)} prompts and {len(TOOLS)} tools to {OUT}")


if __name__ == "__main__":
    main()
