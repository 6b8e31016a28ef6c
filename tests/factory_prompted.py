"""Tiny random checkpoints of the prompted (not chat-templated) generative families, built offline.

Like ``factory``: tokenizers are trained here on ``factory.corpus()`` with the ``tokenizers`` library,
wrapped in the tokenizer class the official checkpoint uses, with the official special-token layout
(ids of bos/eos/pad, the image token, location tokens). Each builder writes a real checkpoint folder
that ``AutoProcessor.from_pretrained`` and the family's model class load as the official one.
"""

from __future__ import annotations

import io
import json
import string
from pathlib import Path

import torch

import factory

SEED = factory.SEED
IMAGE_SIZE = factory.IMAGE_SIZE  # 32 px, patch 8: 16 patches
TINY = dict(hidden=32, ffn=64, layers=2, heads=2)  # every text model and Q-Former uses these


# -- tokenizer training ----------------------------------------------------------------------

def _texts() -> list[str]:
    """The shared corpus, plus every printable ASCII character (so prompts like "Question:" or
    "caption en" never hit <unk>) and the words of the families' prompt formats."""
    return factory.corpus() + [
        " ".join(string.ascii_letters + string.digits + string.punctuation),
        "Question: what is in the image? Answer: a cat",
        "caption en", "answer en what is this?", "detect cat ; dog", "segment the cat",
        "An image of a cat. Describe this image in detail.",
        "What does the image describe? Locate the objects with category name in the image.",
        "Locate the phrases in the caption: a cat on the street",
    ]


def _train(model, pre_tokenizer, trainer, normalizer=None) -> dict:
    from tokenizers import Tokenizer

    tok = Tokenizer(model)
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.train_from_iterator(_texts(), trainer)
    return json.loads(tok.to_str())["model"]


def _merges(model: dict) -> list[tuple[str, str]]:
    return [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]


