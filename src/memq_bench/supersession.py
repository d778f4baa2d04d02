"""Deterministic, LLM-free supersession: a new fact about the same (subject, relation) invalidates
the current one.

Two small parts, usable on their own:

* :func:`parse_fact` / :func:`subject_key` - read the subject and relation of a one-sentence fact
  with a fixed list of templates ("The capital of X is Y" → relation ``capital``, subject ``X``).
  The templates are the ones MemoryAgentBench's FactConsolidation (built from MQuAKE edits) uses;
  a sentence no template matches gives ``None`` (the caller counts it, nothing is invalidated).
* :func:`supersede` - the apply step: after new records were added, invalidate (``Memory.invalidate``:
  the old version stays in history and in ``as_of`` / ``include_invalidated`` searches) every
  current record in the scope that has the same subject key. Later records in the same batch win
  over earlier ones, so a batch is processed in order.

The subject key is stored in the record's metadata under :data:`SUBJECT_FIELD` so a later write
can find the current holder with a metadata filter, or through an in-memory ``index`` the caller
keeps (a dict key → record id) when it owns the scope and wants to skip the lookup query.
"""

from __future__ import annotations

import re
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from memq.memory import Memory
    from memq.types import MemoryRecord, ScopeLike

SUBJECT_FIELD = "subject_key"

# (relation, template): {S} is the subject, {O} the object. Specific templates come first; the last
# one ("The {S} is {O}": "The Governor of Texas is Greg Abbott") catches office holders.
FACT_TEMPLATES: tuple[tuple[str, str], ...] = (
    ("author", "The author of {S} is {O}"),
    ("genre", "The type of music that {S} plays is {O}"),
    ("headquarters", "The headquarters of {S} is located in the city of {O}"),
    ("broadcaster", "The origianl broadcaster of {S} is {O}"),  # sic, as in the data
    ("broadcaster", "The original broadcaster of {S} is {O}"),
    ("head_of_government", "The name of the current head of the {S} government is {O}"),
    ("head_of_state", "The name of the current head of state in {S} is {O}"),
    ("official_language", "The official language of {S} is {O}"),
    ("capital", "The capital of {S} is {O}"),
    ("chairperson", "The chairperson of {S} is {O}"),
    ("head_coach", "The head coach of {S} is {O}"),
    ("ceo", "The chief executive officer of {S} is {O}"),
    ("director", "The director of {S} is {O}"),
    ("original_language", "The original language of {S} is {O}"),
    ("educated_at", "The univeristy where {S} was educated is {O}"),  # sic
    ("educated_at", "The university where {S} was educated is {O}"),
    ("manufacturer", "The company that produced {S} is {O}"),
    ("citizenship", "{S} is a citizen of {O}"),
    ("sport", "{S} is associated with the sport of {O}"),
    ("religion", "{S} is affiliated with the religion of {O}"),
    ("birthplace", "{S} was born in the city of {O}"),
    ("deathplace", "{S} died in the city of {O}"),
    ("work_location", "{S} worked in the city of {O}"),
    ("continent", "{S} is located in the continent of {O}"),
    ("country", "{S} is located in the country of {O}"),
    ("field_of_work", "{S} works in the field of {O}"),
    ("language_of_work", "{S} was written in the language of {O}"),
    ("employer", "{S} is employed by {O}"),
    ("founded_in", "{S} was founded in the city of {O}"),
    ("position", "{S} plays the position of {O}"),
    ("spouse", "{S} is married to {O}"),
    ("country_of_origin", "{S} was created in the country of {O}"),
    ("creator", "{S} was created by {O}"),
    ("developer", "{S} was developed by {O}"),
    ("founder", "{S} was founded by {O}"),
    ("languages_spoken", "{S} speaks the language of {O}"),
    ("performer", "{S} was performed by {O}"),
    ("notable_work", "{S} is famous for {O}"),
    ("child", "{S}'s child is {O}"),
    ("office_holder", "The {S} is {O}"),
)


def _compile(template: str) -> re.Pattern[str]:
    pattern = re.escape(template).replace(r"\{S\}", r"(?P<s>.+?)").replace(r"\{O\}", r"(?P<o>.+?)")
    return re.compile(rf"^{pattern}\.?$", re.IGNORECASE | re.DOTALL)


_PATTERNS = tuple((relation, _compile(t)) for relation, t in FACT_TEMPLATES)
_NUMBERED = re.compile(r"^\s*\d+\.\s+")


@dataclass(frozen=True)
class Fact:
    """A parsed fact: ``relation`` and ``subject`` identify what it is about; ``obj`` is its value."""

    relation: str
    subject: str
    obj: str

    @property
    def key(self) -> str:
        return f"{self.relation}|{normalize_subject(self.subject)}"


def normalize_subject(text: str) -> str:
    """Case-folded, single-spaced: the part of the key that names the subject."""
    return " ".join(text.casefold().split())


def parse_fact(text: str) -> Fact | None:
    """The (relation, subject, object) of a one-sentence fact, or None when no template matches.

    A leading list number ("12. ") is ignored.
    """
    sentence = _NUMBERED.sub("", text.strip(), count=1).strip()
    for relation, pattern in _PATTERNS:
        m = pattern.match(sentence)
        if m and m.group("s").strip() and m.group("o").strip():
            return Fact(relation, m.group("s").strip(), m.group("o").strip())
    return None


def subject_key(text: str) -> str | None:
    """``"relation|subject"`` for a fact sentence (e.g. ``"capital|tang empire"``), or None."""
    fact = parse_fact(text)
    return None if fact is None else fact.key


@dataclass
class SupersessionReport:
    """What one :func:`supersede` call did."""

    invalidated: list[str] = field(default_factory=list)  # ids of records no longer current
    unparsed: int = 0  # new records whose subject could not be read


def supersede(
    memory: Memory,
    records: Sequence[MemoryRecord],
    *,
    scope: ScopeLike | None = None,
    index: MutableMapping[str, str] | None = None,
    reason: str = "superseded by a newer fact about the same subject",
    actor: str = "memq.supersede",
) -> SupersessionReport:
    """Invalidate the current records that ``records`` (just added, in order) supersede.

    A record's key is ``metadata[SUBJECT_FIELD]`` when set, else :func:`subject_key` of its text.
    With ``index`` (key → id of the current record, kept by the caller) the holder is looked up
    there and the index is updated; without it, the scope's valid records are queried by metadata.
    """
    report = SupersessionReport()
    new_ids = [r.id for r in records]
    for position, record in enumerate(records):
        key = record.metadata.get(SUBJECT_FIELD) or subject_key(record.text)
        if not key:
            report.unparsed += 1
            continue
        later = set(new_ids[position:])  # this record and the ones after it in the batch
        if index is not None:
            holder = index.get(key)
            holders = [] if holder is None or holder in later else [holder]
            index[key] = record.id
        else:
            page = memory.list(scope=scope, filters={f"metadata.{SUBJECT_FIELD}": key}, limit=1000)
            holders = [r.id for r in page.records if r.id not in later]
        for old_id in holders:
            memory.invalidate(old_id, scope=scope, reason=reason, actor=actor)
            report.invalidated.append(old_id)
    return report
