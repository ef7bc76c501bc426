"""A seeded, realistic synthetic corpus for `kb-mcp bench`: varied facts over many topics, each with a paraphrased
query (different wording, same meaning) so recall can be measured. Same seed, same corpus."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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


# Each topic's facts: (what to pick, the fact, the query), picked with the run's seeded random generator; the
# templates see the subject as {s} and the picked value as {v}.
Pick = Callable[[random.Random, int], Any]
Template = tuple[Pick, str, str]
MONTHS = ["January", "March", "May", "July", "September", "November"]
PERSON: list[Template] = [
    (lambda rng, i: rng.choice(CITIES), "{s} lives in {v} and works remotely.", "Which city is {s} based in?"),
    (lambda rng, i: rng.choice(DRINKS), "{s} always orders a {v} in the morning.",
     "What does {s} like to drink at breakfast?"),
    (lambda rng, i: rng.choice(FOODS), "{s} is allergic to {v}.", "What food must {s} avoid?"),
    (lambda rng, i: rng.choice(HOBBIES), "In their free time {s} {v[0]}.", "{v[1]}"),
    (lambda rng, i: (rng.choice(MONTHS), rng.randint(1, 28)), "{s}'s birthday is on the {v[1]}th of {v[0]}.",
     "When was {s} born?"),
    (lambda rng, i: f"{rng.choice(PEOPLE)} {chr(65 + (i * 7) % 26)}", "{s} reports to {v} on the platform team.",
     "Who is {s}'s manager?"),
]
SYSTEM: list[Template] = [
    (lambda rng, i: rng.choice(DBS), "The {s} service stores its data in {v}.", "Which database backs {s}?"),
    (lambda rng, i: rng.choice(DAYS), "Deployments of {s} happen only on {v} mornings.",
     "On what weekday is {s} released?"),
    (lambda rng, i: rng.choice([50, 100, 250, 1000]), "The {s} API allows {v} requests per minute per key.",
     "What is the rate limit of {s}?"),
    (lambda rng, i: rng.choice(CLOUDS), "{s} runs on {v} in three availability zones.", "Where is {s} hosted?"),
    (lambda rng, i: rng.choice(PEOPLE), "{v} is the on-call owner for {s} this quarter.",
     "Who gets paged when {s} breaks?"),
    (lambda rng, i: rng.choice([1, 6, 12, 24]), "Backups of {s} are taken every {v} hours.",
     "How often is {s} backed up?"),
]
POLICY: list[Template] = [
    (lambda rng, i: rng.randint(1, 10), "Expense reports for {s} are due by day {v} of the next month.",
     "What is the deadline for {s} to claim costs?"),
    (lambda rng, i: (rng.randint(8, 11), rng.choice(["00", "15", "30"])), "{s} holds its stand-up at {v[0]}:{v[1]} "
     "each day.", "What time is the daily meeting of {s}?"),
    (lambda rng, i: None, "Laptops issued to {s} must use full-disk encryption.",
     "Do {s} computers need encrypted drives?"),
    (lambda rng, i: rng.choice(DAYS), "{s} works from the office on {v}s.", "Which day is {s} on site?"),
]


def _item(rng: random.Random, i: int, subject: str, templates: list[Template], topic: str) -> Item:
    pick, fact, query = templates[rng.randrange(len(templates))]
    value = pick(rng, i)
    return Item(fact.format(s=subject, v=value), query.format(s=subject, v=value).format(p=subject), topic)


def _person(rng: random.Random, i: int) -> Item:
    return _item(rng, i, f"{rng.choice(PEOPLE)} {chr(65 + i % 26)}{i % 997}", PERSON, "people")


def _system(rng: random.Random, i: int) -> Item:
    return _item(rng, i, f"{rng.choice(SERVICES)}-{i % 1009}", SYSTEM, "systems")


def _policy(rng: random.Random, i: int) -> Item:
    return _item(rng, i, f"team {rng.choice(['red', 'blue', 'green', 'gold', 'violet'])}-{i % 499}", POLICY,
                 "policies")


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