def bytelevel_bpe(specials: list[str], size: int = 500):
    """GPT-2 style byte-level BPE (OPT, BART): ``specials`` take ids 0..n-1. Returns vocab, merges."""
    from tokenizers import models, pre_tokenizers, trainers

    model = _train(models.BPE(), pre_tokenizers.ByteLevel(add_prefix_space=False),
                   trainers.BpeTrainer(vocab_size=size, special_tokens=specials, show_progress=False,
                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return model["vocab"], _merges(model)


def metaspace_bpe(specials: list[str], size: int = 500, prepend: str = "first"):
    """SentencePiece-style BPE with byte fallback (Llama, Gemma): ``specials``, then <0x00>..<0xFF>,
    then the learned pieces. ``prepend``: "first" if the tokenizer adds "▁" before the text (Llama),
    "never" if not (Gemma). Returns vocab, merges."""
    from tokenizers import models, pre_tokenizers, trainers

    byte_tokens = [f"<0x{i:02X}>" for i in range(256)]
    model = _train(models.BPE(byte_fallback=True), pre_tokenizers.Metaspace(prepend_scheme=prepend),
                   trainers.BpeTrainer(vocab_size=size, special_tokens=specials + byte_tokens, show_progress=False))
    return model["vocab"], _merges(model)


def unigram(specials: dict[str, int], size: int = 200) -> list[tuple[str, float]]:
    """SentencePiece unigram pieces and scores (T5, XLM-R), with ``specials`` (<pad> <s> </s> <unk> ->
    id) at their official ids. Trained with sentencepiece, as the originals were: the ``tokenizers``
    library's UnigramTrainer is not reproducible (piece order and scores change from run to run)."""
    import sentencepiece as spm

    ids = {f"{name}_id": specials.get(f"<{name}>", -1) for name in ("pad", "unk")}
    ids.update(bos_id=specials.get("<s>", -1), eos_id=specials["</s>"])
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(_texts()), model_writer=buf, vocab_size=size,
                                   hard_vocab_limit=False, model_type="unigram", character_coverage=1.0,
                                   num_threads=1, minloglevel=2, **ids)
    sp = spm.SentencePieceProcessor(model_proto=buf.getvalue())
    return [(sp.id_to_piece(i), 0.0 if sp.is_control(i) or sp.is_unknown(i) else sp.get_score(i))
            for i in range(sp.get_piece_size())]


def wordpiece(specials: list[str], size: int = 300) -> dict[str, int]:
    """BERT-uncased style WordPiece vocabulary (GIT's tokenizer, the Q-Former's): the pieces of a BPE
    trained on lowercased words, each both word-initial and as a "##" continuation. (The library's
    WordPieceTrainer is not reproducible: its "##" alphabet comes in hash order.)"""
    from tokenizers import models, normalizers, pre_tokenizers, trainers

    vocab = _train(models.BPE(), pre_tokenizers.BertPreTokenizer(),
                   trainers.BpeTrainer(vocab_size=size, special_tokens=specials, show_progress=False),
                   normalizers.BertNormalizer(lowercase=True))["vocab"]
    pieces = [p for p in vocab if p not in specials]
    return {t: i for i, t in enumerate(specials + pieces + ["##" + p for p in pieces])}


def qformer_tokenizer():
    """InstructBLIP's Q-Former tokenizer: bert-base-uncased plus a "[DEC]" bos token."""
    from transformers import BertTokenizer

    vocab = wordpiece(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    vocab.setdefault("[DEC]", len(vocab))
    return BertTokenizer(vocab=vocab, bos_token="[DEC]", truncation_side="left", model_max_length=64)


def _special(tok, tokens: list[str], special: bool = True, **props) -> None:
    """Add ``tokens`` as whole (unsplit, unnormalised) tokens: appended, or kept at their id if
    already in the vocabulary."""
    from tokenizers import AddedToken

    tok.add_tokens([AddedToken(t, special=special, normalized=False, **props) for t in tokens],
                   special_tokens=special)


# -- models ----------------------------------------------------------------------------------

def _widen(*modules, std: float = 0.2) -> None:
    """Re-initialise every matrix of ``modules`` (or bare parameters) at a wider std. The default inits
    (std 0.02, BLIP-2's zero query tokens, InstructBLIP's 1e-10 vision init) leave these tiny random
    models blind: the same greedy tokens for a red and a noise image. Widening only the image path is
    not enough for most of them (the std-0.02 language models barely attend to it)."""
    with torch.no_grad():
        for module in modules:
            for p in (module.parameters() if isinstance(module, torch.nn.Module) else [module]):
                if p.dim() > 1:
                    p.normal_(0.0, std)


def _vision(**over) -> dict:
    return {**factory._vision_kwargs(), **over}


def _opt(vocab_size: int, tok) -> dict:
    return dict(model_type="opt", vocab_size=vocab_size, hidden_size=TINY["hidden"],
                word_embed_proj_dim=TINY["hidden"], ffn_dim=TINY["ffn"], num_hidden_layers=TINY["layers"],
                num_attention_heads=TINY["heads"], max_position_embeddings=128, bos_token_id=tok.bos_token_id,
                eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)


def _t5(vocab_size: int, tok) -> dict:
    # Flan-T5: gated-gelu, untied head; the decoder starts from <pad>.
    return dict(model_type="t5", vocab_size=vocab_size, d_model=TINY["hidden"], d_kv=16, d_ff=TINY["ffn"],
                num_layers=TINY["layers"], num_decoder_layers=TINY["layers"], num_heads=TINY["heads"],
                feed_forward_proj="gated-gelu", tie_word_embeddings=False, pad_token_id=tok.pad_token_id,
                eos_token_id=tok.eos_token_id, decoder_start_token_id=tok.pad_token_id)


def _qformer(vocab_size: int | None = None) -> dict:
    kw = dict(hidden_size=TINY["hidden"], intermediate_size=TINY["ffn"], num_hidden_layers=TINY["layers"],
              num_attention_heads=TINY["heads"], encoder_hidden_size=factory._vision_kwargs()["hidden_size"],
              cross_attention_frequency=1)
    return kw if vocab_size is None else {**kw, "vocab_size": vocab_size}


def _blip_images():
    from transformers import BlipImageProcessorPil

    return BlipImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})


def _clip_images(**kw):
    from transformers import CLIPImageProcessorPil

    return CLIPImageProcessorPil(**{"size": {"shortest_edge": IMAGE_SIZE},
                                    "crop_size": {"height": IMAGE_SIZE, "width": IMAGE_SIZE}, **kw})


# -- tokenizers of the language models --------------------------------------------------------

def opt_tokenizer():
    """OPT's GPT-2 byte-level BPE: <s>=0 <pad>=1 </s>=2 <unk>=3; "</s>" is bos, eos and unk, and a
    bos is prepended to every text."""
    from transformers import GPT2Tokenizer

    vocab, merges = bytelevel_bpe(["<s>", "<pad>", "</s>", "<unk>"])
    return GPT2Tokenizer(vocab=vocab, merges=merges, bos_token="</s>", eos_token="</s>", unk_token="</s>",
                         pad_token="<pad>", add_bos_token=True, padding_side="left", model_max_length=128)


