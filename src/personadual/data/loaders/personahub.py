"""PersonaHub personas: `load_personas` reads them, `attach_personas` gives them to items.

Persona-less objective items get them as "irrelevant" personas (the paper's "unaligned" ones).
"""

from __future__ import annotations

import random
import re

from ..personabench.build import preferred_mode
from ..schema import DataError, Item
from .reading import BadRow, open_rows, row_field


def persona_phrase(text: str) -> str:
    """Fit the prompt "I am {persona}, ...": lower-case a leading article, drop the final period."""
    text = text.strip().rstrip(".").strip()
    return text[0].lower() + text[1:] if re.match(r"(A|An|The) ", text) else text


def load_personas(path: str | None = None, *, hf_name: str | None = None, split: str = "train",
                  limit: int | None = None, hf_config: str | None = "persona", cache_dir: str | None = None) -> list[str]:
    """Distinct PersonaHub personas (``persona``, or ``input persona`` in the task files), in file order.

    Rows without a persona raise a `DataError` after the whole read; ``.items`` then holds the strings.
    """
    rows, where = open_rows(path, hf_name, split, hf_config=hf_config if hf_name else None, cache_dir=cache_dir)
    personas, errors = {}, []
    for index, row in enumerate(rows):
        if limit is not None and len(personas) >= limit:
            break
        try:
            personas.setdefault(persona_phrase(row_field(row, "persona", "input persona")), None)
        except BadRow as b:
            errors.append(f"{where}:row {index + 1}: {b}")
    if errors:
        raise DataError(errors, list(personas))
    return list(personas)


def attach_personas(items: list[Item], personas: list[str], seed: int = 0, aligned_share: float = 0.0,
                    *, keep_original: bool = False) -> list[Item]:
    """Give persona-less objective items a PersonaHub persona, as condition "irrelevant".

    Per item (seeded by ``seed`` and the item id, so independent of order): with probability
    ``aligned_share`` it stays "none", marked ``meta.persona_slot = "aligned"`` for an LLM-written
    aligned persona later (the paper pairs half its items with aligned personas); otherwise it gets
    a persona drawn from ``personas``. ``keep_original`` also keeps the "none" item (paired data).
    Other items, and every item when ``personas`` is empty, pass through unchanged.
    """
    if not 0 <= aligned_share <= 1:
        raise ValueError(f"aligned_share must be in [0, 1], got {aligned_share}")
    pool = [p for p in personas if p and p.strip()]
    out = []
    for it in items:
        if not pool or it.kind != "objective" or it.condition != "none":
            out.append(it)
            continue
        rng = random.Random(f"{seed}-persona-{it.id}")
        if rng.random() < aligned_share:
            out.append(it.model_copy(update={"meta": {**it.meta, "persona_slot": "aligned"}}))
            continue
        if keep_original:
            out.append(it)
        out.append(Item.model_validate({
            **it.model_dump(), "id": f"{it.id}-irrelevant" if keep_original else it.id,
            "base_id": it.base_id or it.id, "condition": "irrelevant", "persona": rng.choice(pool),
            "preferred_mode": preferred_mode("irrelevant"), "meta": {**it.meta, "persona_source": "personahub"}}))
    return out
