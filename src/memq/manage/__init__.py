"""Managers: named, configurable write policies behind one protocol (:mod:`memq.manage.base`).

``make_manager(name, **params)`` builds one by name; ``Memory.add(items, manager=name_or_instance)``
runs it. No LLM: ``append`` (what ``add`` does by default) and ``dedupe``. With an LLM: ``reconcile``
(mem0 v1 / Memory-R1), ``experience`` (MemP / MemRL), ``insights`` (ExpeL), ``notes`` (A-MEM) and
``episodes`` (HiMem / Nemori). Trained by reinforcement learning: ``learned:PATH`` (a policy file
written by ``memq rl train``; docs/rl.md). Docs: docs/managers.md.
"""

from __future__ import annotations

from typing import Any

from memq.errors import InvalidInputError
from memq.manage.base import Decision, ManageContext, Manager, ManageResult, Plan

__all__ = ["MANAGERS", "Decision", "ManageContext", "ManageResult", "Manager", "Plan", "make_manager"]

MANAGERS = ("append", "dedupe", "reconcile", "experience", "insights", "notes", "episodes")


def make_manager(name: str, **params: Any) -> Manager:
    """A manager by name, with its parameters validated (InvalidInputError on a bad one).

    ``learned:PATH`` (or ``learned`` with ``path=PATH``) loads a policy file written by ``memq rl train``."""
    if name.startswith("learned:"):
        from memq.manage.learned import LearnedManager

        return LearnedManager(path=name.removeprefix("learned:"), **params)
    if name == "append":
        from memq.manage.append import AppendManager as cls
    elif name == "dedupe":
        from memq.manage.dedupe import DedupeManager as cls
    elif name == "reconcile":
        from memq.manage.reconcile import ReconcileManager as cls
    elif name == "experience":
        from memq.manage.experience import ExperienceManager as cls
    elif name == "insights":
        from memq.manage.insights import InsightsManager as cls
    elif name == "notes":
        from memq.manage.notes import NotesManager as cls
    elif name == "episodes":
        from memq.manage.episodes import EpisodesManager as cls
    elif name == "learned":
        from memq.manage.learned import LearnedManager as cls
    else:
        raise InvalidInputError(
            f"unknown manager {name!r}; choose one of {', '.join(MANAGERS)}, learned:PATH"
        )
    return cls(**params)  # type: ignore[no-any-return]
