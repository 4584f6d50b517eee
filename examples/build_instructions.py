"""Builds examples/instructions.jsonl: a small instruction-following set, written for deskai.

Every fact and sentence here was written for this project (no scraped or model-generated data),
so the set is free to use under the project's license. Templated families (capitals,
arithmetic, conversions, ...) teach the *format* — answer the question asked, briefly, then end
the turn — and hand-written answers add variety. ``HELD_OUT`` lists prompts kept out of
training for the before/after comparison in docs/finetune.md.

    python examples/build_instructions.py   # rewrites examples/instructions.jsonl
"""

from __future__ import annotations

import json
import random
from pathlib import Path

CAPITALS = {
    "France": "Paris", "Germany": "Berlin", "Italy": "Rome", "Spain": "Madrid",
    "Portugal": "Lisbon", "Norway": "Oslo", "Sweden": "Stockholm", "Finland": "Helsinki",
    "Denmark": "Copenhagen", "Poland": "Warsaw", "Austria": "Vienna", "Greece": "Athens",
    "Ireland": "Dublin", "Egypt": "Cairo", "Kenya": "Nairobi", "Peru": "Lima",
    "Chile": "Santiago", "Argentina": "Buenos Aires", "Canada": "Ottawa", "Mexico": "Mexico City",
    "China": "Beijing", "India": "New Delhi", "Thailand": "Bangkok", "Vietnam": "Hanoi",
    "Russia": "Moscow", "Turkey": "Ankara", "Australia": "Canberra", "Cuba": "Havana",
    "Hungary": "Budapest", "Belgium": "Brussels", "the Netherlands": "Amsterdam",
    "Iceland": "Reykjavik", "South Korea": "Seoul", "Indonesia": "Jakarta",
}
OPPOSITES = {
    "hot": "cold", "big": "small", "fast": "slow", "happy": "sad", "light": "dark",
    "open": "closed", "full": "empty", "old": "young", "strong": "weak", "high": "low",
    "rich": "poor", "hard": "soft", "wet": "dry", "loud": "quiet", "long": "short",
    "heavy": "light", "clean": "dirty", "first": "last", "inside": "outside", "push": "pull",
    "win": "lose", "buy": "sell", "up": "down", "near": "far", "true": "false",
}
CATEGORIES = {
    "fruits": ["apple", "banana", "orange", "pear", "mango", "cherry", "grape", "peach"],
    "colors": ["red", "blue", "green", "yellow", "purple", "orange", "black", "white"],
    "vegetables": ["carrot", "potato", "onion", "broccoli", "spinach", "pea", "cabbage"],
    "planets": ["Mercury", "Venus", "Earth", "Mars", "Jupiter", "Saturn", "Uranus", "Neptune"],
    "musical instruments": ["piano", "guitar", "violin", "drum", "flute", "trumpet", "cello"],
    "sports": ["football", "tennis", "basketball", "swimming", "cycling", "golf", "rugby"],
    "tools": ["hammer", "screwdriver", "saw", "wrench", "drill", "pliers", "chisel"],
    "birds": ["sparrow", "eagle", "owl", "robin", "penguin", "parrot", "swan"],
}
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
WORDS = ["banana", "river", "window", "garden", "pencil", "bicycle", "orange", "mountain",
         "teacher", "computer", "butterfly", "kitchen", "umbrella", "sun", "ocean", "library",
         "rocket", "guitar", "island", "candle"]
CONVERSIONS = [("kilometers", "meters", 1000), ("meters", "centimeters", 100),
               ("hours", "minutes", 60), ("minutes", "seconds", 60), ("kilograms", "grams", 1000),
               ("liters", "milliliters", 1000), ("days", "hours", 24), ("weeks", "days", 7)]
SYSTEMS = [None, None, None, "You are a helpful assistant.", "Answer briefly and clearly."]

