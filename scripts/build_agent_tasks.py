"""Write the agent benchmark's tasks, search index and phrasebook (src/steerlab/data/agent/).

Held out from the ASA data: written by hand for this benchmark with their own phrasings and fillers (no template
or filler of scripts/build_asa_data.py or build_asa_conversations.py; tests/test_agent.py checks there is no
near-duplicate), and never used to fit or choose anything. Every tool task has a checkable answer:

- arithmetic and code: the exact number (computed here by the stand-ins' evaluator);
- facts: fictional but plausible current facts that exist only in the search index, so the model cannot know them
  without searching; the answer string must appear in the final answer;
- translation: phrases in the phrasebook; the translation must appear;
- two-step: a value that only the search index holds, then a computation with it;
- no-tool tasks (general knowledge, writing): success is no call and a non-empty answer.

``small: true`` marks the few tasks the fast test runs. Deterministic: ``python scripts/build_agent_tasks.py``
rewrites the same files (or writes them into the folder given).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from steerlab.agent.stand_ins import calculator, python_interpreter

OUT = Path(__file__).resolve().parents[1] / "src" / "steerlab" / "data" / "agent"

ARITHMETIC = [  # (prompt, expression)
    ("A warehouse ships 1,284 boxes a day. How many boxes does it ship in 37 days?", "1284 * 37"),
    ("What is 7,845 multiplied by 63?", "7845 * 63"),
    ("What is 18% of 2,450?", "2450 * 18 / 100"),
    ("Add 3,478, 9,056 and 12,391.", "3478 + 9056 + 12391"),
    ("What is 96,512 divided by 32?", "96512 / 32"),
    ("A garden is 37 metres by 24 metres. What is its area in square metres?", "37 * 24"),
    ("How many minutes are there in 17 days?", "17 * 24 * 60"),
    ("A recipe needs 275 grams of flour per loaf. How many grams do 36 loaves need?", "275 * 36"),
    ("What is 2,345 squared?", "2345 ** 2"),
    ("Three friends split a bill of 247.50 equally. How much does each pay?", "247.50 / 3"),
    ("A cinema sold 629 tickets at 13 each. What were the takings?", "629 * 13"),
    ("From 58,000 subtract 19,687, then multiply by 3.", "(58000 - 19687) * 3"),
]
CODE = [  # print-only snippets the interpreter stand-in evaluates
    "What does print(len('chrysanthemum') * 7) print? Run it.",
    "Run print(48 ** 2 - 1000) in Python and tell me the output.",
    "Execute print(len('abracadabra') + len('xylophone')) and give me the result.",
    "Please run this Python line and report its output: print(7 * (15 + 36))",
]
# (title, snippet, prompt, answer): facts that exist only here
FACTS = [
    (
        "Kestrel Prize for architecture winner",
        "The Kestrel Prize for architecture went this year to Mirela Dascalu for the Brasov riverside library.",
        "Who won this year's Kestrel Prize for architecture?",
        "Mirela Dascalu",
    ),
    (
        "Lake Orvell ferry new vessel",
        "The Lake Orvell ferry service launched its new electric ferry, the Saltmarsh Lark, this spring.",
        "What is the name of the new ferry on the Lake Orvell crossing?",
        "Saltmarsh Lark",
    ),
    (
        "Port Avery Gulls head coach",
        "The Port Avery Gulls rugby club appointed Tavita Faleolo as head coach in January.",
        "Who is the current head coach of the Port Avery Gulls rugby team?",
        "Tavita Faleolo",
    ),
    (
        "Norland Mint commemorative coin",
        "The Norland Mint's new commemorative coin is called the Silver Heron.",
        "What did the Norland Mint name its new commemorative coin?",
        "Silver Heron",
    ),
    (
        "Cresswell tidal power station contract",
        "Halvorsen Marine Works won the contract to build the Cresswell tidal power station.",
        "Which company won the contract to build the Cresswell tidal power station?",
        "Halvorsen Marine Works",
    ),
    (
        "Quillon OS 9 release code name",
        "Quillon OS 9, code-named Juniper Fox, was released last week.",
        "What is the code name of the newest Quillon OS release?",
        "Juniper Fox",
    ),
    (
        "Brightwater Marathon women's race winner",
        "Amaia Etxeberria won the women's race of the Brightwater Marathon in 2:27:41.",
        "Who won the women's race at this year's Brightwater Marathon?",
        "Amaia Etxeberria",
    ),
    (
        "Veldspire Tower Aldermoor height",
        "The Veldspire Tower in Aldermoor was topped out at a height of 287 metres.",
        "How tall is the new Veldspire Tower in Aldermoor?",
        "287",
    ),
    (
        "Copperfield Sound festival headliner",
        "The Copperfield Sound festival announced The Lantern Weavers as this summer's headliner.",
        "Which band headlines the Copperfield Sound festival this summer?",
        "Lantern Weavers",
    ),
    (
        "Eastmoor spelling bee winning word",
        "The Eastmoor spelling bee was won on the word quillwort.",
        "What was the winning word at this year's Eastmoor spelling bee?",
        "quillwort",
    ),
    (
        "Tarnwick regional council chair election",
        "Ottoline Farrow was elected chair of the Tarnwick regional council last month.",
        "Who was elected chair of the Tarnwick regional council?",
        "Ottoline Farrow",
    ),
    (
        "Fennick Street night market opening date",
        "The Fennick Street night market opens on 14 June.",
        "When does the Fennick Street night market open?",
        "14 June",
    ),
]
# (title, snippet, prompt, expression using the snippet's value)
TWO_STEP = [
    (
        "Harwick Bridge toll",
        "Harwick Bridge toll: 3.75 per car crossing since March.",
        "The Harwick Bridge toll changed this year. Look up the toll and tell me what 14 crossings cost.",
        "14 * 3.75",
    ),
    (
        "Selbury Aquarium ticket price",
        "Selbury Aquarium adult ticket price: 18.40.",
        "How much do 9 adult tickets to the Selbury Aquarium cost at the current price?",
        "9 * 18.40",
    ),
    (
        "Dunmore library late fee",
        "Dunmore library late fee: 0.35 per day per book.",
        "What is the Dunmore library fine for one book returned 23 days late at its current daily fee?",
        "23 * 0.35",
    ),
    (
        "Greyhaven climbing gym membership fee",
        "Greyhaven climbing gym membership: 47 per month.",
        "What does a year of Greyhaven climbing gym membership cost at the current monthly fee?",
        "12 * 47",
    ),
    (
        "Oakridge concert hall seats per row",
        "Oakridge concert hall: each of its rows has 41 seats.",
        "The Oakridge concert hall has 32 rows. Look up how many seats a row has and tell me the total.",
        "32 * 41",
    ),
    (
        "Brenmoor Energy electricity rate",
        "Brenmoor Energy's current rate: 0.29 per kilowatt-hour.",
        "What would 250 kilowatt-hours cost at Brenmoor Energy's current rate?",
        "250 * 0.29",
    ),
]
DISTRACTORS = [  # index entries that share words with the tasks but do not answer them
    ("Kestrel Prize for literature", "The Kestrel Prize for literature was not awarded this year."),
    ("Quillon OS 8 release", "Quillon OS 8, code-named Amber Wren, is no longer supported."),
    ("Port Avery Gulls last match", "The Port Avery Gulls won their last match 24-17 at home."),
    ("Harwick Bridge repairs", "Harwick Bridge will close for repairs on two weekends in autumn."),
    ("Selbury Aquarium opening hours", "Selbury Aquarium is open daily from 9:00 to 18:00."),
    ("Brightwater Marathon route", "The Brightwater Marathon route follows the river through the old town."),
]
# (English, language, translation): the phrasebook; the first one of each phrase is a task
PHRASES = [
    ("good luck with your exam", "German", "Viel Glück bei deiner Prüfung"),
    ("the kitchen is on the left", "French", "La cuisine est à gauche"),
    ("I would like a window seat", "Spanish", "Quisiera un asiento junto a la ventana"),
    ("see you at the station", "Italian", "Ci vediamo alla stazione"),
    ("how much does the map cost", "French", "Combien coûte la carte ?"),
    ("the water is not drinkable", "German", "Das Wasser ist nicht trinkbar"),
    ("we are lost", "Spanish", "Estamos perdidos"),
    ("my suitcase is blue", "Portuguese", "A minha mala é azul"),
]
MORE_PHRASES = [
    ("good luck with your exam", "French", "Bonne chance pour ton examen"),
    ("the kitchen is on the left", "German", "Die Küche ist links"),
    ("we are lost", "French", "Nous sommes perdus"),
    ("we are lost", "German", "Wir haben uns verlaufen"),
    ("see you at the station", "Spanish", "Nos vemos en la estación"),
]
TRANSLATE_PROMPTS = [
    "How do I say '{text}' in {lang}?",
    "Translate '{text}' into {lang}, please.",
    "I need '{text}' in {lang} for a postcard.",
    "What is '{text}' in {lang}?",
    "Could you put '{text}' into {lang}?",
    "Please give me the {lang} for '{text}'.",
    "Write '{text}' in {lang} for me.",
    "My host speaks {lang}. How do I tell her '{text}'?",
]
NO_TOOL = [
    "What is the capital of Canada?",
    "Write a haiku about the sea.",
    "Give me three tips for sleeping better.",
    "Who wrote Romeo and Juliet?",
    "Explain what photosynthesis is in one sentence.",
    "Suggest a name for a grey kitten.",
    "What is the boiling point of water at sea level in Celsius?",
    "Write a short thank-you note to a neighbour who watered my plants.",
    "How many legs does a spider have?",
    "Give me a synonym for 'happy'.",
    "What is the largest planet in the solar system?",
    "Write a two-sentence story about a lost key.",
    "Why do we have leap years?",
    "Name the three primary colours.",
    "What is a good way to start learning to cook?",
    "Describe the smell of rain in one sentence.",
    "Who painted the Mona Lisa?",
    "What is the opposite of 'ancient'?",
    "Write a polite reminder that a meeting starts at ten.",
    "Is a tomato a fruit or a vegetable?",
]
SMALL = {"arith-00", "code-00", "fact-00", "translate-00", "two_step-00", "no_tool-00", "no_tool-01"}


def number(expr: str) -> str:
    value = calculator({"expression": expr})
    if value.startswith("error"):
        raise ValueError(f"{expr}: {value}")
    return value


def tasks() -> list[dict]:
    out = []

    def add(kind: str, i: int, prompt: str, answer: str | None, tools: list[str]) -> None:
        tid = f"{kind}-{i:02d}"
        out.append(
            {
                "id": tid,
                "kind": kind,
                "prompt": prompt,
                "answer": answer,
                "tools": tools,
                "small": tid in SMALL,
            }
        )

    for i, (prompt, expr) in enumerate(ARITHMETIC):
        add("arith", i, prompt, number(expr), ["calculator"])
    for i, prompt in enumerate(CODE):
        start = prompt.index("print(")
        code = prompt[start : start + _balanced(prompt[start:])]
        answer = python_interpreter({"code": code})
        if not answer[0].isdigit():
            raise ValueError(f"{code}: {answer}")
        add("code", i, prompt, answer, ["python_interpreter"])
    for i, (_, _, prompt, answer) in enumerate(FACTS):
        add("fact", i, prompt, answer, ["web_search"])
    for i, (text, lang, translation) in enumerate(PHRASES):
        add("translate", i, TRANSLATE_PROMPTS[i].format(text=text, lang=lang), translation, ["translator"])
    for i, (_, _, prompt, expr) in enumerate(TWO_STEP):
        add("two_step", i, prompt, number(expr), ["web_search", "calculator"])
    for i, prompt in enumerate(NO_TOOL):
        add("no_tool", i, prompt, None, [])
    return out


def _balanced(s: str) -> int:
    """Length of the call at the start of ``s`` (up to its matching parenthesis)."""
    depth = 0
    for k, ch in enumerate(s):
        depth += ch == "("
        depth -= ch == ")"
        if ch == ")" and depth == 0:
            return k + 1
    raise ValueError(f"unbalanced: {s}")


def write_jsonl(path: Path, rows: list[dict]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    tmp.replace(path)


def main(out: Path = OUT) -> None:
    out.mkdir(parents=True, exist_ok=True)
    index = [{"title": t, "snippet": s} for t, s, *_ in FACTS + TWO_STEP] + [
        {"title": t, "snippet": s} for t, s in DISTRACTORS
    ]
    phrasebook = [
        {"text": e, "target_language": lang, "translation": t} for e, lang, t in PHRASES + MORE_PHRASES
    ]
    rows = tasks()
    write_jsonl(out / "tasks.jsonl", rows)
    write_jsonl(out / "search_index.jsonl", index)
    write_jsonl(out / "phrasebook.jsonl", phrasebook)
    print(
        f"{len(rows)} tasks ({sum(bool(r['tools']) for r in rows)} need a tool, {sum(r['small'] for r in rows)} "
        f"small), {len(index)} index entries, {len(phrasebook)} phrases"
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT)