def t5_tokenizer():
    """Flan-T5's unigram: <pad>=0 </s>=1 <unk>=2, 100 <extra_id_n> sentinels at the end; eos appended."""
    from transformers import T5Tokenizer

    return T5Tokenizer(vocab=unigram({"<pad>": 0, "</s>": 1, "<unk>": 2}), extra_ids=100, model_max_length=128)


def vicuna_tokenizer():
    """InstructBLIP-Vicuna's Llama tokenizer: <unk>=0 <s>=1 </s>=2, byte fallback; like the official
    conversion, "</s>" serves as bos and unk, and "[PAD]" is added after the vocabulary."""
    from transformers import LlamaTokenizer

    vocab, merges = metaspace_bpe(["<unk>", "<s>", "</s>"])
    tok = LlamaTokenizer(vocab=vocab, merges=merges, bos_token="</s>", unk_token="</s>", eos_token="</s>",
                         add_bos_token=True, truncation_side="left", model_max_length=128)
    tok.add_special_tokens({"pad_token": "[PAD]"})
    return tok


# -- checkpoints -----------------------------------------------------------------------------

def _save(model, processor, out: Path) -> Path:
    model.eval().save_pretrained(out)
    processor.save_pretrained(out)
    return out


def build_blip2_opt(out: Path) -> Path:
    """Prompt "Question: <q> Answer:" (or none, to caption). The output echoes the prompt."""
    from transformers import Blip2Config, Blip2ForConditionalGeneration, Blip2Processor

    torch.manual_seed(SEED)
    tok = opt_tokenizer()
    processor = Blip2Processor(image_processor=_blip_images(), tokenizer=tok, num_query_tokens=8)  # adds <image>
    cfg = Blip2Config(vision_config=_vision(), qformer_config=_qformer(), text_config=_opt(len(tok), tok),
                      num_query_tokens=8, image_token_index=tok.convert_tokens_to_ids("<image>"))
    model = Blip2ForConditionalGeneration(cfg)
    _widen(model)
    return _save(model, processor, out)


def build_blip2_itm(out: Path) -> Path:
    """BLIP-2's image-text matching checkpoint (blip2-itm-vit-g layout): vision tower, Q-Former
    with its own BERT vocabulary, an ITM head; no language model and no image tokens in the text."""
    from transformers import Blip2Config, Blip2ForImageTextRetrieval, Blip2Processor

    torch.manual_seed(SEED)
    tok = qformer_tokenizer()
    # the ITM head needs a Q-Former that reads the text as well (use_qformer_text_input)
    qformer = {**_qformer(len(tok)), "use_qformer_text_input": True}
    cfg = Blip2Config(vision_config=_vision(), qformer_config=qformer, num_query_tokens=8,
                      image_text_hidden_size=16)
    model = Blip2ForImageTextRetrieval(cfg)
    _widen(model)
    return _save(model, Blip2Processor(image_processor=_blip_images(), tokenizer=tok), out)


def build_blip2_t5(out: Path) -> Path:
    """Prompt "Question: <q> Answer:"; encoder-decoder, so the output is only the decoder's: it
    starts with <pad> (the decoder start) and does not echo the prompt."""
    from transformers import Blip2Config, Blip2ForConditionalGeneration, Blip2Processor

    torch.manual_seed(SEED)
    tok = t5_tokenizer()
    processor = Blip2Processor(image_processor=_blip_images(), tokenizer=tok, num_query_tokens=8)  # adds <image>
    cfg = Blip2Config(vision_config=_vision(), qformer_config=_qformer(), text_config=_t5(len(tok), tok),
                      num_query_tokens=8, image_token_index=tok.convert_tokens_to_ids("<image>"))
    model = Blip2ForConditionalGeneration(cfg)
    _widen(model)
    return _save(model, processor, out)