HANDWRITTEN = [
    ("Say hello in Spanish.", "Hola!"),
    ("Say thank you in French.", "Merci!"),
    ("Say good morning in German.", "Guten Morgen!"),
    ("What is water made of?", "Water is made of hydrogen and oxygen: each molecule has two "
     "hydrogen atoms and one oxygen atom (H2O)."),
    ("Why do we have seasons?", "Earth's axis is tilted, so through the year each hemisphere "
     "leans toward the Sun (summer) or away from it (winter)."),
    ("What does a thermometer measure?", "A thermometer measures temperature."),
    ("What do bees make?", "Bees make honey and beeswax."),
    ("How many legs does a spider have?", "A spider has eight legs."),
    ("How many days are in a leap year?", "A leap year has 366 days."),
    ("What is the boiling point of water at sea level?", "Water boils at 100 degrees Celsius "
     "(212 degrees Fahrenheit) at sea level."),
    ("What is the freezing point of water?", "Water freezes at 0 degrees Celsius (32 degrees "
     "Fahrenheit)."),
    ("Give me a tip for sleeping better.", "Go to bed at the same time every night and keep "
     "screens out of the bedroom for the last hour before sleep."),
    ("Give me a tip for learning a new language.", "Practise a little every day: fifteen "
     "minutes daily beats two hours once a week."),
    ("Give me a tip for staying focused.", "Work in short blocks of 25 minutes with a five "
     "minute break, and put your phone in another room."),
    ("Suggest a name for a black cat.", "How about Shadow?"),
    ("Suggest a name for a friendly robot.", "How about Bolt?"),
    ("Write a haiku about autumn.", "Red leaves drift and fall\nthe wind hums a quiet "
     "song\nbare branches reach up"),
    ("Write a haiku about snow.", "Soft white blanket lies\nfootprints vanish by "
     "morning\nthe whole town is hushed"),
    ("Write a one-sentence story about a dragon.", "The old dragon guarded no gold at all, "
     "only a garden of roses it had planted as a child."),
    ("Write a one-sentence story about a lost key.", "After searching the whole house, Mia "
     "found the key in the lock, exactly where she had left it."),
    ("Explain what a computer program is in one sentence.", "A computer program is a list of "
     "instructions that tells a computer what to do, step by step."),
    ("Explain what the internet is in one sentence.", "The internet is a worldwide network of "
     "computers that exchange information with each other."),
    ("What is photosynthesis?", "Photosynthesis is how plants use sunlight, water and carbon "
     "dioxide to make sugar, releasing oxygen."),
    ("What is gravity?", "Gravity is the force that pulls objects with mass toward each other; "
     "it keeps us on the ground and the Moon around Earth."),
    ("What is the largest ocean?", "The Pacific Ocean is the largest ocean."),
    ("What is the tallest mountain on Earth?", "Mount Everest is the tallest mountain above "
     "sea level, about 8,849 meters high."),
    ("What is the closest star to Earth?", "The Sun is the closest star to Earth."),
    ("How many continents are there?", "There are seven continents."),
    ("Name the three primary colors.", "The three primary colors are red, yellow and blue."),
    ("What gas do humans breathe out?", "Humans breathe out carbon dioxide."),
    ("Is a tomato a fruit or a vegetable?", "Botanically a tomato is a fruit, though it is "
     "usually cooked like a vegetable."),
    ("Summarize: The meeting was moved from Monday to Wednesday because the room was booked.",
     "The meeting moved to Wednesday because the room was taken on Monday."),
    ("Summarize: Rain is expected all weekend, so the picnic will be held indoors.",
     "Because of the rain, the picnic will be indoors."),
    ("Fix the spelling: I recieved the pakage yesterday.", "I received the package yesterday."),
    ("Fix the spelling: She is definately comming tomorow.", "She is definitely coming "
     "tomorrow."),
    ("Make this sentence more polite: Give me the report.", "Could you please send me the "
     "report?"),
    ("Make this sentence more polite: Close the door.", "Would you mind closing the door, "
     "please?"),
    ("Answer yes or no: Is the Sun a star?", "Yes."),
    ("Answer yes or no: Can fish fly?", "No."),
    ("Answer yes or no: Is ice colder than steam?", "Yes."),
    ("Reply with one word: what color is grass?", "Green."),
    ("Reply with one word: what animal says moo?", "Cow."),
    ("Complete the sentence: The early bird...", "The early bird catches the worm."),
    ("Complete the sentence: Practice makes...", "Practice makes perfect."),
    ("What should I do if I feel stressed?", "Take a few slow, deep breaths, go for a short "
     "walk, and talk to someone you trust."),
    ("How do I boil an egg?", "Put the egg in boiling water for about 9 minutes, then cool it "
     "in cold water before peeling."),
    ("How do I make a cup of tea?", "Boil water, pour it over a tea bag in a cup, wait three "
     "to five minutes, then remove the bag."),
    ("Who wrote Romeo and Juliet?", "William Shakespeare wrote Romeo and Juliet."),
    ("What is the chemical symbol for gold?", "The chemical symbol for gold is Au."),
    ("What is the chemical symbol for iron?", "The chemical symbol for iron is Fe."),
]

