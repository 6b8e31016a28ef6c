"""Tiny random checkpoints, built offline and saved as real checkpoint folders.

Tokenizers are trained here on a small corpus; processors use small image sizes. The folders
look like the official ones (config.json, model.safetensors, tokenizer and processor files), so
vlmzoo loads them through the same path it takes for real weights.
"""

from __future__ import annotations

import io
import itertools
from pathlib import Path

import torch

SEED = 0
IMAGE_SIZE = 32

_SUBJECTS = ["cat", "dog", "car", "tree", "house", "bird", "person", "boat", "horse", "cup",
             "rocket", "astronaut", "coffee", "flower", "bicycle", "train"]
_PHRASES = ["a photo of a {}.", "this is a photo of {}.", "a picture of the {}", "how many {}s are there?",
            "what color is the {}?", "is there a {} in the image?", "a {} on the street", "two {}s and a man",
            "itap of a {}.", "a bad photo of the {}.", "art of the {}."]


def corpus() -> list[str]:
    return [p.format(s) for p, s in itertools.product(_PHRASES, _SUBJECTS)]


def _vision_kwargs() -> dict:
    return dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                image_size=IMAGE_SIZE, patch_size=8)


def _text_kwargs(vocab_size: int) -> dict:
    return dict(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=2)


# -- tokenizers ------------------------------------------------------------------------------

def clip_tokenizer():
    """A CLIP BPE tokenizer (byte-level alphabet, ``</w>`` word ends) whose merges spell out the
    corpus's words left to right.

    Built by hand rather than with the tokenizers BPE trainer, whose tie-breaking varies from
    run to run: a tiny checkpoint must be the same every session.
    """
    import re

    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {piece: i for i, piece in enumerate(alphabet + [ch + "</w>" for ch in alphabet])}
    merges: list[tuple[str, str]] = []
    for word in sorted({w for line in corpus() for w in re.findall(r"[a-z]+", line.lower())}):
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        while len(pieces) > 1:
            pair = (pieces[0], pieces[1])
            if pair not in merges:
                merges.append(pair)
                vocab.setdefault(pair[0] + pair[1], len(vocab))
            pieces = [pair[0] + pair[1]] + pieces[2:]
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)


def siglip_tokenizer(tmp: Path, max_length: int):
    """A SentencePiece unigram model trained on the corpus, wrapped as SiglipTokenizer."""
    import sentencepiece as spm
    from transformers import SiglipTokenizer

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus()), model_writer=buf, vocab_size=150, hard_vocab_limit=False, model_type="unigram",
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, pad_piece="<pad>", eos_piece="</s>", unk_piece="<unk>",
        minloglevel=2,
    )
    tmp.mkdir(parents=True, exist_ok=True)
    spm_path = tmp / "spiece.model"
    spm_path.write_bytes(buf.getvalue())
    return SiglipTokenizer(vocab_file=str(spm_path), model_max_length=max_length)


def bert_tokenizer():
    """A WordPiece vocabulary laid out like BLIP's: BERT specials, the corpus's characters (alone
    and as ``##`` continuations) and whole words, plus [DEC] (bos) and [ENC].

    Built by hand rather than with the tokenizers WordPiece trainer, whose output differs from
    run to run: a tiny checkpoint must be the same every session.
    """
    import re

    from transformers import BertTokenizer

    words = sorted({w for line in corpus() for w in re.findall(r"\w+|[^\w\s]", line.lower())})
    chars = sorted({c for w in words for c in w})
    pieces = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars + ["##" + c for c in chars]
    pieces += [w for w in words if w not in pieces] + ["[DEC]", "[ENC]"]
    vocab = {p: i for i, p in enumerate(pieces)}
    return BertTokenizer(vocab=vocab, bos_token="[DEC]", extra_special_tokens=["[ENC]"], model_max_length=64)


# -- checkpoints -----------------------------------------------------------------------------

def build_clip(out: Path) -> Path:
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPProcessor

    torch.manual_seed(SEED)
    tok = clip_tokenizer()
    cfg = CLIPConfig(
        text_config=dict(**_text_kwargs(len(tok)), max_position_embeddings=77,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id),
        vision_config=_vision_kwargs(), projection_dim=16,
    )
    CLIPModel(cfg).eval().save_pretrained(out)
    images = CLIPImageProcessorPil(size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    CLIPProcessor(image_processor=images, tokenizer=tok).save_pretrained(out)
    return out


def build_siglip(out: Path) -> Path:
    from transformers import SiglipConfig, SiglipImageProcessorPil, SiglipModel, SiglipProcessor

    torch.manual_seed(SEED)
    max_length = 32
    tok = siglip_tokenizer(out.parent / (out.name + "-spm"), max_length)
    cfg = SiglipConfig(
        text_config=dict(**_text_kwargs(len(tok)), max_position_embeddings=max_length, bos_token_id=None,
                         pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id),
        vision_config=_vision_kwargs(),
    )
    model = SiglipModel(cfg).eval()
    with torch.no_grad():  # the official init has logit bias -10: every sigmoid near 0, useless to test
        model.logit_bias.fill_(-1.0)
    model.save_pretrained(out)
    images = SiglipImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    SiglipProcessor(image_processor=images, tokenizer=tok).save_pretrained(out)
    return out


def build_blip(out: Path, head: str) -> Path:
    """``head``: BlipForConditionalGeneration, BlipForQuestionAnswering or BlipForImageTextRetrieval."""
    import transformers
    from transformers import BlipConfig, BlipImageProcessorPil, BlipProcessor

    torch.manual_seed(SEED)
    tok = bert_tokenizer()
    cfg = BlipConfig(
        text_config=dict(**_text_kwargs(len(tok)), max_position_embeddings=64,
                         bos_token_id=tok.bos_token_id, sep_token_id=tok.sep_token_id,
                         pad_token_id=tok.pad_token_id, eos_token_id=tok.sep_token_id),
        vision_config=_vision_kwargs(), projection_dim=16, image_text_hidden_size=16,
    )
    model = getattr(transformers, head)(cfg).eval()
    _make_image_matter(model)
    model.save_pretrained(out)
    images = BlipImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    BlipProcessor(image_processor=images, tokenizer=tok).save_pretrained(out)
    return out


def _make_image_matter(model) -> None:
    """BLIP's default init (std 0.02) leaves a tiny random model blind: every image gives the
    same tokens and scores. Wider weights let a test see the image change the output."""
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.2)


BLIP_HEADS = {
    "caption": "BlipForConditionalGeneration",
    "vqa": "BlipForQuestionAnswering",
    "itm": "BlipForImageTextRetrieval",
}


def build_all(root: Path) -> dict[str, Path]:
    """Every tiny checkpoint, laid out as ``root/<hub org>/<hub name>`` like a local mirror,
    so that catalog ids resolve to them through $VLMZOO_MODELS_DIR."""
    paths = {
        "clip": build_clip(root / "openai" / "clip-vit-base-patch32"),
        "siglip": build_siglip(root / "google" / "siglip-base-patch16-224"),
        "blip-caption": build_blip(root / "Salesforce" / "blip-image-captioning-base", BLIP_HEADS["caption"]),
        "blip-vqa": build_blip(root / "Salesforce" / "blip-vqa-base", BLIP_HEADS["vqa"]),
        "blip-itm": build_blip(root / "Salesforce" / "blip-itm-base-coco", BLIP_HEADS["itm"]),
    }
    return paths
