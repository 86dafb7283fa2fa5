"""Training of both models with ``transformers.Trainer``: the dense tokenizer's
post-pretraining and the recommender's instruction tuning, with their batches and the
``TrainingArguments`` and optimiser they share."""

from .arguments import stage_training_arguments, two_rate_optimizer
from .collators import DenseTokenizerCollator, RecCollator, format_content, tokenize_items
from .instructions import RecInstructionData
from .recommender import RecTrainer, evaluation_steps, train_recommender, train_recommender_stage
from .tokenizer import (
    build_tokenizer_model,
    calibrate_placeholder_scaler,
    dense_information_gap,
    item_texts,
    train_dense_tokenizer,
    train_tokenizer_stage,
)

__all__ = [
    "DenseTokenizerCollator",
    "RecCollator",
    "RecInstructionData",
    "RecTrainer",
    "build_tokenizer_model",
    "calibrate_placeholder_scaler",
    "dense_information_gap",
    "evaluation_steps",
    "format_content",
    "item_texts",
    "stage_training_arguments",
    "tokenize_items",
    "train_dense_tokenizer",
    "train_recommender",
    "train_recommender_stage",
    "train_tokenizer_stage",
    "two_rate_optimizer",
]
