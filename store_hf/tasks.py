"""Default post-pretraining task sets of the dense tokenizer, per dataset (paper Table 2)."""

from __future__ import annotations

from .configuration_store import default_tasks

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

    Known attribute sets get the sets above; any other catalogue uses all attributes as content
    and reconstructs each of them.
    """
    content, targets = TASK_SETS.get(frozenset(attributes), (list(attributes), list(attributes)))
    return content, default_tasks(content, targets)
