"""A small stream for the RL tests: people move between cities; the question is where each lives now."""

from __future__ import annotations

import random

import numpy as np

from memq.rl.actions import feature_names
from memq.rl.env import Episode, Item, Question
from memq.rl.policy import Policy

PEOPLE = (
    "Alice Moreau",
    "Bruno Keller",
    "Chen Wei",
    "Dara Okafor",
    "Emil Novak",
    "Farah Haddad",
    "Goran Petrov",
    "Hana Sato",
)
CITIES = ("Paris", "Rome", "Oslo", "Lima", "Cairo", "Tokyo", "Quito", "Dakar", "Hanoi", "Perth")
HOBBIES = ("chess", "rowing", "pottery", "cycling", "opera", "sailing")


class ToyMoves:
    """Episode of seed s: six people, each stated to live in a city, a hobby, then two of them move.

    Every person is asked about, so overwriting a record at random usually loses an answer."""

    def episode(self, seed: int) -> Episode:
        rng = random.Random(seed)
        people = rng.sample(PEOPLE, 6)
        items: list[Item] = []
        now: dict[str, str] = {}
        for p in people:
            now[p] = rng.choice(CITIES)
            items.append(Item(f"{p} lives in the city of {now[p]}."))
        items.append(Item(f"{rng.choice(people)} enjoys {rng.choice(HOBBIES)}."))
        for p in people[:2]:
            now[p] = rng.choice([c for c in CITIES if c != now[p]])
            items.append(Item(f"{p} lives in the city of {now[p]}."))
        questions = tuple(Question(f"Which city does {p} live in?", (now[p],), "sh") for p in people)
        return Episode(f"toy-{seed}", tuple(items), questions)


def supersede_policy(k: int = 5) -> Policy:
    """A hand-set linear policy: INVALIDATE the candidate that reads as the same frame, else ADD."""
    policy = Policy("linear", k=k)
    names = feature_names()
    theta = np.zeros(len(names))
    theta[names.index("ADD.bias")] = 2.0
    theta[names.index("NOOP.bias")] = -6.0
    theta[names.index("UPDATE.bias")] = -10.0
    theta[names.index("INVALIDATE.bias")] = -8.0
    theta[names.index("INVALIDATE.frame")] = 20.0
    policy.params = theta
    return policy
