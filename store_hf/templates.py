"""Every piece of text STORE writes around an item: content blocks, tasks and prompt templates.

* The dense tokenizer's **content block** (:func:`format_content`) and its post-pretraining
  **tasks** (:func:`default_tasks`, the per-dataset :data:`TASK_SETS` of paper Table 2 and
  :func:`default_task_setup`).
* The generative recommender's **instruction templates** (:data:`DEFAULT_TEMPLATES`, paper
  Figures 5 and 7), their packed-training variant (:func:`packed_templates`) and their token ids
  (:func:`tokenize_templates`), from which :class:`~store_hf.prompts.PromptBuilder` assembles
  prompts in token space.

``configuration_store`` reads the defaults, so this file is shipped with saved models through
``trust_remote_code``: it imports only the standard library.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

# ---------------------------------------------------------------- dense tokenizer
#: Task kinds of the dense tokenizer's post-pretraining (paper Table 2).
RECONSTRUCTION = "reconstruction"
GENERATION = "generation"


def format_content(row: Mapping[str, Any], attributes: Sequence[str]) -> str:
    """The content block text, e.g. ``"title: Digital caliper; brand: Mitutoyo"``.

    Empty attributes are left out. The result is never empty: an item with no content text gives
    ``"(no text)"`` so that it still receives dense tokens.
    """
    parts = [f"{a}: {row[a]}" for a in attributes if row.get(a)]
    return "; ".join(parts) if parts else "(no text)"


def default_tasks(
    content_attributes: list[str], target_attributes: list[str]
) -> list[dict[str, str]]:
    """One task per target attribute: reconstruction if it is part of the content, else generation."""
    return [
        {"attribute": a, "kind": RECONSTRUCTION if a in content_attributes else GENERATION}
        for a in target_attributes
    ]


#: attribute set of a reader -> (content attributes, target attributes).
TASK_SETS: dict[frozenset[str], tuple[list[str], list[str]]] = {
    # MIND, as Table 2: content (title, abstract); rebuild both, generate category and subcategory.
    frozenset({"title", "abstract", "category", "subcategory"}): (
        ["title", "abstract"],
        ["title", "abstract", "category", "subcategory"],
    ),
    # Yelp academic, as Table 2: content (name, city, address); generate the state.
    frozenset({"name", "city", "address", "state", "categories"}): (
        ["name", "city", "address"],
        ["name", "city", "address", "state"],
    ),
    # Amazon (LC-Rec json and raw): the description averages ~90 words, too long a content block to
    # be worth its cost, so it is a generation target; title, brand and categories are the content.
    frozenset({"title", "description", "brand", "categories"}): (
        ["title", "brand", "categories"],
        ["title", "brand", "categories", "description"],
    ),
    # Yelp items in LC-Rec json: the "description" is the category list.
    frozenset({"title", "description"}): (["title", "description"], ["title", "description"]),
    # MovieLens: title with year and genres.
    frozenset({"title", "genres"}): (["title"], ["title", "genres"]),
}


def default_task_setup(attributes: list[str]) -> tuple[list[str], list[dict[str, str]]]:
    """Content attributes and tasks for a dataset with these item attributes.

    Known attribute sets get the sets of :data:`TASK_SETS`; any other catalogue uses all
    attributes as content and reconstructs each of them.
    """
    content, targets = TASK_SETS.get(frozenset(attributes), (list(attributes), list(attributes)))
    return content, default_tasks(content, targets)


# ---------------------------------------------------------------- generative recommender
#: Instruction templates of the generative recommender (paper Figures 5 and 7). Code tokens
#: and item text are inserted between the pieces in token space, so no piece holds a field.
DEFAULT_TEMPLATES = {
    "rec_prefix": "A user bought these items, oldest first:",
    "rec_suffix": "\nThe next item is:",
    "align_prefix": "Item description:",
    "align_suffix": "\nThe item's tokens are:",
    "score_prefix": "A user bought these items, oldest first:",
    "score_candidate": "\nCandidate item:",
    "score_suffix": "\nWill the user buy the candidate? Answer yes or no:",
    "answer_yes": " yes",
    "answer_no": " no",
}

#: Template pieces that must tokenize to exactly one token (the scoring mode's answers).
SINGLE_TOKEN_PIECES = ("answer_yes", "answer_no")


def packed_templates(templates: dict[str, str]) -> dict[str, str]:
    """The recommender's templates for packed training (``store_hf.packing``): no text between
    the history and the next item (training never sees text there, so inference must not put
    any)."""
    return {**templates, "rec_suffix": ""}


def tokenize_templates(templates: dict[str, str], tokenizer) -> dict[str, list[int]]:
    """Token ids of every template piece (no special tokens added).

    Raises:
        ValueError: an answer piece that is not a single token (the scoring mode reads one logit).
    """
    ids = {k: tokenizer(v, add_special_tokens=False)["input_ids"] for k, v in templates.items()}
    for key in SINGLE_TOKEN_PIECES:
        if len(ids[key]) != 1:
            raise ValueError(
                f"templates[{key!r}] = {templates[key]!r} is {len(ids[key])} tokens for this "
                "tokenizer; the scoring mode needs a single token"
            )
    return ids


__all__ = [
    "DEFAULT_TEMPLATES",
    "GENERATION",
    "RECONSTRUCTION",
    "SINGLE_TOKEN_PIECES",
    "TASK_SETS",
    "default_task_setup",
    "default_tasks",
    "format_content",
    "packed_templates",
    "tokenize_templates",
]
