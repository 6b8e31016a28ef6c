"""Image-text retrieval recall@K in both directions (Flickr30k / COCO retrieval protocol), and
the same between text and another modality (audio-caption retrieval as on Clotho or AudioCaps):
"image" below is the sample's input, whatever its modality.

Each sample is an image with its captions. The runner stores L2-normalised embeddings; every
image is ranked against every caption of the benchmark by cosine similarity (the order a
dual encoder's logits give too). Image -> text: a hit when any of the image's own captions is
among the top K. Text -> image: per caption, a hit when its image is among the top K; a
sample's row holds (hits, captions), so the aggregate weighs every caption once, as the
protocol does.

Ties never favour the query: a correct item ranks after every wrong item with an equal score.
An image's rank is the number of other images' captions scoring at least as high as its best
own caption; a caption's rank is the number of other images scoring at least as high as its
own image. A hit at K is a rank below K.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

import numpy as np

from vlmzoo.evaluation.metrics.rows import Corpus
from vlmzoo.evaluation.sample import Sample



def _matrices(predictions: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    images = np.stack([np.asarray(p["image"], dtype=np.float32) for p in predictions])
    texts = np.concatenate([np.asarray(p["texts"], dtype=np.float32).reshape(-1, images.shape[1])
                            for p in predictions])
    owner = np.repeat(np.arange(len(predictions)), [len(p["texts"]) for p in predictions])
    return images, texts, owner


@lru_cache(maxsize=4)
def _ranks(key: str, images_bytes: bytes, texts_bytes: bytes, owner_bytes: bytes, dim: int):
    """Best rank (0-based) of a correct item, per image query and per caption query."""
    images = np.frombuffer(images_bytes, dtype=np.float32).reshape(-1, dim)
    texts = np.frombuffer(texts_bytes, dtype=np.float32).reshape(-1, dim)
    owner = np.frombuffer(owner_bytes, dtype=np.int64)
    sim = images @ texts.T  # (images, captions)
    # rank = how many wrong items score at least as high as the best correct one: a tie never
    # counts in the query's favour, so equal embeddings for everything score 0 at K = 1
    image_rank = np.empty(len(images), dtype=np.int64)
    for i in range(len(images)):
        mine = owner == i
        image_rank[i] = int(np.sum(sim[i, ~mine] >= sim[i, mine].max())) if mine.any() else np.iinfo(np.int64).max
    columns = np.arange(len(texts))
    at_least = sim >= sim[owner, columns]  # (images, captions): scores at least the caption's own image
    caption_rank = (at_least.sum(axis=0) - at_least[owner, columns]).astype(np.int64)  # not counting its own
    return image_rank, caption_rank


def ranks(predictions: list[dict]):
    images, texts, owner = _matrices(predictions)
    blobs = images.tobytes(), texts.tobytes(), owner.astype(np.int64).tobytes()
    key = hashlib.sha1(b"".join(blobs)).hexdigest()
    return _ranks(key, *blobs, images.shape[1]), owner


def _i2t_rows(k: int):
    def rows(predictions: list[dict], samples: list[Sample]) -> np.ndarray:
        (image_rank, _), _ = ranks(predictions)
        return (image_rank < k).astype(float).reshape(-1, 1)

    return rows


def _t2i_rows(k: int):
    def rows(predictions: list[dict], samples: list[Sample]) -> np.ndarray:
        (_, caption_rank), owner = ranks(predictions)
        hits = np.bincount(owner, weights=(caption_rank < k).astype(float), minlength=len(predictions))
        counts = np.bincount(owner, minlength=len(predictions)).astype(float)
        return np.stack([hits, counts], axis=1)

    return rows


def _weighted(rows: np.ndarray) -> float:
    return float(rows[:, 0].sum() / rows[:, 1].sum()) if rows[:, 1].sum() else 0.0


i2t_at_1, i2t_at_5, i2t_at_10 = (_i2t_rows(k) for k in (1, 5, 10))
t2i_at_1, t2i_at_5, t2i_at_10 = (Corpus(_t2i_rows(k), _weighted) for k in (1, 5, 10))
