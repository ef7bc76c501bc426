"""The hard paraphrase set for `kb-mcp eval`: every question shares almost no words with its fact, carries no id or
code, and has near-distractors — each person has one fact of every shape, and every slot value (city, job, food...)
is shared by many people. Vector search alone confuses the people (a name is a weak signal in an embedding); keyword
search alone confuses a person's facts (the name is the only shared word). Seeded: same seed, same set."""

from __future__ import annotations

import random

from kb_mcp.bench.corpus import Item

FIRST = ["Amara", "Bjorn", "Camila", "Dmitri", "Elif", "Farid", "Greta", "Hiroshi", "Ines", "Jonas", "Kalani",
         "Lucia", "Malik", "Noor", "Oskar", "Paloma", "Rafael", "Saoirse", "Tomasz", "Ulla", "Valentina", "Wiremu",
         "Xiadani", "Yara", "Zeynep", "Anouk", "Bastian", "Chiara", "Dario", "Esme", "Florin", "Gwen", "Henrik",
         "Ilse", "Joaquin", "Kasia", "Lorenzo", "Mireille", "Niamh", "Orlando"]
LAST = ["Okafor", "Lindqvist", "Moreau", "Petrov", "Yilmaz", "Haddad", "Novak", "Tanaka", "Ferreira", "Brandt",
        "Kahale", "Romano", "Osei", "Rahimi", "Larsen", "Quintero", "Silva", "Gallagher", "Wozniak", "Virtanen",
        "Castillo", "Ngata", "Mendoza", "Aziz", "Demir", "Visser", "Keller", "Bianchi", "Rossi", "Ashby"]
CITIES = ["Lisbon", "Nairobi", "Osaka", "Toronto", "Krakow", "Lima", "Hanoi", "Oslo"]
JOBS = ["pharmacist", "carpenter", "translator", "surveyor", "midwife", "locksmith", "archivist", "welder"]
FOODS = ["shellfish", "peanuts", "strawberries", "sesame", "mushrooms", "lentils"]
PETS = ["greyhound", "parrot", "tortoise", "ferret", "rabbit", "corn snake"]
INSTRUMENTS = ["cello", "accordion", "banjo", "harp", "oboe", "trumpet"]
SIBLINGS = ["Mara", "Teo", "Lina", "Kai", "Sofie", "Ivo"]
COLOURS = ["mustard yellow", "teal", "burgundy", "silver", "olive green", "navy"]
LANGUAGES = ["Icelandic", "Swahili", "Korean", "Portuguese", "Hungarian", "Tagalog"]

# (fact, question): the question asks for the fact's slot in other words; {n} is the person's name.
SHAPES: list[tuple[str, list[str], str]] = [
    ("{n} moved to {v} last spring and rents a flat near the harbour.", CITIES, "Where does {n} live these days?"),
    ("{n} earns a living as a {v}.", JOBS, "What is {n}'s profession?"),
    ("{n} gets sick after eating {v}.", FOODS, "Which ingredient should be kept off {n}'s plate?"),
    ("{n} adopted a {v} from the shelter in May.", PETS, "What animal keeps {n} company at home?"),
    ("{n} practises the {v} every evening.", INSTRUMENTS, "Which musical instrument does {n} play?"),
    ("{n}'s younger sister {v} teaches chemistry.", SIBLINGS, "Who is {n}'s sibling?"),
    ("{n} drives an old {v} hatchback.", COLOURS, "What colour is {n}'s car?"),
    ("{n} takes evening classes in {v}.", LANGUAGES, "Which foreign tongue is {n} studying?"),
]


def generate(people: int, seed: int = 11) -> list[Item]:
    """`people` distinct people, one fact of every shape each (8 per person)."""
    rng = random.Random(seed)
    names = [f"{first} {last}" for first in FIRST for last in LAST]
    rng.shuffle(names)
    if people > len(names):
        raise ValueError(f"at most {len(names)} people")
    items: list[Item] = []
    for name in names[:people]:
        for fact, values, question in SHAPES:
            items.append(Item(fact.format(n=name, v=rng.choice(values)), question.format(n=name), "hard"))
    return items
