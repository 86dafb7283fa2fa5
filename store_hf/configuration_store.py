"""Configuration of STORE models (dense tokenizer and generative recommender)."""

from __future__ import annotations

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from .templates import DEFAULT_TEMPLATES, GENERATION, RECONSTRUCTION, default_tasks

#: LoRA target modules per backbone family: every attention and MLP projection.
LORA_TARGETS = {
    "opt": ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"],
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
}


class StoreConfig(PreTrainedConfig):
    r"""Configuration of :class:`StoreTokenizerModel` and :class:`StoreForGenerativeRec`.

    Args:
        text_config: the backbone causal LM's config (OPT is the paper's; any decoder-only
            ``AutoModelForCausalLM`` config works, e.g. Llama). A dict needs a ``model_type``.
        num_dense_tokens: ``v``, dense tokens (and codes) per item (paper: 4).
        content_attributes: item attributes written into the content block, in order.
        tasks: post-pretraining tasks, each ``{"attribute": name, "kind": "reconstruction" |
            "generation"}``; one learnable task embedding each. Default: reconstruct every content
            attribute.
        placeholder_scaling: how dense-token outputs are mapped to placeholder inputs:
            ``"standardize"`` (default: per-dimension centre/scale measured on real items, then a
            learned gain and bias), ``"rms"`` (RMS-normalise, learned gain) or ``"none"`` (the raw
            last-layer state, as the paper literally states). See ``PlaceholderScaler``.
        max_content_length / max_target_length: token budgets of the content block and of each
            task's target.
        lora_r / lora_alpha / lora_dropout / lora_target_modules: LoRA on the backbone
            (``lora_target_modules=None``: every attention and MLP projection of the family).
        lora_active: whether the weights carry unmerged LoRA adapters (set by ``add_lora`` and
            ``merge_lora``; lets ``from_pretrained`` rebuild them).
        codebook_size: ``k``, k-means clusters per position (the codes' range). The clusterer's
            other settings (PCA components, ...) belong to the codebook, not to the model.
        code_token_offset: id of the first code token in the recommender's vocabulary (the
            backbone's vocabulary size); code ``c`` of position ``p`` is token
            ``code_token_offset + p * codebook_size + c``. Set by ``StoreForGenerativeRec``.
        item_ids: the catalogue, in the row order of the recommender's ``item_codes`` buffer.
        item_titles: optional titles of those items (same order), which the
            ``"store-recommendation"`` pipeline returns next to the ids.
        templates: instruction templates of the recommender (see ``templates.DEFAULT_TEMPLATES``).
        prompt_token_ids: the templates' pieces as token ids, so that a saved recommender builds
            its prompts without a text tokenizer (``answer_yes``/``answer_no`` are the scoring
            mode's tokens).

    Configs saved before ``codebook_dim`` and ``answer_token_ids`` were dropped (no model read
    them) still load: unknown keys of a ``config.json`` are kept as plain attributes.
        max_history: items of a user's history kept in a prompt (the most recent ones).
    """

    model_type = "store"
    sub_configs_defaults = {"text_config": SubConfigSpec(config_class=AutoConfig, model_type="opt")}

    text_config: dict | PreTrainedConfig | None = None
    num_dense_tokens: int = 4
    content_attributes: list[str] | None = None
    tasks: list[dict] | None = None
    placeholder_scaling: str = "standardize"
    max_content_length: int = 256
    max_target_length: int = 64
    lora_r: int = 32
    lora_alpha: int = 64
    lora_dropout: float = 0.05
    lora_target_modules: list[str] | None = None
    lora_active: bool = False
    codebook_size: int = 256
    code_token_offset: int | None = None
    item_ids: list[str] | None = None
    item_titles: list[str] | None = None
    templates: dict[str, str] | None = None
    prompt_token_ids: dict[str, list[int]] | None = None
    max_history: int = 20

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.num_dense_tokens < 1:
            raise ValueError(
                f"StoreConfig.num_dense_tokens must be >= 1, got {self.num_dense_tokens}"
            )
        if self.placeholder_scaling not in ("standardize", "rms", "none"):
            raise ValueError(
                "StoreConfig.placeholder_scaling must be 'standardize', 'rms' or 'none', "
                f"got {self.placeholder_scaling!r}"
            )
        if self.content_attributes is None:
            self.content_attributes = ["title"]
        if self.tasks is None:
            self.tasks = default_tasks(self.content_attributes, self.content_attributes)
        for i, task in enumerate(self.tasks):
            if set(task) != {"attribute", "kind"} or task["kind"] not in (
                RECONSTRUCTION,
                GENERATION,
            ):
                raise ValueError(
                    f"StoreConfig.tasks[{i}] must be {{'attribute': str, 'kind': 'reconstruction'|'generation'}}, got {task}"
                )
        if self.templates is None:
            self.templates = dict(DEFAULT_TEMPLATES)
        unknown = set(self.templates) - set(DEFAULT_TEMPLATES)
        if unknown:
            raise ValueError(
                f"StoreConfig.templates has unknown keys {sorted(unknown)}; "
                f"known: {sorted(DEFAULT_TEMPLATES)}"
            )
        if self.item_titles is not None and (
            self.item_ids is None or len(self.item_titles) != len(self.item_ids)
        ):
            raise ValueError(
                f"StoreConfig.item_titles has {len(self.item_titles)} titles for "
                f"{len(self.item_ids or [])} item_ids"
            )
        if self.max_history < 1:
            raise ValueError(f"StoreConfig.max_history must be >= 1, got {self.max_history}")
        if self.lora_target_modules is None:
            family = "opt" if self.text_config.model_type == "opt" else "llama"
            self.lora_target_modules = list(LORA_TARGETS[family])

    @property
    def num_tasks(self) -> int:
        return len(self.tasks)

    @property
    def hidden_size(self) -> int:
        return self.text_config.hidden_size


__all__ = ["StoreConfig"]