HELD_OUT = [
    "What is the capital of Japan?",
    "What is 23 + 19?",
    "List three animals.",
    "What is the opposite of 'early'?",
    "Write a haiku about the sea.",
    "How many letters are in the word 'elephant'?",
    "Give me a tip for drinking more water.",
    "Convert 4 kilometers to meters.",
]


def number(value: int) -> str:
    return f"{value:,}"


def families(rng: random.Random) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for country, city in CAPITALS.items():
        question = rng.choice(["What is the capital of {c}?", "Name the capital city of {c}.",
                               "Which city is the capital of {c}?"])
        pairs.append((question.format(c=country), f"The capital of {country} is {city}."))
    for _ in range(45):
        a, b = rng.randint(2, 99), rng.randint(2, 99)
        op = rng.choice(["+", "-", "*"])
        result = {"+": a + b, "-": a - b, "*": a * b}[op]
        question = rng.choice(["What is {a} {op} {b}?", "Calculate {a} {op} {b}.",
                               "Compute {a} {op} {b}."])
        pairs.append((question.format(a=a, op=op, b=b), f"{a} {op} {b} = {result}."))
    for word, opposite in OPPOSITES.items():
        question = rng.choice(["What is the opposite of '{w}'?", "Give the opposite of '{w}'.",
                               "What word means the opposite of '{w}'?"])
        pairs.append((question.format(w=word), f"The opposite of \"{word}\" is \"{opposite}\"."))
    for category, items in CATEGORIES.items():
        for count in (3, 4, 5):
            chosen = rng.sample(items, count)
            lines = "\n".join(f"{i}. {item[0].upper()}{item[1:]}"
                              for i, item in enumerate(chosen, 1))
            pairs.append((f"List {['three', 'four', 'five'][count - 3]} {category}.", lines))
    for word in WORDS:
        pairs.append((f"How many letters are in the word '{word}'?",
                      f"The word \"{word}\" has {len(word)} letters."))
        pairs.append((f"Spell the word '{word}' backwards.", f"{word[::-1]}"))
    for index, day in enumerate(DAYS):
        after, before = DAYS[(index + 1) % 7], DAYS[index - 1]
        pairs.append((f"What day comes after {day}?", f"{after} comes after {day}."))
        pairs.append((f"What day comes before {day}?", f"{before} comes before {day}."))
    for big, small, factor in CONVERSIONS:
        for amount in rng.sample(range(2, 13), 3):
            pairs.append((f"Convert {amount} {big} to {small}.",
                          f"{amount} {big} is {number(amount * factor)} {small}."))
    for _ in range(25):
        a, b = rng.sample(range(1, 200), 2)
        question = rng.choice(["Which is larger, {a} or {b}?", "Which number is bigger: {a} or "
                               "{b}?"])
        pairs.append((question.format(a=a, b=b), f"{max(a, b)} is larger than {min(a, b)}."))
    for _ in range(20):
        words = rng.sample(WORDS, 4)
        pairs.append((f"Sort these words alphabetically: {', '.join(words)}.",
                      ", ".join(sorted(words))))
    return pairs


def build() -> list[dict]:
    rng = random.Random(20261124)
    pairs = families(rng) + HANDWRITTEN
    held = {prompt.lower() for prompt in HELD_OUT}
    records = []
    for prompt, answer in pairs:
        if prompt.lower() in held:
            continue
        messages = []
        system = rng.choice(SYSTEMS)
        if system:
            messages.append({"role": "system", "content": system})
        messages += [{"role": "user", "content": prompt},
                     {"role": "assistant", "content": answer}]
        records.append({"messages": messages})
    rng.shuffle(records)
    return records


if __name__ == "__main__":
    out = Path(__file__).with_name("instructions.jsonl")
    rows = build()
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    print(f"wrote {len(rows)} examples to {out}")