def build_instructblip(out: Path) -> Path:
    """InstructBLIP with a Vicuna (Llama) LM. The instruction goes to both the LM and the Q-Former
    (qformer_input_ids). Prompt: the plain instruction; the output echoes it. Left padding comes from
    LlamaTokenizer's class default, not from the tokenizer config: InstructBlipProcessor passes the LM
    tokenizer's configured kwargs (or a padding_side=... call argument) to the Q-Former tokenizer too,
    and a left-padded Q-Former text (absolute positions) changes a batched row's output."""
    from transformers import InstructBlipConfig, InstructBlipForConditionalGeneration, InstructBlipProcessor

    torch.manual_seed(SEED)
    tok, qtok = vicuna_tokenizer(), qformer_tokenizer()
    processor = InstructBlipProcessor(image_processor=_blip_images(), tokenizer=tok, qformer_tokenizer=qtok,
                                      num_query_tokens=8)  # adds <image>
    text = dict(model_type="llama", vocab_size=len(tok), hidden_size=TINY["hidden"], intermediate_size=TINY["ffn"],
                num_hidden_layers=TINY["layers"], num_attention_heads=TINY["heads"], max_position_embeddings=128,
                bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    cfg = InstructBlipConfig(vision_config=_vision(), qformer_config=_qformer(len(qtok)), text_config=text,
                             num_query_tokens=8, image_token_index=tok.convert_tokens_to_ids("<image>"))
    model = InstructBlipForConditionalGeneration(cfg)
    _widen(model)
    return _save(model, processor, out)


def git_tokenizer():
    """bert-base-uncased's layout: [CLS] is GIT's bos, [SEP] its eos."""
    from transformers import BertTokenizer

    vocab = wordpiece(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    return BertTokenizer(vocab=vocab, padding_side="left", model_max_length=64)


def build_git(out: Path) -> Path:
    """Caption: ``generate(pixel_values=...)`` alone. VQA: input_ids = [CLS] + question ids, no
    [SEP] (``processor(text=q, add_special_tokens=False)`` then prepend cls). Output echoes the prompt.
    As with the official (plain bert-base-uncased) tokenizer, the processor returns token_type_ids,
    which GitForCausalLM.generate rejects: drop them."""
    from transformers import GitConfig, GitForCausalLM, GitProcessor

    torch.manual_seed(SEED)
    tok = git_tokenizer()
    cfg = GitConfig(vision_config=_vision(), vocab_size=len(tok), hidden_size=TINY["hidden"],
                    intermediate_size=TINY["ffn"], num_hidden_layers=TINY["layers"], num_attention_heads=TINY["heads"],
                    max_position_embeddings=128, bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id,
                    pad_token_id=tok.pad_token_id)
    model = GitForCausalLM(cfg)
    _widen(model)
    return _save(model, GitProcessor(image_processor=_clip_images(), tokenizer=tok), out)


KOSMOS2_TAGS = ["</doc>", "<image>", "</image>", "</chunk>", "</line>", "<phrase>", "</phrase>", "<object>",
                "</object>", "</delimiter_of_multi_objects/>", "<grounding>"]


def kosmos2_tokenizer():
    """Kosmos-2's XLM-R sentencepiece layout: <s>=0 <pad>=1 </s>=2 <unk>=3 (ids 4..67 double as the 64
    image-placeholder ids), <mask> after the pieces, then the 11 tags and <patch_index_0000>..
    <patch_index_1023> as plain added tokens (lstrip), exactly as Kosmos2Processor adds them."""
    from transformers import XLMRobertaTokenizer

    pieces = unigram({"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}) + [("<mask>", 0.0)]
    tok = XLMRobertaTokenizer(vocab=pieces, padding_side="left", model_max_length=256)
    _special(tok, KOSMOS2_TAGS + [f"<patch_index_{i:04d}>" for i in range(1024)], special=False, lstrip=True)
    return tok


def build_kosmos2(out: Path) -> Path:
    """Prompt "<grounding>An image of" (or "<grounding><phrase> a cat</phrase>" to ground a phrase).
    Needs ``image_embeds_position_mask`` from the processor. 64 latent queries, as the official one
    (the processor's default num_image_tokens). Output echoes the whole prompt, image placeholders
    included: ``post_process_generation`` keeps only the text after "</image>". Batched generation of
    left-padded prompts drifts from one-by-one after the first token (with the cache, positions count
    the pads); ``use_cache=False`` or one prompt at a time gives the same tokens."""
    from transformers import Kosmos2Config, Kosmos2ForConditionalGeneration, Kosmos2Processor

    torch.manual_seed(SEED)
    tok = kosmos2_tokenizer()
    processor = Kosmos2Processor(image_processor=_clip_images(), tokenizer=tok)
    text = dict(vocab_size=len(tok), embed_dim=TINY["hidden"], ffn_dim=TINY["ffn"], layers=TINY["layers"],
                attention_heads=TINY["heads"], max_position_embeddings=256, pad_token_id=tok.pad_token_id,
                bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    model = Kosmos2ForConditionalGeneration(Kosmos2Config(text_config=text, vision_config=_vision(),
                                                          latent_query_num=64))
    _widen(model)  # at std 0.2 the image still rarely changes the tokens: the image path needs more
    _widen(model.vision_model, model.image_to_text_projection, std=0.5)
    return _save(model, processor, out)


FLORENCE2_TOKENS = (["<od>", "</od>", "<ocr>", "</ocr>"] + [f"<loc_{i}>" for i in range(1000)]
                    + ["<cap>", "</cap>", "<ncap>", "</ncap>", "<dcap>", "</dcap>", "<grounding>", "</grounding>",
                       "<seg>", "</seg>", "<sep>", "<region_cap>", "</region_cap>", "<region_to_desciption>",
                       "</region_to_desciption>", "<proposal>", "</proposal>", "<poly>", "</poly>", "<and>"])

# The official processor's parse rules (florence-community conversion); only the keys matter for
# parsing, plus the pronouns and articles phrase grounding drops.
FLORENCE2_POST = {
    "ocr": {"pattern": r"(.+?)<loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)>",
            "area_threshold": 0.0},
    "phrase_grounding": {"banned_grounding_tokens": [
        "it", "I", "me", "mine", "you", "your", "yours", "he", "him", "his", "she", "her", "hers", "they", "them",
        "their", "theirs", "one", "oneself", "we", "us", "our", "ours", "its", "myself", "yourself", "himself",
        "herself", "itself", "ourselves", "yourselves", "themselves", "this", "that", "these", "those", "who",
        "whom", "whose", "which", "what", "all", "another", "any", "anybody", "anyone", "anything", "each",
        "everybody", "everyone", "everything", "few", "many", "nobody", "none", "several", "some", "somebody",
        "someone", "something", "each other", "one another", "the image", "image", "images", "the", "a", "an",
        "a group", "other objects", "lots", "a set"]},
    "pure_text": {}, "description_with_bboxes": {}, "description_with_polygons": {}, "polygons": {}, "bboxes": {},
    "description_with_bboxes_or_polygons": {},
}


def florence2_tokenizer():
    """Florence-2's BART layout: <s>=0 <pad>=1 </s>=2 <unk>=3, <mask> ends the BPE vocabulary, then
    <od> </od> <ocr> </ocr> <loc_0>..<loc_999> <cap>..<and> as *special* tokens (so decode with
    skip_special_tokens=False to keep the boxes), and "<image>" last, exposed as tokenizer.image_token."""
    from transformers import BartTokenizer

    vocab, merges = bytelevel_bpe(["<s>", "<pad>", "</s>", "<unk>"])
    vocab = dict(vocab)
    for token in ["<mask>", *FLORENCE2_TOKENS, "<image>"]:  # in the vocabulary, so the ids follow this order
        vocab[token] = len(vocab)
    tok = BartTokenizer(vocab=vocab, merges=merges, extra_special_tokens={"image_token": "<image>"},
                        model_max_length=1024)
    _special(tok, FLORENCE2_TOKENS)
    return tok


def build_florence2(out: Path) -> Path:
    """Prompt = one task token ("<CAPTION>", "<OD>", "<CAPTION_TO_PHRASE_GROUNDING>a cat"): the
    processor rewrites it into the official question. Encoder-decoder: the output starts with
    "</s>" (the decoder start; a trained model then says "<s>") and does not echo the prompt."""
    from transformers import BartConfig, Florence2Config, Florence2ForConditionalGeneration, Florence2Processor

    torch.manual_seed(SEED)
    tok = florence2_tokenizer()
    # one DaViT stage, stride 4: a 32 px image gives 8x8 features, plus one pooled token
    vision = dict(depths=[1], patch_size=[7], patch_stride=[4], patch_padding=[3], patch_prenorm=[False],
                  embed_dim=[TINY["hidden"]], num_heads=[TINY["heads"]], num_groups=[TINY["heads"]], window_size=4,
                  projection_dim=TINY["hidden"], drop_path_rate=0.0)
    text = BartConfig(vocab_size=len(tok), d_model=TINY["hidden"], encoder_layers=TINY["layers"],
                      decoder_layers=TINY["layers"], encoder_attention_heads=TINY["heads"],
                      decoder_attention_heads=TINY["heads"], encoder_ffn_dim=TINY["ffn"], decoder_ffn_dim=TINY["ffn"],
                      max_position_embeddings=256, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id, decoder_start_token_id=tok.eos_token_id,
                      forced_eos_token_id=tok.eos_token_id)
    model = Florence2ForConditionalGeneration(
        Florence2Config(text_config=text, vision_config=vision, image_token_id=tok.image_token_id))
    _widen(model)
    images = _clip_images(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, do_center_crop=False,
                          image_seq_length=(IMAGE_SIZE // 4) ** 2 + 1,
                          image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
    processor = Florence2Processor(image_processor=images, tokenizer=tok, post_processor_config=FLORENCE2_POST)
    return _save(model, processor, out)


PALIGEMMA_TOKENS = [f"<loc{i:04d}>" for i in range(1024)] + [f"<seg{i:03d}>" for i in range(128)]


def paligemma_tokenizer():
    """PaliGemma's Gemma layout: <pad>=0 <eos>=1 <bos>=2 <unk>=3 <mask>=4, bytes, pieces, then
    <loc0000>..<loc1023> <seg000>..<seg127> (plain vocabulary pieces, as in the official sentencepiece
    model) and "<image>" last as a special added token. Left padding."""
    from transformers import GemmaTokenizer

    vocab, merges = metaspace_bpe(["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"], prepend="never")
    vocab = dict(vocab)
    for token in PALIGEMMA_TOKENS:
        vocab[token] = len(vocab)
    tok = GemmaTokenizer(vocab=vocab, merges=merges, padding_side="left", model_max_length=256)
    _special(tok, PALIGEMMA_TOKENS, special=False)  # whole tokens, never split by BPE
    _special(tok, ["<image>"])
    return tok


def build_paligemma(out: Path) -> Path:
    """Prompts "caption en", "answer en <q>", "detect <obj>", "segment <obj>". The processor puts
    <image>*16 + <bos> before the prompt and "\\n" after it. Output echoes the prompt (image tokens
    included: slice off input_ids.shape[1] before decoding). Detection answers as
    "<locY1><locX1><locY2><locX2> label" with bins of 1/1024 of the image side (y first)."""
    from transformers import (PaliGemmaConfig, PaliGemmaForConditionalGeneration, PaliGemmaProcessor,
                              SiglipImageProcessorPil)

    torch.manual_seed(SEED)
    tok = paligemma_tokenizer()
    seq = (IMAGE_SIZE // factory._vision_kwargs()["patch_size"]) ** 2
    images = SiglipImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, image_seq_length=seq)
    processor = PaliGemmaProcessor(image_processor=images, tokenizer=tok)
    text = dict(model_type="gemma", vocab_size=len(tok), hidden_size=TINY["hidden"], intermediate_size=TINY["ffn"],
                num_hidden_layers=TINY["layers"], num_attention_heads=TINY["heads"], num_key_value_heads=1, head_dim=16,
                max_position_embeddings=256, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                eos_token_id=tok.eos_token_id)
    vision = dict(model_type="siglip_vision_model", **_vision(), projection_dim=TINY["hidden"])
    cfg = PaliGemmaConfig(vision_config=vision, text_config=text, vocab_size=len(tok),
                          image_token_index=tok.convert_tokens_to_ids("<image>"),
                          projection_dim=TINY["hidden"], hidden_size=TINY["hidden"])
    model = PaliGemmaForConditionalGeneration(cfg)
    _widen(model)
    return _save(model, processor, out)


def build_all_prompted(root: Path) -> dict[str, Path]:
    """Every prompted family, laid out as ``root/<hub org>/<hub name>`` like a local mirror."""
    return {
        "blip2_opt": build_blip2_opt(root / "Salesforce" / "blip2-opt-2.7b"),
        "blip2_t5": build_blip2_t5(root / "Salesforce" / "blip2-flan-t5-xl"),
        "blip2_itm": build_blip2_itm(root / "Salesforce" / "blip2-itm-vit-g"),
        "instructblip": build_instructblip(root / "Salesforce" / "instructblip-vicuna-7b"),
        "git": build_git(root / "microsoft" / "git-base-coco"),
        "kosmos2": build_kosmos2(root / "microsoft" / "kosmos-2-patch14-224"),
        "florence2": build_florence2(root / "florence-community" / "Florence-2-base"),
        "paligemma": build_paligemma(root / "google" / "paligemma-3b-mix-224"),
    }
