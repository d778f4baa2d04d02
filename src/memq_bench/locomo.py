"""LoCoMo (Maharana et al., ACL 2024): conversations, turns and QA with evidence turn ids.

Licence CC BY-NC 4.0: the file is read from ../shared/data/locomo, never copied into memq.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

LOCOMO_FILE = "locomo/locomo10.json"
CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop", 5: "adversarial"}


@dataclass(frozen=True)
class Turn:
    dia_id: str
    session: int
    speaker: str
    text: str
    caption: str | None
    when: datetime | None

    def indexed_text(self) -> str:
        """What memq stores for a turn: speaker, date and image caption help retrieval a lot."""
        date = f" ({self.when:%d %B %Y})" if self.when else ""
        caption = f" [shares a photo: {self.caption}]" if self.caption else ""
        return f"{self.speaker}{date}: {self.text}{caption}"


@dataclass(frozen=True)
class Question:
    question: str
    answer: str
    evidence: tuple[str, ...]
    category: int


@dataclass
class Conversation:
    sample_id: str
    speakers: tuple[str, str]
    turns: list[Turn] = field(default_factory=list)
    questions: list[Question] = field(default_factory=list)


def parse_session_date(text: str) -> datetime | None:
    """'1:56 pm on 8 May, 2023' → aware UTC datetime (None when it does not parse)."""
    try:
        return datetime.strptime(text.strip(), "%I:%M %p on %d %B, %Y").replace(tzinfo=UTC)
    except ValueError:
        return None


def load_locomo(path: str | Path) -> list[Conversation]:
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    conversations = []
    for item in raw:
        conv = item["conversation"]
        out = Conversation(item["sample_id"], (conv["speaker_a"], conv["speaker_b"]))
        sessions = sorted(
            (int(m.group(1)) for k in conv if (m := re.fullmatch(r"session_(\d+)", k))),
        )
        for s in sessions:
            when = parse_session_date(conv.get(f"session_{s}_date_time", ""))
            for turn in conv[f"session_{s}"]:
                out.turns.append(
                    Turn(
                        dia_id=turn["dia_id"],
                        session=s,
                        speaker=turn["speaker"],
                        text=turn.get("text", ""),
                        caption=turn.get("blip_caption"),
                        when=when,
                    )
                )
        for qa in item.get("qa", []):
            out.questions.append(
                Question(
                    question=qa["question"],
                    answer=str(qa.get("answer", qa.get("adversarial_answer", ""))),
                    evidence=tuple(str(e) for e in qa.get("evidence", [])),
                    category=int(qa["category"]),
                )
            )
        conversations.append(out)
    return conversations
