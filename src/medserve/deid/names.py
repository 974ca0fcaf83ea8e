"""Person names in notes: the parts of a table's names, and where a note writes them.

Names are matched with Unicode letters ("Zoë Ångström", "MÜLLER") and in any case: the
patient's own name in lower case too ("zoë ångström"), except a part that is also an
everyday word ("rose", "hope", "white") when it stands alone. Whether a word is everyday
is judged from the table's own notes (used in lower case in a note that is not about a
person of that name) and from a short built-in list.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from itertools import pairwise

import pandas as pd

from medserve.deid.shapes import LETTER, NAME_WORD

NOT_NAMES = frozenset(
    "mr mrs ms miss mx dr prof md do phd rn np pa dds jr sr ii iii iv the and of".split()
)
# Name parts that are also everyday or clinical English words: alone and in lower case
# they are words ("BP rose", "white cells"), beside another part of the name a name.
EVERYDAY = frozenset(
    "rose hope faith grace joy may june april august summer autumn dawn will bill mark pat "
    "sue art rich guy ray frank dean major sterling white brown green black gray grey bell "
    "cross young king long short hall wood stone little sharp hart hill lane field ward "
    "well wells price case page park read rice chase cook baker walker nurse doctor love "
    "bloom bishop bond booth bright burns butcher carter fisher ford fox gates glass "
    "hunter jack lord mason miles moody noble north page parsons penny porter power "
    "rivers rock salt sands savage snow spring street strong swift temple waters west "
    "winter wise woods worth early small best free fair".split()
)
# "Graves disease", "Bell's palsy": a surname that names a disease, sign or device.
EPONYM_AFTER = re.compile(
    r"(?:['’]s?)?\s+(?i:disease|syndrome|palsy|sign|test|score|criteria|catheter|procedure|"
    r"tumou?r|lymphoma|sarcoma|ulcer|reflex|maneuver|manoeuvre|phenomenon|triad|scale|"
    r"classification|disorder|anomaly|aneurysm|fracture|operation|repair|block)\b"
)
CAPITALISED = re.compile(rf"(?<![\[\w]){NAME_WORD}(?!\w)")
_WORD = re.compile(rf"(?<![\w\[]){LETTER}+(?:['’-]{LETTER}+)*(?!\w)")


def name_parts(value: str) -> list[str]:
    """The words of a name, any script: "Zoë Ångström-Lee" → Zoë, Ångström-Lee."""
    parts = [p.strip("'’-") for p in re.split(r"[^\w'’-]+|[\d_]+", value)]
    return [p for p in parts if len(p) >= 2 and p.casefold() not in NOT_NAMES]


def bare(word: str) -> str:
    """'Smith's' → 'smith'."""
    word = word.casefold()
    return word[:-2] if word.endswith(("'s", "’s")) else word


def lower_case_words(note: str) -> set[str]:
    """The words a note writes in lower case (never its placeholders)."""
    return {word for word in _WORD.findall(note) if word.islower()}


class KnownNames:
    """The name parts of a table's name columns, the words its notes use plainly, and the
    full names, to find them in notes.

    ``names`` are casefolded parts; ``lowercase_words`` words the notes use in lower case
    outside a note about a person of that name; ``full_names`` sequences of parts.
    """

    def __init__(
        self,
        names: Iterable[str],
        lowercase_words: Iterable[str],
        full_names: Iterable[tuple[str, ...]] = (),
    ) -> None:
        self.names = frozenset(names)
        self.lowercase_words = frozenset(lowercase_words)
        self.common_names = self.names & self.lowercase_words
        self.pairs = frozenset(pair for parts in full_names for pair in pairwise(parts))

    @classmethod
    def for_table(
        cls, frame: pd.DataFrame, name_columns: list[str], text_columns: list[str]
    ) -> KnownNames:
        rows: list[set[str]] = [set() for _ in range(len(frame))]
        full: set[tuple[str, ...]] = set()
        for column in name_columns:
            for position, value in enumerate(frame[column]):
                if isinstance(value, str) and value.strip():
                    parts = tuple(part.casefold() for part in name_parts(value))
                    rows[position].update(parts)
                    full.add(parts)
        words: set[str] = set()
        for column in text_columns:
            for position, note in enumerate(frame[column]):
                if isinstance(note, str):
                    words.update(lower_case_words(note) - rows[position])
        return cls(set().union(*rows) if rows else set(), words, full)

    def plain(self, word: str) -> bool:
        """A word the notes use, or English uses, as an ordinary word."""
        folded = word.casefold()
        return folded in self.lowercase_words or folded in EVERYDAY

    def row_forms(self, name: str) -> set[str]:
        """How a note may write one of its own row's names.

        As written, capitalised, in capitals; a whole name, and a part that is no everyday
        word, in lower case too ("zoë ångström", "MÜLLER", "müller"); an everyday part
        never in lower case ("Rose", "ROSE", never "rose")."""
        capitalised = {name, name.upper(), name[:1].upper() + name[1:]}
        if len(name.split()) > 1 or not self.plain(name):
            return capitalised | {name.lower(), name.title()}
        return capitalised

    def replace(self, note: str, counts: Counter[str]) -> str:
        """Other rows' names: capitalised or in capitals, and whole names in any case."""
        if not self.names:
            return note
        note = self._replace_capitalised(note, counts)
        return self._replace_full_names(note, counts) if self.pairs else note

    def _replace_capitalised(self, note: str, counts: Counter[str]) -> str:
        tokens = list(CAPITALISED.finditer(note))
        pieces, last = [], 0
        for position, token in enumerate(tokens):
            word = bare(token.group(0))
            if word not in self.names or EPONYM_AFTER.match(note, token.end()):
                continue
            if word in self.common_names and not self._beside_name(note, tokens, position):
                continue  # "White blood cells", not "Mary White"
            pieces += [note[last : token.start()], "[NAME]"]
            last = token.end()
            counts["[NAME]"] += 1
        return "".join(pieces) + note[last:]

    def _replace_full_names(self, note: str, counts: Counter[str]) -> str:
        """'mary okafor' in lower case: two parts of one person's name, side by side."""
        tokens = list(_WORD.finditer(note))
        replace: set[int] = set()
        for position in range(len(tokens) - 1):
            first, second = tokens[position], tokens[position + 1]
            if note[first.end() : second.start()] != " ":
                continue
            if (bare(first.group(0)), bare(second.group(0))) in self.pairs:
                replace.update((position, position + 1))
        pieces, last = [], 0
        for position in sorted(replace):
            token = tokens[position]
            pieces += [note[last : token.start()], "[NAME]"]
            last = token.end()
            counts["[NAME]"] += 1
        return "".join(pieces) + note[last:]

    def _beside_name(self, note: str, tokens: list[re.Match[str]], position: int) -> bool:
        token = tokens[position]
        if note[: token.start()].endswith("[NAME] ") or note[token.end() :].startswith(" [NAME]"):
            return True
        for other in (position - 1, position + 1):
            if 0 <= other < len(tokens):
                neighbour = tokens[other]
                gap = note[
                    min(neighbour.end(), token.end()) : max(neighbour.start(), token.start())
                ]
                if gap == " " and bare(neighbour.group(0)) in self.names:
                    return True
        return False
