"""Named settings for the whole pipeline: ``tiny`` (tests), ``cpu`` (``make demo``), ``paper`` (GPU)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

#: Where the items' semantic IDs come from (``RunConfig.semantic_ids``):
#:
#: * ``store``: the post-trained dense tokenizer's dense tokens, PCA + k-means per position (STORE);
#: * ``llm-rqvae``: the pretrained backbone as is, one mean-pooled content embedding per item,
#:   RQ-VAE (the paper's "STORE without dense tokenizer"; with per-position decoding, LC-Rec);
#: * ``minilm-rqvae``: all-MiniLM-L6-v2 sentence embeddings + RQ-VAE, TIGER's codes (the same
#:   codes ``examples/train_tiger.py`` gives for the seed), read by the LLM recommender.
#:
#: The RQ-VAE variants use TIGER's recipe: ``v - 1`` residual levels of ``k`` codes plus the
#: collision position, so every system has ``v`` codes per item.
SEMANTIC_IDS = ("store", "llm-rqvae", "minilm-rqvae")


@dataclass(frozen=True)
class TokenizerStageSettings:
    """Dense-tokenizer post-pretraining (paper section 4.1, "Tokenizer")."""

    max_items: int | None = None  # train on a random subset of the catalogue (None: all items)
    learning_rate: float = 1e-4
    # dense/task embeddings and the placeholder gain (None: learning_rate); new parameters that
    # start from scratch, while LoRA only nudges a pretrained model
    embedding_learning_rate: float | None = None
    batch_size: int = 512  # items per optimiser step (each item gives one sample per task)
    per_device_batch_size: int = 32
    num_epochs: float = 1.0
    max_steps: int = -1
    warmup_ratio: float = 0.05
    bf16: bool | None = False  # bf16 autocast training; None: where the hardware has native bf16
    encode_batch_size: int = 64
    # encode items under bf16 autocast; None: where the hardware computes bf16 natively (a GPU
    # with bf16, a CPU with AVX512-BF16 or AMX), measured 1.6-1.8x faster on such a CPU and 0.59x
    # on one without (benchmarks/results/speed.md, section encode)
    encode_bf16: bool | None = None


@dataclass(frozen=True)
class RecStageSettings:
    """Generative-recommender instruction tuning (paper section 4.1: LoRA r 128, lr 5e-4,
    batch 64): stage 1 trains recommendation and text-code alignment jointly, stage 2 the
    recommendation task alone with early stopping on the validation split."""

    # "lora": LoRA adapters on a frozen backbone (the paper); "full": every backbone weight
    # trains (at learning_rate) with the code rows (at code_learning_rate); saved models are
    # plain weights either way
    finetune: str = "lora"
    lora_r: int = 128
    lora_alpha: int = 256
    lora_dropout: float = 0.05
    learning_rate: float = 5e-4
    code_learning_rate: float | None = None  # the new code-token rows (None: learning_rate)
    # "constant": each step's summed token loss is divided by the stage's mean labelled tokens
    # per optimiser step, so every supervised item weighs the same whatever batch it lands in
    # (packed examples differ in length); "batch": by that step's own labelled tokens (the
    # Trainer's default, which up-weights short sequences under length grouping)
    loss_normalization: str = "constant"
    # gradient-norm clipping (0: off; None: off under "constant", the Trainer's 1.0 under
    # "batch"). Packed steps differ in labelled tokens several-fold, so their summed gradients
    # do too: clipping at 1.0 acted on 98-100% of the make demo run's steps
    # (benchmarks/results/grad-norms-cpu-demo.md) and rescaled each to the same norm, which
    # gave each item of a short batch several times the weight of one in a long batch again.
    # Adam bounds each step's update without it.
    max_grad_norm: float | None = None
    # "per-stage": each stage warms up and decays its own cosine schedule; "continuous": one
    # cosine schedule over stage 1 and stage 2's epoch cap, stage 2 going on where stage 1 ended
    lr_schedule: str = "per-stage"
    batch_size: int = 64
    per_device_batch_size: int = 16
    joint_epochs: float = 1.0  # stage 1: recommendation + alignment (+ scoring)
    num_epochs: float = 10.0  # stage 2 (recommendation alone): an upper bound, early-stopped
    max_steps: int = -1
    warmup_ratio: float = 0.05
    bf16: bool | None = False  # as TokenizerStageSettings.bf16
    patience: int = 5  # evaluations without improvement before stage 2 stops
    # validation cadence of stage 2: ``evals_per_epoch`` evaluations per epoch, and never fewer
    # than ``patience + 1`` over the stage, so early stopping and best-checkpoint loading can
    # act (see ``store_hf.training.evaluation_steps``); ``eval_steps`` fixes the interval instead
    evals_per_epoch: int = 4
    eval_steps: int | None = None
    early_stopping_metric: str = "ndcg@10"  # or "loss" (validation loss: no generation)
    max_history: int = 20
    # "per-prefix": one example per training target (history -> next item, the paper's layout);
    # "packed": one causal example per user with the loss on every item after the first (the
    # same objective in about a quarter of the tokens; store_hf.packing)
    layout: str = "per-prefix"
    packing_stride: int | None = None  # windows of long sequences (None: max_history // 2)
    # batches of similar lengths (Trainer's LengthGroupedSampler): a third fewer tokens per
    # epoch on the Amazon set, where history prompts and item texts differ a lot in length
    group_by_length: bool = True
    max_train_users: int | None = None  # None: every user
    max_eval_users: int | None = None  # validation users of early stopping (None: all)
    # test users ranked by the evaluate stage (None: all), drawn with the run's fixed
    # ``eval_seed``, so every seed and system of a comparison sees the same users
    max_test_users: int | None = None
    scoring_negatives: int = 1  # sampled negatives per positive of the scoring task (0: off)
    alignment: bool = True  # the text-code alignment task (off: the ablation)
    alignment_items: str = "seen"  # "seen": items of the training users; "all": the catalogue
    alignment_max_items: int | None = None  # a seeded sample of those (None: all of them)
    # item text tokens of an alignment example (None: the model's max_content_length); the
    # alignment task on every item is most of stage 1's tokens on a large catalogue
    alignment_max_length: int | None = None
    # initial code-token rows: "dense" (mean scaled dense token of each cluster's items, what
    # the tokenizer taught the LLM to read) or "random" (mean word embedding + noise)
    code_init: str = "dense"
    num_beams: int = 20
    eval_batch_size: int = 16
    # rank test users with the model in bf16; None: where the hardware computes bf16 natively
    eval_bf16: bool | None = None


@dataclass(frozen=True)
class CodebookSettings:
    """Semantic IDs from the encoded items (paper section 3.2): PCA to ``pca_dim`` dimensions,
    then k-means with ``codebook_size`` clusters per dense-token position (STORE); the RQ-VAE
    variants of ``SEMANTIC_IDS`` use ``codebook_size`` codes per level.

    The other fields are :class:`store_hf.semantic_ids.SemanticCodebook`'s options.
    """

    codebook_size: int = 256  # k (paper: 256)
    pca_dim: int = 32  # d (paper: 32)
    pca: str = "shared"  # "shared" (one PCA over all positions, the paper's) or "per_position"
    collisions: str = "resolve"  # "resolve": every item gets a unique code tuple; "none"
    engine: str = "sklearn"  # or "faiss"
    n_init: int = 1
    max_iter: int = 300


@dataclass(frozen=True)
class Preset:
    name: str
    backbone: (
        str  # Hub id, folder, .gguf file, "smollm2-135m", or "tiny-opt" (random, built in code)
    )
    description: str
    num_dense_tokens: int = 4
    lora_r: int = 32
    lora_alpha: int = 64
    lora_dropout: float = 0.05
    max_content_length: int = 256
    max_target_length: int = 64
    tokenizer: TokenizerStageSettings = field(default_factory=TokenizerStageSettings)
    recommender: RecStageSettings = field(default_factory=RecStageSettings)
    codebook: CodebookSettings = field(default_factory=CodebookSettings)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def store_config_kwargs(self) -> dict[str, Any]:
        """The :class:`StoreConfig` fields this preset sets."""
        return {
            "num_dense_tokens": self.num_dense_tokens,
            "lora_r": self.lora_r,
            "lora_alpha": self.lora_alpha,
            "lora_dropout": self.lora_dropout,
            "max_content_length": self.max_content_length,
            "max_target_length": self.max_target_length,
        }


_CPU_TOKENIZER = TokenizerStageSettings(
    max_items=256,
    learning_rate=5e-4,
    # the new embeddings start from scratch and need a 10x larger rate, and 32 small steps
    # beat 16 larger ones in the same time (docs/pipeline.md, "Why the cpu preset ...")
    embedding_learning_rate=5e-3,
    batch_size=8,
    per_device_batch_size=8,
    num_epochs=1.0,
    bf16=False,
)

_CPU_RECOMMENDER = RecStageSettings(
    lora_r=16,
    lora_alpha=32,
    lora_dropout=0.0,
    learning_rate=1e-3,
    code_learning_rate=5e-3,
    batch_size=16,
    per_device_batch_size=16,
    # one causal example per user (store_hf.packing): the same objective as the per-prefix
    # rows in 3.83x fewer tokens (247k instead of 948k per epoch on the Amazon set,
    # benchmarks/results/packing.md)
    layout="packed",
    joint_epochs=1.0,
    num_epochs=1.0,
    evals_per_epoch=6,
    patience=3,
    early_stopping_metric="loss",
    # ~300 s of training on 2 cores: 1,000 users packed (30k tokens per epoch) and the
    # alignment task on 500 of their items (77 tokens each: alignment dominates the cost)
    max_train_users=1000,
    alignment_max_items=500,
    max_eval_users=300,
    max_test_users=1000,
    scoring_negatives=0,  # the scoring task doubles the data; demo it with --preset tiny
    num_beams=20,
    # bf16 autocast where the CPU has it natively: faster, same losses and metrics
    # (docs/pipeline.md, "Why the cpu preset ...")
    bf16=None,
)


PRESETS: dict[str, Preset] = {
    "paper": Preset(
        name="paper",
        backbone="facebook/opt-350m",
        description="the paper's settings (OPT-350m, lr 1e-4, batch 512, LoRA r 32, v 4); needs a GPU",
        tokenizer=TokenizerStageSettings(
            learning_rate=1e-4, batch_size=512, per_device_batch_size=64, num_epochs=3.0, bf16=True
        ),
        recommender=RecStageSettings(bf16=True),
    ),
    "cpu": Preset(
        name="cpu",
        backbone="smollm2-135m",
        description="SmolLM2-135M (offline GGUF) on a catalogue subset, sized for 2 CPU cores",
        lora_r=16,
        lora_alpha=32,
        # LoRA dropout draws a Bernoulli mask per adapted layer: measured at 37% of the forward
        # time of SmolLM2-135M on 2 cores, for little benefit at a few hundred steps.
        lora_dropout=0.0,
        max_content_length=64,
        max_target_length=24,
        # The tokenizer trains in fp32: under bf16 autocast the dense tokens learnt nothing
        # (docs/pipeline.md, "Why the cpu preset ...").
        tokenizer=_CPU_TOKENIZER,
        recommender=_CPU_RECOMMENDER,
    ),
    "full": Preset(
        name="full",
        backbone="smollm2-135m",
        description="SmolLM2-135M on the whole dataset (every user packed, every weight trained, "
        "up to three epochs), sized for about 100 minutes on 2 CPU cores",
        lora_r=16,
        lora_alpha=32,
        lora_dropout=0.0,
        max_content_length=64,
        max_target_length=24,
        tokenizer=replace(_CPU_TOKENIZER, max_items=1024),
        recommender=replace(
            _CPU_RECOMMENDER,
            max_train_users=None,
            # every weight trains: from the same start and one packed epoch over all users,
            # full fine-tuning at 1e-4 beat LoRA r16 at 1e-3 on the same 1,000 users (R@10
            # 0.069 vs 0.060, paired p = 0.03; issue 25) at 1.16x the time per token
            # (benchmarks/results/finetune.md); the code rows keep their 5e-3. At 2e-4 the
            # whole preset ranked N@10 +0.0046 (p = 0.012) and R@10 +0.0035 (p = 0.4) above
            # 1e-4 on the same 2,000 users, its validation NDCG@10 above at every point
            # (benchmarks/results/lr2e-4-vs-1e-4-full.md; one seed, codes of the 1e-4 run
            # unrecorded)
            finetune="full",
            learning_rate=2e-4,
            # the text-code alignment task off: on the same tokenizer, codes and users it
            # changed R@10 by +0.0045 (p = 0.29) and N@10 by +0.0031 (p = 0.13) and cost
            # ~190k of stage 1's 437k tokens, 40 of the preset's 140 minutes
            # (benchmarks/results/quality-scientific-full-v5.md; it is on in `cpu` and `paper`)
            alignment=False,
            alignment_items="all",
            alignment_max_items=None,
            # stage 1 (one epoch of 247k tokens), then stage 2 for up to two more epochs,
            # early-stopped on NDCG@10 of 1,000 validation users (standard error ~0.008 at NDCG
            # 0.07; 200 users could not tell the differences apart), two validations per epoch,
            # patience 2; one cosine schedule over both stages, so stage 2 does not warm up again
            alignment_max_length=32,
            num_epochs=2.0,
            evals_per_epoch=2,
            patience=2,
            lr_schedule="continuous",
            early_stopping_metric="ndcg@10",
            max_eval_users=1000,
            max_test_users=2000,
        ),
    ),
    "tiny": Preset(
        name="tiny",
        backbone="tiny-opt",
        description="a tiny randomly initialised OPT with SmolLM2's tokenizer: seconds, for tests",
        lora_r=4,
        lora_alpha=8,
        lora_dropout=0.0,
        max_content_length=32,
        max_target_length=12,
        tokenizer=TokenizerStageSettings(
            max_items=64,
            learning_rate=5e-3,
            batch_size=16,
            per_device_batch_size=16,
            num_epochs=1.0,
        ),
        recommender=RecStageSettings(
            lora_r=4,
            lora_alpha=8,
            lora_dropout=0.0,
            learning_rate=5e-3,
            batch_size=16,
            per_device_batch_size=16,
            joint_epochs=1.0,
            num_epochs=1.0,
            early_stopping_metric="loss",
            layout="packed",
            max_train_users=40,
            max_eval_users=16,
            max_test_users=16,
            num_beams=10,
        ),
    ),
}


def get_preset(name: str, **overrides: Any) -> Preset:
    """A preset by name, with top-level fields overridden (e.g. ``backbone=...``)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return replace(PRESETS[name], **overrides) if overrides else PRESETS[name]
