"""A seeded, realistic synthetic corpus for `kb-mcp bench`: varied facts over many topics, each with a paraphrased
query (different wording, same meaning) so recall can be measured. Same seed, same corpus."""

from __future__ import annotations

import random
from dataclasses import dataclass

PEOPLE = ["Ada", "Bruno", "Chen", "Dalia", "Emeka", "Farah", "Goran", "Hana", "Ivan", "Jia", "Kofi", "Lena", "Mateo",
          "Nadia", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tariq", "Uma", "Viktor", "Wen", "Ximena", "Yusuf", "Zoe"]
CITIES = ["Lisbon", "Nairobi", "Osaka", "Toronto", "Krakow", "Lima", "Hanoi", "Oslo", "Cairo", "Austin", "Porto",
          "Seoul", "Dublin", "Accra", "Quito", "Tbilisi", "Perth", "Bergen", "Lyon", "Pune"]
SERVICES = ["billing", "search", "checkout", "auth", "ledger", "inventory", "notifications", "reporting", "gateway",
            "scheduler", "recommendations", "media", "payments", "analytics", "onboarding"]
DRINKS = ["oat milk flat white", "green tea", "double espresso", "hot chocolate", "sparkling water", "chai latte"]
FOODS = ["peanuts", "shellfish", "gluten", "dairy", "eggs", "sesame"]
HOBBIES = [("plays the cello", "Which instrument does {p} play?"),
           ("runs marathons", "Does {p} do long-distance running?"),
           ("bakes sourdough bread", "What does {p} bake at home?"),
           ("climbs indoors twice a week", "Is {p} into bouldering or climbing?"),
           ("paints watercolour landscapes", "What kind of art does {p} make?"),
           ("keeps bees on the roof", "Does {p} have any beehives?")]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]
DBS = ["PostgreSQL 15", "MySQL 8", "Redis 7", "Cassandra 4", "MongoDB 7", "SQLite"]
CLOUDS = ["AWS", "GCP", "Azure", "a private OpenStack cluster", "bare-metal servers"]


@dataclass(frozen=True)
class Item:
    """One fact and a query asking for it in other words."""

    fact: str
    query: str
    topic: str


def _person(rng: random.Random, i: int) -> Item:
    p = f"{rng.choice(PEOPLE)} {chr(65 + i % 26)}{i % 997}"
    kind = rng.randrange(6)
    if kind == 0:
        city = rng.choice(CITIES)
        return Item(f"{p} lives in {city} and works remotely.", f"Which city is {p} based in?", "people")
    if kind == 1:
        drink = rng.choice(DRINKS)
        return Item(f"{p} always orders a {drink} in the morning.", f"What does {p} like to drink at breakfast?",
                    "people")
    if kind == 2:
        food = rng.choice(FOODS)
        return Item(f"{p} is allergic to {food}.", f"What food must {p} avoid?", "people")
    if kind == 3:
        hobby, q = rng.choice(HOBBIES)
        return Item(f"In their free time {p} {hobby}.", q.format(p=p), "people")
    if kind == 4:
        month = rng.choice(["January", "March", "May", "July", "September", "November"])
        return Item(f"{p}'s birthday is on the {rng.randint(1, 28)}th of {month}.", f"When was {p} born?", "people")
    boss = f"{rng.choice(PEOPLE)} {chr(65 + (i * 7) % 26)}"
    return Item(f"{p} reports to {boss} on the platform team.", f"Who is {p}'s manager?", "people")


def _system(rng: random.Random, i: int) -> Item:
    s = f"{rng.choice(SERVICES)}-{i % 1009}"
    kind = rng.randrange(6)
    if kind == 0:
        db = rng.choice(DBS)
        return Item(f"The {s} service stores its data in {db}.", f"Which database backs {s}?", "systems")
    if kind == 1:
        day = rng.choice(DAYS)
        return Item(f"Deployments of {s} happen only on {day} mornings.", f"On what weekday is {s} released?",
                    "systems")
    if kind == 2:
        n = rng.choice([50, 100, 250, 1000])
        return Item(f"The {s} API allows {n} requests per minute per key.", f"What is the rate limit of {s}?",
                    "systems")
    if kind == 3:
        cloud = rng.choice(CLOUDS)
        return Item(f"{s} runs on {cloud} in three availability zones.", f"Where is {s} hosted?", "systems")
    if kind == 4:
        owner = rng.choice(PEOPLE)
        return Item(f"{owner} is the on-call owner for {s} this quarter.", f"Who gets paged when {s} breaks?",
                    "systems")
    hours = rng.choice([1, 6, 12, 24])
    return Item(f"Backups of {s} are taken every {hours} hours.", f"How often is {s} backed up?", "systems")


def _policy(rng: random.Random, i: int) -> Item:
    team = f"team {rng.choice(['red', 'blue', 'green', 'gold', 'violet'])}-{i % 499}"
    kind = rng.randrange(4)
    if kind == 0:
        day = rng.randint(1, 10)
        return Item(f"Expense reports for {team} are due by day {day} of the next month.",
                    f"What is the deadline for {team} to claim costs?", "policies")
    if kind == 1:
        return Item(f"{team} holds its stand-up at {rng.randint(8, 11)}:{rng.choice(['00', '15', '30'])} each day.",
                    f"What time is the daily meeting of {team}?", "policies")
    if kind == 2:
        return Item(f"Laptops issued to {team} must use full-disk encryption.",
                    f"Do {team} computers need encrypted drives?", "policies")
    return Item(f"{team} works from the office on {rng.choice(DAYS)}s.", f"Which day is {team} on site?", "policies")


GENERATORS = (_person, _system, _policy)


def generate(n: int, seed: int = 7) -> list[Item]:
    """`n` distinct items (facts are unique), deterministic for a seed."""
    rng = random.Random(seed)
    items: list[Item] = []
    seen: set[str] = set()
    i = 0
    while len(items) < n:
        item = GENERATORS[i % len(GENERATORS)](rng, i)
        i += 1
        if item.fact not in seen:
            seen.add(item.fact)
            items.append(item)
    return items
