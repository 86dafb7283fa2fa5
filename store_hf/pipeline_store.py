"""The ``"store-recommendation"`` pipeline: item-id histories in, top-k items out.

A saved :class:`StoreForGenerativeRec` names this pipeline in its ``config.json``
(``custom_pipelines``) and ships this file with its code, the way transformers publishes
custom pipelines for remote code, so a Hub model runs it with only torch and transformers::

    from transformers import pipeline

    recommender = pipeline("store-recommendation", model=repo_id, trust_remote_code=True)
    recommender(["B00004Z5QG", "B0000AXTUY"], top_k=5)
    # [{"item_id": ..., "score": ..., "title": ...}, ...]   (title where the model carries titles)
    recommender([history_a, history_b])  # a batch: one list of items per history

A model already in memory: ``StoreRecommendationPipeline(model=model)``. This file imports only
transformers (it is copied into model folders, where ``store_hf`` is not installed).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from transformers import AutoModelForCausalLM, Pipeline
from transformers.pipelines import PIPELINE_REGISTRY

#: The task name under which the pipeline is registered and saved in a model's config.
TASK = "store-recommendation"


class StoreRecommendationPipeline(Pipeline):
    """Top-k next items of item-id histories with a STORE recommender (``model.recommend``:
    trie-constrained beam search, one prompt pass per history).

    Call arguments (also accepted by the constructor, as defaults):
        top_k: items per history (default 10).
        num_beams: beams of the search (default ``top_k``).
        mode: ``"trie"`` (default) or ``"position"`` (the per-position ablation).
        batch_size: histories per forward pass of the search (default 16).
        item_titles: item id -> title, for models that carry no titles
            (``config.item_titles``); items without one get no ``"title"`` key.

    Input: one history (a list of item ids, oldest first) or a list of histories.
    Output: per history, a list of ``{"item_id", "score", "title"}`` dicts, best first;
    ``score`` is the summed log-probability of the item's code sequence. One history gives one
    list, a batch a list of lists.
    """

    _load_tokenizer = False
    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = False
    _load_video_processor = False

    def _sanitize_parameters(
        self,
        top_k: int | None = None,
        num_beams: int | None = None,
        mode: str | None = None,
        histories_per_batch: int | None = None,
        item_titles: Mapping[str, str] | None = None,
    ) -> tuple[dict, dict, dict]:
        forward: dict[str, Any] = {}
        if top_k is not None:
            forward["k"] = int(top_k)
        if num_beams is not None:
            forward["num_beams"] = int(num_beams)
        if mode is not None:
            forward["mode"] = mode
        if histories_per_batch is not None:
            forward["batch_size"] = int(histories_per_batch)
        postprocess = {} if item_titles is None else {"item_titles": dict(item_titles)}
        return {}, forward, postprocess

    def __call__(
        self,
        histories: Sequence[str] | Sequence[Sequence[str]],
        batch_size: int | None = None,
        **kwargs,
    ):
        """Recommend after one history (a list of item ids) or a batch of them; see the class
        docstring for the arguments and the output."""
        if isinstance(histories, str):
            histories = [histories]
        single = not histories or not isinstance(histories[0], (list, tuple))
        batch = [histories] if single else histories
        batch_size = batch_size if batch_size is not None else self._batch_size
        if batch_size is not None:
            kwargs["histories_per_batch"] = batch_size
        # a tuple is one input to Pipeline.__call__ (a list would run one forward per element),
        # so the whole batch goes through one model.recommend call
        out = super().__call__(tuple([str(i) for i in h] for h in batch), **kwargs)
        return out[0] if single else out

    def preprocess(self, histories: tuple[list[str], ...]) -> dict[str, list[list[str]]]:
        if not all(histories):
            raise ValueError("every history needs at least one item id")
        return {"histories": list(histories)}

    def _forward(
        self, model_inputs: dict[str, list[list[str]]], k: int = 10, **recommend_kwargs
    ) -> dict[str, Any]:
        out = self.model.recommend(model_inputs["histories"], k=k, **recommend_kwargs)
        return {"item_ids": out.item_ids, "scores": out.scores.tolist()}

    def postprocess(
        self, model_outputs: dict[str, Any], item_titles: Mapping[str, str] | None = None
    ) -> list[list[dict[str, Any]]]:
        titles = item_titles
        if titles is None and getattr(self.model.config, "item_titles", None):
            titles = dict(zip(self.model.config.item_ids, self.model.config.item_titles))
        results = []
        for items, scores in zip(model_outputs["item_ids"], model_outputs["scores"]):
            rows = []
            for item, score in zip(items, scores):
                if not math.isfinite(score):  # fewer real items than asked for
                    break
                row = {"item_id": item, "score": score}
                if titles and item in titles:
                    row["title"] = titles[item]
                rows.append(row)
            results.append(rows)
        return results


def custom_pipelines() -> dict[str, dict[str, Any]]:
    """The ``custom_pipelines`` entry of a saved recommender's ``config.json``: the task, the
    class in this file (``pipeline_store.StoreRecommendationPipeline``) and the Auto class that
    loads the model (what ``transformers.Pipeline.save_pretrained`` writes)."""
    module = StoreRecommendationPipeline.__module__.rsplit(".", 1)[-1]
    return {
        TASK: {
            "impl": f"{module}.{StoreRecommendationPipeline.__name__}",
            "pt": ["AutoModelForCausalLM"],
            "type": "text",
        }
    }


if TASK not in PIPELINE_REGISTRY.supported_tasks:  # the first copy imported registers the task
    PIPELINE_REGISTRY.register_pipeline(
        TASK, pipeline_class=StoreRecommendationPipeline, pt_model=AutoModelForCausalLM, type="text"
    )

__all__ = ["TASK", "StoreRecommendationPipeline", "custom_pipelines"]
