"""Semantic IDs: every catalogue item -> a tuple of ``v`` discrete codes.

Two methods, side by side, with one kind of saved folder (:mod:`.persistence`, built on
:func:`store_hf.files.save_tensors_and_config`):

* **PCA + k-means** (STORE, paper section 3.2): :class:`SemanticCodebook` clusters the ``v``
  dense-token outputs of each item (:mod:`.codebook`; the math in :mod:`.pca_kmeans`, collision
  resolution in :mod:`.collisions`, lookups in :mod:`.lookup`, health in :mod:`.statistics`).
* **RQ-VAE** (TIGER): :class:`RQVAE` quantises one embedding per item in residual levels plus a
  collision position (:mod:`.rqvae`); :func:`fit_rqvae` is the pipeline's stage for it
  (:mod:`.rqvae_codes`).

:func:`fit_codebook_stage` is the pipeline's codebook stage for either method (:mod:`.stage`).

Shared: code tuples as int64 keys (:mod:`.keys`) and the recommender's starting code-token
embeddings (:func:`code_embeddings_from_dense`).

    from store_hf.semantic_ids import SemanticCodebook
    book = SemanticCodebook(codebook_size=256, pca_dim=32).fit(dense, item_ids)  # (N, v, hidden)
    book.codes                      # (N, v) int64, unique rows
    book.save_pretrained("runs/codebook"); SemanticCodebook.from_pretrained("runs/codebook")
"""

from .code_embeddings import code_embeddings_from_dense
from .codebook import CONFIG_NAME, FORMAT_VERSION, WEIGHTS_NAME, SemanticCodebook
from .keys import codes_to_keys, embedding_memory, keys_to_codes
from .rqvae import RQVAE, RQVAEConfig, code_statistics, disambiguate
from .rqvae_codes import fit_rqvae
from .stage import fit_codebook_stage

__all__ = [
    "CONFIG_NAME",
    "FORMAT_VERSION",
    "RQVAE",
    "RQVAEConfig",
    "SemanticCodebook",
    "WEIGHTS_NAME",
    "code_embeddings_from_dense",
    "code_statistics",
    "codes_to_keys",
    "disambiguate",
    "embedding_memory",
    "fit_codebook_stage",
    "fit_rqvae",
    "keys_to_codes",
]
