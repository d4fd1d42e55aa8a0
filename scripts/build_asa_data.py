"""Write the ASA dataset (src/steerlab/data/asa/*.jsonl) from hand-written templates and fillers.

Design (see src/steerlab/data/asa/README.md): 4 domains x {tool, non-tool} x 200 prompts. Positives and negatives
of a domain share fillers (numbers, code, cities, sentences, languages), so words alone do not give the label
away. Templates AND fillers are partitioned between splits, so TEST phrasings and fillers are never seen in
CAL/TRAIN/VALID. Deterministic: ``python scripts/build_asa_data.py`` rewrites the same files.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "src" / "steerlab" / "data" / "asa"
SPLITS = {"cal": 40, "train": 40, "valid": 40, "test": 80}  # per (domain, label) cell
SEED = 20261122

CITIES = [
    "Lyon",
    "Osaka",
    "Porto",
    "Denver",
    "Nairobi",
    "Tallinn",
    "Cusco",
    "Perth",
    "Bergen",
    "Kraków",
    "Seville",
    "Hanoi",
    "Montreal",
    "Edinburgh",
    "Valparaíso",
    "Bologna",
    "Tbilisi",
    "Da Nang",
    "Ghent",
    "Halifax",
    "Cork",
    "Bilbao",
    "Leipzig",
    "Adelaide",
    "Marrakesh",
    "Reykjavík",
    "Ljubljana",
    "Cebu",
    "Salzburg",
    "Tucson",
    "Quito",
    "Aarhus",
]
LANGS = [
    "French",
    "German",
    "Spanish",
    "Italian",
    "Portuguese",
    "Japanese",
    "Korean",
    "Dutch",
    "Swedish",
    "Polish",
    "Turkish",
    "Greek",
    "Vietnamese",
    "Finnish",
    "Czech",
    "Hungarian",
    "Indonesian",
    "Norwegian",
    "Romanian",
    "Danish",
    "Hindi",
    "Russian",
    "Arabic",
    "Mandarin Chinese",
]
SENTENCES = [
    "the meeting has been moved to Thursday",
    "please leave the package with the neighbour",
    "my flight lands at half past seven",
    "could you recommend a quiet restaurant nearby",
    "the museum is closed on Mondays",
    "I am allergic to peanuts",
    "where can I buy a train ticket",
    "thank you for your patience",
    "we will need a table for four",
    "the invoice is attached to this email",
    "turn left after the second traffic light",
    "the battery needs to be replaced",
    "our team won the regional final",
    "I would like to cancel my reservation",
    "the soup is too salty",
    "happy birthday to my dear grandmother",
    "the library opens at nine",
    "do you accept credit cards",
    "the printer on the third floor is broken",
    "I lost my umbrella on the bus",
    "the children are asleep",
    "this medicine should be taken after meals",
    "the concert starts in ten minutes",
    "she has been learning the violin for years",
    "the road is blocked because of snow",
    "please keep the door closed",
    "my phone number has changed",
    "the garden needs watering twice a week",
    "I will be working from home tomorrow",
    "the hotel breakfast is included",
    "the lecture was postponed",
    "can I pay by bank transfer",
    "the rent is due on the first of the month",
    "we ran out of coffee",
    "the bridge will reopen next spring",
    "I forgot my password again",
    "the cat is hiding under the bed",
    "your order has been shipped",
    "the doctor will see you now",
    "the wifi password is on the fridge",
    "he apologised for being late",
    "the exhibition ends this Sunday",
    "let's meet at the main entrance",
    "the price includes taxes",
    "this seat is taken",
    "the river flooded the lower streets last winter",
    "I need a receipt for my expenses",
    "the new bakery sells rye bread",
    "the elevator is out of order",
    "please speak a little more slowly",
    "the parcel weighs two kilos",
    "our neighbours are very friendly",
    "the train was cancelled due to a strike",
    "I have a reservation under the name Garcia",
    "the tickets are sold out",
    "we are looking for a volunteer",
    "the shop around the corner is cheaper",
    "my sister is moving to Canada",
    "the deadline has been extended",
    "the view from the hill is beautiful",
]
FOREIGN = [
    ("French", "Je voudrais réserver une chambre pour deux nuits"),
    ("German", "Wo ist der nächste Bahnhof"),
    ("Spanish", "Mañana vamos a la playa con mis primos"),
    ("Italian", "Il treno per Roma è in ritardo"),
    ("Portuguese", "Obrigado pela ajuda de ontem"),
    ("Dutch", "Ik heb mijn sleutels verloren"),
    ("Swedish", "Kan du hjälpa mig med väskan"),
    ("Polish", "Dziękuję za miły wieczór"),
    ("Turkish", "Bu akşam yemeğe geliyor musun"),
    ("Spanish", "¿Dónde está la farmacia más cercana?"),
    ("French", "Le musée ferme à dix-huit heures"),
    ("German", "Ich hätte gern einen Kaffee mit Milch"),
    ("Italian", "Abbiamo prenotato un tavolo per le otto"),
    ("Czech", "Kolik to stojí"),
    ("Finnish", "Hyvää huomenta kaikille"),
    ("Norwegian", "Jeg gleder meg til sommeren"),
    ("Romanian", "Unde este gara centrală"),
    ("Danish", "Vi ses i morgen tidlig"),
    ("Portuguese", "A reunião foi adiada para sexta-feira"),
    ("Dutch", "De winkel is op zondag gesloten"),
]
MATH_CONCEPTS = [
    "a logarithm",
    "the Pythagorean theorem",
    "an integral",
    "a prime number",
    "the number pi",
    "a matrix",
    "standard deviation",
    "the distributive property",
    "a geometric series",
    "a vector",
    "conditional probability",
    "the median",
    "an exponent",
    "a derivative",
    "a limit",
    "complex numbers",
    "modular arithmetic",
    "the Fibonacci sequence",
    "a function",
    "the quadratic formula",
    "a ratio",
    "a proof by induction",
    "the mean value theorem",
    "an irrational number",
    "a permutation",
    "the law of large numbers",
    "a tangent line",
    "the binomial theorem",
    "Euler's number",
    "a set",
    "a histogram",
    "a variable",
    "significant figures",
    "the order of operations",
    "a polynomial",
    "a circle's radian measure",
    "long division",
    "a negative exponent",
    "the commutative property",
    "a weighted average",
]
SNIPPETS = [
    "print(sorted([5, 3, 9, 1, 7]))",
    "print(len(set('mississippi')))",
    "import math; print(math.factorial(25))",
    "print(sum(i * i for i in range(1, 101)))",
    "print('-'.join(reversed('a b c d'.split())))",
    "print([x for x in range(60) if x % 7 == 3])",
    "print(2 ** 100 % 97)",
    "print(round(3.14159 * 12.5 ** 2, 3))",
    "print({k: len(k) for k in ['ox', 'bee', 'cat']})",
    "print(bin(2026).count('1'))",
    "import statistics; print(statistics.stdev([2, 4, 4, 4, 5, 5, 7, 9]))",
    "print(max('banana', 'apple', 'cherry', key=len))",
    "print(list(zip('abc', range(3))))",
    "print(int('7f3a', 16))",
    "print(sorted('steering', reverse=True))",
    "print(sum(map(int, str(3 ** 200))))",
    "print([n for n in range(2, 50) if all(n % d for d in range(2, n))])",
    "print('hello world'.title().swapcase())",
    "import itertools; print(len(list(itertools.permutations(range(6), 3))))",
    "print(divmod(98765, 321))",
    "print(bytes('é', 'utf-8'))",
    "import datetime; print(datetime.date(2024, 3, 1) - datetime.date(2023, 3, 1))",
    "print(' '.join(w[::-1] for w in 'the quick brown fox'.split()))",
    "print(round(sum(1 / k ** 2 for k in range(1, 10001)), 6))",
    "print(sorted([(2, 'b'), (1, 'z'), (2, 'a')]))",
    "print(hash((1, 2)) == hash((1, 2)))",
    "print('{:,.2f}'.format(1234567.891))",
    "print(list(range(10, 0, -3)))",
    "import collections; print(collections.Counter('abracadabra').most_common(2))",
    "print(0.1 + 0.2 == 0.3)",
    "print(len(str(2 ** 1000)))",
    "print(all([]), any([]))",
    "print(sum(range(0, 1000, 3)) + sum(range(0, 1000, 5)) - sum(range(0, 1000, 15)))",
    "print([2 ** i for i in range(12)][-4:])",
    "print('abc' * 3 + 'd')",
    "print(7 // -2, -7 % 3)",
]
CODE_TASKS_RUN = [
    "the 60th Fibonacci number",
    "how many primes there are below 200,000",
    "the SHA-256 hash of the word 'steerlab'",
    "the sum of the digits of 2 to the power 500",
    "how many Sundays fell on the first of a month during the twentieth century",
    "the number of ways to make change for 2 pounds with British coins",
    "the 10,000th prime number",
    "the first 15 digits of the square root of 2",
    "the longest Collatz chain for a starting number below one million",
    "how many words in the phrase 'the rain in spain stays mainly in the plain' contain the letter a",
    "the determinant of the matrix [[4, 2, 7], [1, 9, 3], [6, 5, 8]]",
    "the day of the week of 14 July 1789",
    "the largest palindrome made from the product of two 3-digit numbers",
    "the number of trailing zeros in 1000 factorial",
    "the median of the list [17, 3, 44, 12, 9, 31, 26, 5]",
    "the 25th Catalan number",
    "the greatest common divisor of 123456 and 7890",
    "the number of distinct anagrams of the word 'statistics'",
    "the value of e to 20 decimal places",
    "the count of integers below 10,000 whose digits sum to 20",
]
CODE_WRITE = [
    "reverses a string",
    "checks whether a word is a palindrome",
    "merges two sorted lists",
    "removes duplicates from a list while keeping order",
    "counts the vowels in a sentence",
    "flattens a nested list",
    "reads a CSV file into a list of dictionaries",
    "validates an email address",
    "returns the n largest values of a list",
    "converts Celsius to Fahrenheit",
    "groups words by their first letter",
    "computes a running average",
    "parses a date string like 2024-03-01",
    "splits a list into chunks of size n",
    "capitalises every word in a title",
    "finds the most common element in a list",
    "implements binary search",
    "checks if two strings are anagrams",
    "generates a random password",
    "transposes a matrix given as nested lists",
]
CODE_CONCEPTS = [
    "enumerate",
    "a list comprehension",
    "a generator",
    "a decorator",
    "the with statement",
    "a lambda",
    "a dictionary",
    "the GIL",
    "a virtual environment",
    "type hints",
    "f-strings",
    "a context manager",
    "recursion",
    "a class method",
    "exception handling",
    "zip",
    "slicing",
    "mutable default arguments",
    "the walrus operator",
    "asyncio",
    "a set",
    "duck typing",
    "a dataclass",
    "the __init__ method",
]
ASSETS = [
    "Bitcoin",
    "gold",
    "the euro against the dollar",
    "Apple shares",
    "Brent crude oil",
    "Tesla stock",
    "an ounce of silver",
    "the Japanese yen",
    "Ethereum",
    "Nvidia shares",
    "natural gas",
    "the Swiss franc",
]
SOFTWARE = [
    "numpy",
    "Python",
    "PostgreSQL",
    "the Linux kernel",
    "Firefox",
    "Blender",
    "Node.js",
    "Kubernetes",
    "VS Code",
    "LibreOffice",
    "PyTorch",
    "Django",
]
TOPICS_NOW = [
    "the European elections",
    "the climate summit",
    "the tech layoffs",
    "the Champions League",
    "the housing market",
    "the Mars mission",
    "the airline strike",
    "the new vaccine trial",
    "the chip shortage",
    "the Olympic bid",
]
TEAMS = [
    "Arsenal",
    "the Lakers",
    "Real Madrid",
    "the Yankees",
    "Bayern Munich",
    "the All Blacks",
    "Boca Juniors",
    "the Toronto Maple Leafs",
    "Juventus",
    "the Chicago Bulls",
]
BOOKS = [
    "Pride and Prejudice",
    "One Hundred Years of Solitude",
    "The Odyssey",
    "Don Quixote",
    "Frankenstein",
    "War and Peace",
    "The Tale of Genji",
    "Moby-Dick",
    "Things Fall Apart",
    "Les Misérables",
    "The Divine Comedy",
    "Beloved",
]
PHENOMENA = [
    "rainbows",
    "the tides",
    "thunder",
    "the seasons",
    "auroras",
    "earthquakes",
    "hiccups",
    "rust",
    "static electricity",
    "jet lag",
    "fog",
    "tsunamis",
    "the northern lights' colours",
    "a solar eclipse",
    "yawning",
    "echoes",
]
GRAMMAR = [
    ("Spanish", "ser and estar"),
    ("French", "the passé composé and the imparfait"),
    ("German", "the dative and accusative cases"),
    ("Italian", "the subjunctive"),
    ("Japanese", "the particles wa and ga"),
    ("Portuguese", "the personal infinitive"),
    ("Russian", "perfective and imperfective verbs"),
    ("Polish", "the seven grammatical cases"),
    ("Korean", "formal and informal speech levels"),
    ("Dutch", "de and het"),
    ("Greek", "the aorist tense"),
    ("Turkish", "vowel harmony"),
    ("Mandarin Chinese", "the four tones"),
    ("Swedish", "en and ett nouns"),
    ("Finnish", "the partitive case"),
    ("Hindi", "postpositions"),
]


def nums(rng: random.Random) -> dict:
    return {
        "a": f"{rng.randint(1200, 98000):,}",
        "b": f"{rng.randint(13, 987):,}",
        "c": f"{rng.randint(7, 89)}",
        "d": f"{rng.randint(100, 9999):,}",
        "p": f"{rng.choice([3.5, 7.25, 12.5, 17, 23.75, 38, 4.2, 15.5])}",
        "r": f"{rng.choice([2.1, 3.4, 4.75, 5.2, 6.8, 1.9])}",
        "y": f"{rng.randint(3, 25)}",
        "e": f"{rng.randint(5, 13)}",
        "k": f"{rng.randint(3, 17)}",
        "cents": f"{rng.randint(10, 99)}",
        "sq": f"{rng.randint(2000, 900000):,}",
        "h": f"{rng.choice([2.5, 3.25, 4.75, 6.5, 7.2])}",
        "small": f"{rng.choice([2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37])}",
        "parity": f"{rng.randint(1000, 99999):,}",
    }


# Each cell: templates (format strings) and filler generator. Fillers named in braces come from `fill`.
CELLS: dict[tuple[str, int], list[str]] = {
    ("math", 1): [
        "What is {a} times {b}?",
        "Calculate {a} divided by {c}, to two decimal places.",
        "I need the exact value of {a} × {b} + {d}.",
        "How much is {p}% of {a}?",
        "What's the square root of {sq}?",
        "If I invest ${a} at {r}% interest compounded yearly, how much will I have after {y} years?",
        "Add up {a}, {d}, {b} and {c} for me.",
        "My rent is ${d} a month. What do I pay in total over {y} years?",
        "What is {c} to the power of {e}?",
        "Split a bill of ${d}.{cents} evenly between {k} people. How much does each pay?",
        "Compute the average of {a}, {d}, {b} and {c}.",
        "What do you get if you subtract {d} from {a}?",
        "A car covers {a} metres in {h} hours. What is its average speed in km per hour?",
        "Multiply {a} by {b}, then subtract {d}.",
        "What is the remainder when {a} is divided by {k}?",
        "Work out ({a} + {d}) × {c} please.",
        "How many seconds are there in {a} days?",
        "Give me {b} squared times {c}.",
        "A shop marks a ${d} jacket down by {p}%. What is the new price?",
        "What is {a} ÷ {b}, rounded to four decimals?",
        "Find the product of {b}, {c} and {k}.",
        "What's {r} percent of {sq}?",
        "I earn ${a} a year and pay {p}% tax. How much tax is that?",
        "Convert {a} inches to centimetres, exactly.",
        "If {k} workers each make {b} parts an hour, how many parts in {h} hours?",
        "What is {a} minus {d}, times {c}?",
        "Can you compute the cube of {b}?",
        "Sum the numbers {d}, {b}, {c}, {k} and {a}.",
        "How much is {cents} percent of ${a}?",
        "What is the natural logarithm of {sq}?",
        "Divide {sq} by {b} and tell me the result.",
        "What is {e} factorial times {c}?",
    ],
    ("math", 0): [
        "Why does multiplying two negative numbers give a positive number?",
        "Can you explain {concept} in simple terms?",
        "What is {concept} used for in everyday life?",
        "Why is {concept} important in mathematics?",
        "Give me an intuitive picture of {concept}.",
        "Who first studied {concept}, and why?",
        "How would you teach {concept} to a {k}-year-old?",
        "Is {parity} an even or an odd number, and how can you tell at a glance?",
        "Why is {small} a prime number?",
        "Why can't you divide a number by zero?",
        "What is the difference between {concept} and {concept2}?",
        "What mistakes do students often make with {concept}?",
        "Is the number 1 considered prime? Why or why not?",
        "What does it mean for a number like {a} to be divisible by 3?",
        "Why do we write large numbers like {a} with commas?",
        "What is a good way to practise {concept}?",
        "How did ancient mathematicians think about {concept}?",
        "Explain the idea behind {concept} without using formulas.",
        "When should I use a mean instead of a median?",
        "What does the percent sign actually mean?",
        "Why is the area of a circle related to pi?",
        "Can you describe {concept} with a real-world example?",
        "What is the intuition for why {concept} works?",
        "In what order should I learn algebra, geometry and calculus?",
        "What does 'rounding to {k} decimal places' mean?",
        "Why is a negative number times a positive number negative?",
        "Is {concept} on most high-school exams?",
        "What is the difference between an estimate and an exact answer?",
        "Why do mathematicians care about proofs?",
        "What is the connection between {concept} and geometry?",
        "Why is zero neither positive nor negative?",
        "Which is bigger in general, a square or a cube of a number greater than one, and why?",
    ],
    ("code", 1): [
        "Run this Python code and tell me what it prints: {snippet}",
        "Execute {snippet} and show me the output.",
        "What exactly does this output when you run it? {snippet}",
        "Use Python to compute {task}.",
        "Please run a script that finds {task}.",
        "Can you execute this snippet for me: {snippet}",
        "I need the real output of `{snippet}`; please run it.",
        "Run the following and paste the result: {snippet}",
        "Could you actually run code to get {task}?",
        "Evaluate this in a Python interpreter: {snippet}",
        "Write and run a short program that prints {task}.",
        "Test this line in Python and report what happens: {snippet}",
        "Using the interpreter, determine {task}.",
        "Execute some Python to find {task} and give me the number.",
        "Fire up Python and tell me the result of {snippet}",
        "Check by running it: what does {snippet} print?",
        "Run a quick computation for {task}, please.",
        "Execute the code below and share its output.\n{snippet}",
        "What does Python return for {snippet}? Please run it rather than guess.",
        "Run this and tell me whether it raises an error: {snippet}",
        "Calculate {task} by running a program.",
        "I want the printed result of this snippet, run it: {snippet}",
        "Please execute: {snippet}",
        "Can you run a brute-force search in Python for {task}?",
    ],
    ("code", 0): [
        "Write a Python function that {write}.",
        "Explain what {cconcept} does in Python.",
        "What is the difference between {cconcept} and {cconcept2} in Python?",
        "How do I {write2} in Python?",
        "Why would I use {cconcept} instead of a plain loop?",
        "Review this code and say what could go wrong: {snippet}",
        "What is this line trying to do: {snippet}",
        "Is {cconcept} considered good style in Python?",
        "Can you show me an example of {cconcept}?",
        "What are common pitfalls with {cconcept}?",
        "How would you name the variables in this snippet more clearly? {snippet}",
        "Rewrite this to be more readable: {snippet}",
        "When did Python introduce {cconcept}?",
        "Write a docstring for a function that {write}.",
        "Sketch the algorithm for a function that {write}.",
        "What is the time complexity of a function that {write}?",
        "Explain line by line what this code means: {snippet}",
        "Translate this Python into plain English: {snippet}",
        "Suggest unit tests for a function that {write}.",
        "How do I make this snippet follow PEP 8? {snippet}",
        "Should beginners learn {cconcept} early?",
        "Why do some people avoid {cconcept}?",
        "Write pseudocode for a program that {write}.",
        "How could I describe {task} as a programming exercise for students?",
    ],
    ("search", 1): [
        "What's the weather forecast for {city} this weekend?",
        "What is the current price of {asset}?",
        "Who won {team}'s match last night?",
        "What are today's top headlines about {topic}?",
        "Look up the latest release version of {software}.",
        "Is there a public transport strike in {city} today?",
        "What's the exchange rate for {asset} right now?",
        "Find recent reviews of the newest {software} release.",
        "What time does the main post office in {city} close tonight?",
        "Is it raining in {city} at the moment?",
        "Search the web for the score of the {team} game today.",
        "What happened this morning with {topic}?",
        "Who is the current mayor of {city}?",
        "Find me cheap flights from {city} to {city2} next Friday.",
        "What events are on in {city} this week?",
        "How much did {asset} move in the markets today?",
        "What is the air quality index in {city} right now?",
        "Check whether the {city} airport has delays today.",
        "Look up the most recent news on {topic}.",
        "What's the latest injury news for {team}?",
        "When is the next home game for {team}?",
        "Find the opening hours of the city museum in {city} today.",
        "Search for the current population estimate of {city}.",
        "What did analysts say about {asset} this week?",
        "Is the {software} download site down right now?",
        "What is the traffic like in {city} at this moment?",
    ],
    ("search", 0): [
        "Why is the sky blue?",
        "Who wrote {book}?",
        "What causes {phenomenon}?",
        "What is {city} historically known for?",
        "Explain how {phenomenon} form.",
        "What is the difference between weather and climate?",
        "Why does {city} have the climate it has?",
        "What is the plot of {book} in a few sentences?",
        "How does the stock market work in general?",
        "Why do prices of things like {asset} change over time?",
        "What is open-source software like {software}?",
        "What makes {team} one of the famous names in sport?",
        "How do scientists study {phenomenon}?",
        "Why do people find {book} so influential?",
        "What language is spoken in {city}?",
        "What is a good way to learn about the history of {city}?",
        "How did {topic_stable} change the world?",
        "What is the general idea behind inflation?",
        "Why are some cities, like {city}, built near rivers?",
        "What does a mayor usually do?",
        "How do weather forecasts work in principle?",
        "What are the main themes of {book}?",
        "How are {phenomenon} explained in physics?",
        "Why do sports teams like {team} have rivalries?",
        "What is a version number in software like {software}?",
        "Why do exchange rates exist at all?",
    ],
    ("translation", 1): [
        "Translate '{sentence}' into {lang}.",
        "How do you say '{sentence}' in {lang}?",
        "Can you put this into {lang} for me: {sentence}",
        "I need the {lang} version of: '{sentence}'.",
        "Please render '{sentence}' in {lang}, in a formal register.",
        "What's '{sentence}' in {lang}?",
        "Translate this {flang} sentence into English: '{foreign}'",
        "What does '{foreign}' mean in English?",
        "Give me a {lang} translation of '{sentence}'.",
        "Help me write '{sentence}' in {lang} for a sign.",
        "Could you translate '{sentence}' to {lang} and {lang2}?",
        "Turn '{sentence}' into natural {lang}.",
        "My {lang} friend needs to read this: '{sentence}'. Translate it please.",
        "Translate from {flang} to {lang}: '{foreign}'",
        "I'd like '{sentence}' translated into {lang}, casual tone.",
        "Please translate the phrase '{sentence}' for a {lang} speaker.",
        "Into {lang}, please: {sentence}.",
        "Translate the following for my {lang} colleague: {sentence}.",
        "How would a {lang} speaker write '{sentence}'?",
        "Convert this English text into {lang}: '{sentence}'",
        "Could you tell me what '{foreign}' says? It's {flang}.",
        "Translate '{foreign}' into {lang}.",
    ],
    ("translation", 0): [
        "What is the difference between {gram} in {glang}?",
        "Is {lang} hard to learn for English speakers?",
        "Which countries speak {lang}?",
        "What alphabet or script does {lang} use?",
        "Why does {lang} have gendered nouns?",
        "What are good tips for learning {lang} vocabulary?",
        "Where does the {lang} language come from?",
        "How is {lang} related to {lang2}?",
        "Is '{sentence}' grammatically correct English?",
        "How many native speakers does {lang} have, roughly?",
        "What makes a translation sound natural rather than literal?",
        "Why is '{sentence}' written without a comma?",
        "Which is easier to learn first, {lang} or {lang2}?",
        "What are the most common mistakes learners make with {gram}?",
        "How long does it take to become fluent in {lang}?",
        "Do {lang} and {lang2} share much vocabulary?",
        "What does a professional translator actually do all day?",
        "Why do some words have no equivalent in {lang}?",
        "Is the sentence '{sentence}' formal or informal in tone?",
        "What is the origin of the English word 'translate'?",
        "How is the {flang} language taught in schools?",
        "What is the hardest part of {gram} for English speakers?",
    ],
}


NUMERIC_SNIPPETS = [
    "print(sum(range({x}, {y})))",
    "print({x} ** 3 % {z})",
    "print(sorted([{x}, {z}, {w}, {y}])[1:])",
    "print(len([n for n in range({y}) if n % {z} == 0]))",
    "print(round({x} / {z}, 5))",
    "print(str({x} * {y})[::-1])",
    "print(max(divmod({y}, {z})))",
    "print(bin({x})[2:].zfill(16))",
    "print(sum(int(d) for d in str({x} * {y})))",
    "print(list(range({z}, {x}, {w}))[:5])",
    "import math; print(math.gcd({x}, {y}))",
    "print(hex({x} * {z}))",
]


def snippet(rng: random.Random, pools: dict) -> str:
    """Half the snippets are fixed ones, half numeric ones with fresh numbers (the pools stay per split)."""
    if rng.random() < 0.5:
        return rng.choice(pools["snippets"])
    t = rng.choice(pools["numeric_snippets"])
    return t.format(
        x=rng.randint(100, 9999), y=rng.randint(10000, 99999), z=rng.randint(3, 97), w=rng.randint(2, 9)
    )


def fill_values(rng: random.Random, pools: dict) -> dict:
    v = nums(rng)
    pick = lambda name: rng.choice(pools[name])  # noqa: E731
    c1, c2 = rng.sample(pools["concepts"], 2)
    cc1, cc2 = rng.sample(pools["cconcepts"], 2)
    l1, l2 = rng.sample(pools["langs"], 2)
    city1, city2 = rng.sample(pools["cities"], 2)
    flang, foreign = pick("foreign")
    glang, gram = pick("grammar")
    v.update(
        {
            "concept": c1,
            "concept2": c2,
            "snippet": snippet(rng, pools),
            "task": pick("tasks"),
            "write": pick("write"),
            "write2": pick("write")
            .replace("reverses", "reverse")
            .replace("checks", "check")
            .replace("merges", "merge")
            .replace("removes", "remove")
            .replace("counts", "count")
            .replace("flattens", "flatten")
            .replace("reads", "read")
            .replace("validates", "validate")
            .replace("returns", "return")
            .replace("converts", "convert")
            .replace("groups", "group")
            .replace("computes", "compute")
            .replace("parses", "parse")
            .replace("splits", "split")
            .replace("capitalises", "capitalise")
            .replace("finds", "find")
            .replace("implements", "implement")
            .replace("generates", "generate")
            .replace("transposes", "transpose"),
            "cconcept": cc1,
            "cconcept2": cc2,
            "asset": pick("assets"),
            "software": pick("software"),
            "topic": pick("topics"),
            "topic_stable": rng.choice(
                [
                    "the printing press",
                    "the steam engine",
                    "the internet",
                    "antibiotics",
                    "the telephone",
                    "electric light",
                ]
            ),
            "team": pick("teams"),
            "book": pick("books"),
            "phenomenon": pick("phenomena"),
            "city": city1,
            "city2": city2,
            "lang": l1,
            "lang2": l2,
            "sentence": pick("sentences"),
            "flang": flang,
            "foreign": foreign,
            "glang": glang,
            "gram": gram,
        }
    )
    return v


def partition(items: list, rng: random.Random) -> dict[str, list]:
    """Split a list between splits in proportion 1:1:1:2 (cal, train, valid, test); each gets at least one."""
    items = list(items)
    rng.shuffle(items)
    n = len(items)
    cuts = [round(n * f) for f in (0.2, 0.4, 0.6)]
    parts = {
        "cal": items[: cuts[0]],
        "train": items[cuts[0] : cuts[1]],
        "valid": items[cuts[1] : cuts[2]],
        "test": items[cuts[2] :],
    }
    for k, v in parts.items():
        if not v:
            raise ValueError(f"too few items to partition: {k} got none of {n}")
    return parts


# Openers and closers shared by every cell (same distribution for tool and non-tool prompts).
OPENERS = [
    "",
    "",
    "",
    "",
    "Quick question: ",
    "Hi! ",
    "Hey, ",
    "I'm curious: ",
    "Sorry to bother you, ",
    "Hello. ",
    "Could you help? ",
    "One more thing: ",
    "Good morning! ",
    "I have a question. ",
    "Please help: ",
]
CLOSERS = [
    "",
    "",
    "",
    "",
    " Thanks!",
    " Thank you.",
    " Keep it short.",
    " Please be brief.",
    " Much appreciated.",
    " I'm in a hurry.",
    " Cheers.",
    " Thanks in advance.",
]


def wrap(text: str, rng: random.Random) -> str:
    opener = rng.choice(OPENERS)
    if opener.endswith(", ") and text[:1].isupper() and not text.startswith(("I ", "I'")):
        text = text[0].lower() + text[1:]
    return opener + text + rng.choice(CLOSERS)


def norm(s: str) -> str:
    return re.sub(r"\W+", " ", s.lower()).strip()


def split_pools(rng: random.Random) -> dict[str, dict[str, list]]:
    """Every filler pool partitioned between the splits (the first draws of ``rng``; the conversation builder
    replays them with the same seed so that its fillers keep the same splits)."""
    pools_all = {
        "numeric_snippets": NUMERIC_SNIPPETS,
        "concepts": MATH_CONCEPTS,
        "cconcepts": CODE_CONCEPTS,
        "snippets": SNIPPETS,
        "tasks": CODE_TASKS_RUN,
        "write": CODE_WRITE,
        "assets": ASSETS,
        "software": SOFTWARE,
        "topics": TOPICS_NOW,
        "teams": TEAMS,
        "books": BOOKS,
        "phenomena": PHENOMENA,
        "cities": CITIES,
        "langs": LANGS,
        "sentences": SENTENCES,
        "foreign": FOREIGN,
        "grammar": GRAMMAR,
    }
    pools_by_split = {s: {} for s in SPLITS}
    for name, items in pools_all.items():
        for s, part in partition(items, rng).items():
            pools_by_split[s][name] = part
    for s in SPLITS:  # sampling two distinct items needs two per pool
        for name in ("concepts", "cconcepts", "langs", "cities"):
            if len(pools_by_split[s][name]) < 2:
                pools_by_split[s][name] = pools_all[name]
    return pools_by_split


def main() -> None:
    rng = random.Random(SEED)
    pools_by_split = split_pools(rng)
    rows, seen = [], set()
    for (domain, label), templates in CELLS.items():
        tparts = partition(templates, rng)
        for split, quota in SPLITS.items():
            got, tries = 0, 0
            temps = tparts[split]
            while got < quota:
                tries += 1
                if tries > 50000:
                    raise RuntimeError(f"cannot make {quota} unique prompts for {domain}/{label}/{split}")
                t = temps[got % len(temps)] if tries < 5 * quota else rng.choice(temps)
                text = wrap(t.format(**fill_values(rng, pools_by_split[split])), rng)
                key = norm(text)
                if key in seen:
                    continue
                seen.add(key)
                rows.append({"prompt": text, "domain": domain, "label": label, "split": split})
                got += 1
    OUT.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        part = [r for r in rows if r["split"] == split]
        rng.shuffle(part)
        with open(OUT / f"{split}.jsonl", "w") as f:
            for i, r in enumerate(part):
                f.write(json.dumps({"id": f"{split}-{i:04d}", **r}, ensure_ascii=False) + "\n")
    print({s: sum(r["split"] == s for r in rows) for s in SPLITS})


if __name__ == "__main__":
    main()
