"""Tiny random chat vision-language checkpoints, built offline and saved as real checkpoint folders.

Each ``build_<family>(out)`` writes config.json, model.safetensors, tokenizer files, the processor
config and the chat template, so ``AutoProcessor.from_pretrained(out)`` and the family's model class
load it exactly as they load the official checkpoint. Tokenizers are BPE models trained on
``factory.corpus()`` through the tokenizer class the official checkpoint names, with the family's
special tokens; token ids in the model config are read back from that tokenizer.

Qwen2-VL, Qwen2.5-VL and SmolVLM folders are written here without building their processors:
those require a video processor, which needs torchvision (and SmolVLM's also num2words), neither
installed with vlmzoo. Loading those folders with AutoProcessor needs them (NEEDS_TORCHVISION).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

import factory

SEED = 0
VOCAB = 600  # BPE target size; the corpus is small, so the trained vocab ends up smaller


def _text_kwargs(tok, **extra) -> dict:
    """A two-layer, 32-wide decoder; ``extra`` overrides or adds family fields."""
    return dict(dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                     num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                     bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id),
                **extra)


def _vision_kwargs() -> dict:
    return factory._vision_kwargs()  # 2 layers, 32 wide; 32 px images in 8 px patches: 16 patches


PATCH = _vision_kwargs()["patch_size"]


# -- tokenizers ------------------------------------------------------------------------------

def _train_bpe(pipeline, specials: list[str], *, split=None, byte_fallback: bool = False):
    """Vocab and merges of a BPE trained on the corpus behind ``pipeline``'s normalizer and
    pre-tokenizer (``split``, if given, replaces the pre-tokenizer for training only: a
    SentencePiece-style tokenizer sees a whole sentence as one word, yet its pieces should stop at
    spaces). ``specials`` get the first ids, in order."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    if pipeline.normalizer is not None:
        tok.normalizer = pipeline.normalizer
    tok.pre_tokenizer = split if split is not None else pipeline.pre_tokenizer
    alphabet = [] if byte_fallback else pre_tokenizers.ByteLevel.alphabet()
    tok.train_from_iterator(factory.corpus(), trainers.BpeTrainer(
        vocab_size=VOCAB, special_tokens=specials, initial_alphabet=alphabet, show_progress=False))
    model = json.loads(tok.to_str())["model"]
    vocab = dict(model["vocab"])
    if byte_fallback:  # sentencepiece-style byte pieces, so any character still encodes
        for b in range(256):
            vocab.setdefault(f"<0x{b:02X}>", len(vocab))
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return vocab, merges


def _special_kwargs(specials: list[str], kwargs: dict) -> dict:
    """Every special token not named in ``kwargs`` (bos_token=..., image_token=...) becomes an
    extra special token, so it is an added token that the pre-tokenizer never splits. Left padding
    is saved in tokenizer_config.json, as in the official decoder-only checkpoints."""
    named = {str(v) for k, v in kwargs.items() if k.endswith("_token") and v is not None}
    return dict(kwargs, extra_special_tokens=[s for s in specials if s not in named], padding_side="left")


def _bpe(cls, specials: list[str], *, split=None, byte_fallback: bool = False, **kwargs):
    """A corpus BPE wrapped in ``cls``, a tokenizer class that builds its own pipeline: it is
    trained behind that pipeline, because loading the saved folder rebuilds the tokenizer through
    ``cls`` from vocab and merges alone."""
    vocab, merges = _train_bpe(cls(**kwargs).backend_tokenizer, specials, split=split, byte_fallback=byte_fallback)
    tok = cls(vocab=vocab, merges=merges, **_special_kwargs(specials, kwargs))
    assert tok.pad_token_id is not None, "batched generation needs a pad token"
    return tok


LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                   "<|eot_id|>", "<|eom_id|>", "<|python_tag|>", "<|finetune_right_pad_id|>"]


def _llama3_tokenizer(extra: list[str], **kwargs):
    """Llama-3's byte-level BPE, saved as the official Llama-3 checkpoints are: a tokenizer.json
    whose post-processor prepends <|begin_of_text|>, loaded as PreTrainedTokenizerFast."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = LLAMA3_SPECIALS + extra
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    vocab, merges = _train_bpe(tok, specials)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    bos = "<|begin_of_text|>"
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, vocab[bos])])
    kwargs = dict(dict(bos_token=bos, eos_token="<|eot_id|>", pad_token="<|finetune_right_pad_id|>"), **kwargs)
    return PreTrainedTokenizerFast(tokenizer_object=tok, **_special_kwargs(specials, kwargs))


# -- shared steps ------------------------------------------------------------------------------

def _make_image_matter(*modules, std: float = 0.2) -> None:
    """Re-initialise every matrix of ``modules`` with a wider normal. Default init (std 0.02) in a
    32-wide model can leave the image's contribution far below the text's, so that greedy tokens
    ignore the image; each builder says which modules it widens and why, after checking that
    different images then give different tokens."""
    with torch.no_grad():
        for module in modules:
            for p in module.parameters():
                if p.dim() > 1:
                    p.normal_(0.0, std)


def _save(model, out: Path, eos_ids: list[int], processor=None) -> Path:
    """Save the model, with the chat's end-of-turn ids as eos in its generation config, and the
    processor (None: the caller wrote the processor files itself)."""
    text, gen = model.config.get_text_config(), model.generation_config
    gen.eos_token_id = eos_ids if len(eos_ids) > 1 else eos_ids[0]
    gen.pad_token_id, gen.bos_token_id = text.pad_token_id, text.bos_token_id
    model.eval().save_pretrained(out)
    if processor is not None:
        processor.save_pretrained(out)
    return out


def _write_processor(out: Path, processor_class: str, tok, chat_template: str, image_processor,
                     video_processor: dict, **processor_kwargs) -> None:
    """Write the files ``processor_class.save_pretrained`` writes, without building the processor.
    Qwen2-VL's and SmolVLM's processors require a video processor, and every video processor needs
    torchvision, which vlmzoo does not install: here the folder is still written, and loading it
    with AutoProcessor works wherever torchvision is installed. ``video_processor`` holds the
    fields that differ from the video processor class's defaults."""
    out.mkdir(parents=True, exist_ok=True)
    tok._set_processor_class(processor_class)
    tok.save_pretrained(out)
    (out / "chat_template.jinja").write_text(chat_template)
    config = dict(processor_kwargs, image_processor=image_processor.to_dict(), video_processor=video_processor,
                  processor_class=processor_class)
    (out / "processor_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


# -- chat templates (formats of the official ones) --------------------------------------------

# llava-hf/llava-1.5-*: "USER: <image>\n<text> ASSISTANT:"; images before text in each turn.
LLAVA_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] != 'system' %}{{ message['role'].upper() + ': ' }}{% endif %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] + ' ' }}{% endfor %}"
    "{% else %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{% generation %}{{ content['text'] + ' ' }}{% endgeneration %}{% endfor %}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)

# llava-hf/llava-v1.6-mistral-7b-hf: "[INST] <image>\n<text> [/INST]"; no generation prompt of its own.
LLAVA_MISTRAL_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ '<<SYS>>\n' + message['content'][0]['text'] + '\n<</SYS>>\n\n' }}"
    "{% elif message['role'] == 'user' %}{{ '[INST] ' }}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] }}{% endfor %}"
    "{{ ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' ' + message['content'][0]['text'] + '</s> ' }}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}"
    "{% endfor %}"
)

# Qwen/Qwen2-VL-*-Instruct and Qwen2.5-VL: ChatML with a default system turn.
QWEN_VL_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# HuggingFaceM4/Idefics3-8B-Llama3 (prefix <|begin_of_text|>) and SmolVLM (prefix <|im_start|>).
_IDEFICS_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] | capitalize }}"
    "{% if message['content'][0]['type'] == 'image' %}{{ ':' }}{% else %}{{ ': ' }}{% endif %}"
    "{% for line in message['content'] %}"
    "{% if line['type'] == 'text' %}{{ line['text'] }}{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}"
    "{% endfor %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
IDEFICS3_TEMPLATE = "<|begin_of_text|>" + _IDEFICS_TEMPLATE
SMOLVLM_TEMPLATE = "<|im_start|>" + _IDEFICS_TEMPLATE

# google/gemma-3-*-it: a system turn is folded into the first user turn; the assistant is "model".
GEMMA3_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- if messages[0]['content'] is string -%}{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}"
    "{%- else -%}{%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}{%- endif -%}"
    "{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}{%- set first_user_prefix = '' -%}{%- set loop_messages = messages -%}{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{%- endif -%}"
    "{%- if message['role'] == 'assistant' -%}{%- set role = 'model' -%}{%- else -%}{%- set role = message['role'] -%}{%- endif -%}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') }}"
    "{%- if message['content'] is string -%}{{ message['content'] | trim }}"
    "{%- elif message['content'] is iterable -%}"
    "{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' -%}{{ '<start_of_image>' }}"
    "{%- elif item['type'] == 'text' -%}{{ item['text'] | trim }}{%- endif -%}"
    "{%- endfor -%}"
    "{%- else -%}{{ raise_exception('Invalid content type') }}{%- endif -%}"
    "{{ '<end_of_turn>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)

# meta-llama/Llama-3.2-11B-Vision-Instruct, without the tool-calling branches: a dated system
# turn only when there is no image; images and a system message together are refused.
MLLAMA_TEMPLATE = (
    "{{- bos_token }}"
    "{%- if not date_string is defined %}{%- set date_string = '26 Jul 2024' %}{%- endif %}"
    "{%- if messages[0]['role'] == 'system' %}"
    "{%- if messages[0]['content'] is string %}{%- set system_message = messages[0]['content'] | trim %}"
    "{%- else %}{%- set system_message = messages[0]['content'][0]['text'] | trim %}{%- endif %}"
    "{%- set messages = messages[1:] %}"
    "{%- else %}{%- set system_message = '' %}{%- endif %}"
    "{%- set image_ns = namespace(has_images=false) %}"
    "{%- for message in messages %}{%- if message['content'] is not string %}"
    "{%- for content in message['content'] %}{%- if content['type'] == 'image' %}{%- set image_ns.has_images = true %}{%- endif %}{%- endfor %}"
    "{%- endif %}{%- endfor %}"
    "{%- if image_ns.has_images and not system_message == '' %}"
    "{{- raise_exception('Prompting with images is incompatible with system messages.') }}{%- endif %}"
    "{%- if not image_ns.has_images %}"
    "{{- '<|start_header_id|>system<|end_header_id|>\n\n' }}"
    "{{- 'Cutting Knowledge Date: December 2023\n' }}{{- 'Today Date: ' + date_string + '\n\n' }}"
    "{{- system_message }}{{- '<|eot_id|>' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' }}"
    "{%- if message['content'] is string %}{{- message['content'] }}"
    "{%- else %}{%- for content in message['content'] %}"
    "{%- if content['type'] == 'image' %}{{- '<|image|>' }}{%- elif content['type'] == 'text' %}{{- content['text'] }}{%- endif %}"
    "{%- endfor %}{%- endif %}"
    "{{- '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{%- endif %}"
)


# -- LLaVA (1.5 and NeXT) --------------------------------------------------------------------

def _llama2_tokenizer(extra: list[str], pad: str):
    """Llama-2 / Mistral SentencePiece-style BPE (Metaspace, byte fallback) as LlamaTokenizer,
    with ``extra`` tokens (``<image>``, ``<pad>``) as llava-hf adds them."""
    from tokenizers import pre_tokenizers
    from transformers import LlamaTokenizer

    split = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True)
    return _bpe(LlamaTokenizer, ["<unk>", "<s>", "</s>", *extra], split=split, byte_fallback=True,
                unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token=pad, add_bos_token=True)


def build_llava(out: Path) -> Path:
    """LLaVA-1.5 layout: CLIP vision tower, 2-layer MLP projector, Llama text model."""
    from transformers import CLIPImageProcessorPil, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    torch.manual_seed(SEED)
    tok = _llama2_tokenizer(["<image>", "<pad>"], pad="<pad>")
    patches = (factory.IMAGE_SIZE // PATCH) ** 2
    cfg = LlavaConfig(
        vision_config=dict(model_type="clip_vision_model", **_vision_kwargs()),
        text_config=dict(model_type="llama", **_text_kwargs(tok)),
        image_token_index=tok.convert_tokens_to_ids("<image>"), image_seq_length=patches,
        vision_feature_select_strategy="default", vision_feature_layer=-2, pad_token_id=tok.pad_token_id,
    )
    model = LlavaForConditionalGeneration(cfg)  # default init already lets the image steer the tokens
    images = CLIPImageProcessorPil(size={"shortest_edge": factory.IMAGE_SIZE},
                                   crop_size={"height": factory.IMAGE_SIZE, "width": factory.IMAGE_SIZE})
    # num_additional_image_tokens=1 is CLIP's CLS token, dropped again by the "default" strategy.
    processor = LlavaProcessor(image_processor=images, tokenizer=tok, patch_size=cfg.vision_config.patch_size,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1,
                               chat_template=LLAVA_TEMPLATE)
    return _save(model, out, [tok.eos_token_id], processor)


# The official grid of tile layouts, with 336 px tiles scaled to 32 px.
LLAVA_NEXT_PINPOINTS = [[32, 64], [64, 32], [64, 64], [96, 32], [32, 96]]


def build_llava_next(out: Path) -> Path:
    """LLaVA-NeXT (v1.6, Mistral text model): any-resolution tiles of 32 px from a small grid."""
    from transformers import (LlavaNextConfig, LlavaNextForConditionalGeneration, LlavaNextImageProcessorPil,
                              LlavaNextProcessor)

    torch.manual_seed(SEED)
    tok = _llama2_tokenizer(["<image>"], pad="<unk>")  # llava-v1.6-mistral pads with <unk>
    size = factory.IMAGE_SIZE
    cfg = LlavaNextConfig(
        vision_config=dict(model_type="clip_vision_model", **_vision_kwargs()),
        text_config=dict(model_type="mistral", sliding_window=None, **_text_kwargs(tok)),
        image_token_index=tok.convert_tokens_to_ids("<image>"), image_grid_pinpoints=LLAVA_NEXT_PINPOINTS,
        image_seq_length=(size // PATCH) ** 2,
        vision_feature_select_strategy="default", vision_feature_layer=-2, pad_token_id=tok.pad_token_id,
    )
    model = LlavaNextForConditionalGeneration(cfg)
    images = LlavaNextImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size},
                                        image_grid_pinpoints=LLAVA_NEXT_PINPOINTS)
    processor = LlavaNextProcessor(image_processor=images, tokenizer=tok, patch_size=cfg.vision_config.patch_size,
                                   vision_feature_select_strategy="default", num_additional_image_tokens=1,
                                   chat_template=LLAVA_MISTRAL_TEMPLATE)
    return _save(model, out, [tok.eos_token_id], processor)


# -- Qwen2-VL and Qwen2.5-VL -----------------------------------------------------------------

QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
                 "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
                 "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"]

# 28 px (14 px patches, 2x2 merge) per image token: images become 2x2 to 3x3 tokens.
QWEN_MIN_PIXELS = 56 * 56
QWEN_MAX_PIXELS = 84 * 84


def _qwen_tokenizer():
    """Qwen2's byte-level BPE as Qwen2Tokenizer; the Instruct checkpoints end turns with <|im_end|>
    and pad with <|endoftext|>, and have no bos or unk token."""
    from transformers import Qwen2Tokenizer

    return _bpe(Qwen2Tokenizer, QWEN_SPECIALS, unk_token=None, bos_token=None, eos_token="<|im_end|>",
                pad_token="<|endoftext|>")


def _qwen_vl(out: Path, config_cls, model_cls, processor_class: str, vision: dict) -> Path:
    from transformers import Qwen2VLImageProcessorPil

    torch.manual_seed(SEED)
    tok = _qwen_tokenizer()
    ids = tok.convert_tokens_to_ids
    # Multimodal RoPE: the 3 sections (time, height, width) split the 8 rotary frequencies of 16-wide heads.
    text = _text_kwargs(tok, bos_token_id=ids("<|endoftext|>"),
                        rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]})
    cfg = config_cls(
        text_config=text, vision_config=vision,
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
    )
    model = model_cls(cfg)
    # At std 0.02 the tokens ignore the image; widening the merger alone is not enough (the text
    # model's attention moves little context to the last position), so every matrix is widened.
    _make_image_matter(model)
    images = Qwen2VLImageProcessorPil(min_pixels=QWEN_MIN_PIXELS, max_pixels=QWEN_MAX_PIXELS,
                                      patch_size=vision["patch_size"], merge_size=vision["spatial_merge_size"],
                                      temporal_patch_size=vision["temporal_patch_size"])
    video = {k: images.to_dict()[k] for k in ("size", "patch_size", "merge_size", "temporal_patch_size")}
    video["video_processor_type"] = "Qwen2VLVideoProcessor"
    _write_processor(out, processor_class, tok, QWEN_VL_TEMPLATE, images, video)
    return _save(model, out, [ids("<|im_end|>"), ids("<|endoftext|>")])


_QWEN_PATCHES = dict(patch_size=14, spatial_merge_size=2, temporal_patch_size=2)


def build_qwen2_vl(out: Path) -> Path:
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    vision = dict(depth=2, embed_dim=32, hidden_size=32, mlp_ratio=2, num_heads=2, **_QWEN_PATCHES)
    return _qwen_vl(out, Qwen2VLConfig, Qwen2VLForConditionalGeneration, "Qwen2VLProcessor", vision)


def build_qwen2_5_vl(out: Path) -> Path:
    """Qwen2.5-VL: windowed vision attention (window = 2x2 merged tokens), last block full."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=32,
                  window_size=56, fullatt_block_indexes=[1], **_QWEN_PATCHES)
    # Its processor, like the official one, still names Qwen2VLImageProcessor and Qwen2VLVideoProcessor.
    return _qwen_vl(out, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, "Qwen2_5_VLProcessor", vision)


# -- Idefics3 and SmolVLM --------------------------------------------------------------------

# Image-splitting tokens: <row_i_col_j> name a tile, <global-img> the downscaled whole image.
IDEFICS_SPECIALS = (["<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>"]
                    + [f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)])
IDEFICS_SCALE = 2  # pixel shuffle: 2x2 patch features become one token
IDEFICS_TILE = factory.IMAGE_SIZE  # one tile is one vision-encoder image


def _idefics_config_kwargs(tok) -> dict:
    vision = dict(_vision_kwargs(), image_size=IDEFICS_TILE)
    return dict(vision_config=vision, text_config=dict(model_type="llama", **_text_kwargs(tok)),
                scale_factor=IDEFICS_SCALE, image_token_id=tok.convert_tokens_to_ids("<image>"),
                pad_token_id=tok.pad_token_id)


def _idefics_image_kwargs() -> dict:
    # Images are resized to at most 2x2 tiles, split into tiles of IDEFICS_TILE plus a global view;
    # do_image_splitting=False (init or call kwarg) gives one tile per image.
    return dict(size={"longest_edge": 2 * IDEFICS_TILE}, max_image_size={"longest_edge": IDEFICS_TILE},
                do_image_splitting=True)


def _image_seq_len() -> int:
    return (IDEFICS_TILE // PATCH) ** 2 // IDEFICS_SCALE ** 2


def build_idefics3(out: Path) -> Path:
    """Idefics3 (Llama-3 text model, SigLIP-style vision encoder, pixel-shuffle connector)."""
    from transformers import (Idefics3Config, Idefics3ForConditionalGeneration, Idefics3ImageProcessorPil,
                              Idefics3Processor)

    torch.manual_seed(SEED)
    tok = _llama3_tokenizer(IDEFICS_SPECIALS, eos_token="<end_of_utterance>")
    model = Idefics3ForConditionalGeneration(Idefics3Config(**_idefics_config_kwargs(tok)))
    processor = Idefics3Processor(image_processor=Idefics3ImageProcessorPil(**_idefics_image_kwargs()),
                                  tokenizer=tok, image_seq_len=_image_seq_len(), chat_template=IDEFICS3_TEMPLATE)
    ids = tok.convert_tokens_to_ids
    return _save(model, out, [ids("<end_of_utterance>"), ids("<|end_of_text|>")], processor)


def build_smolvlm(out: Path) -> Path:
    """SmolVLM (Idefics3 layout, GPT-2-style tokenizer with ChatML turns).

    Loading its processor needs num2words and, for the video processor, torchvision: neither
    comes with vlmzoo, so the processor files are written without building the processor."""
    from transformers import GPT2Tokenizer, SmolVLMConfig, SmolVLMForConditionalGeneration, SmolVLMImageProcessorPil

    torch.manual_seed(SEED)
    tok = _bpe(GPT2Tokenizer, ["<|endoftext|>", "<|im_start|>", "<|im_end|>", *IDEFICS_SPECIALS],
               unk_token="<|endoftext|>", bos_token="<|im_start|>", eos_token="<end_of_utterance>",
               pad_token="<|im_end|>", fake_image_token="<fake_token_around_image>", image_token="<image>",
               end_of_utterance_token="<end_of_utterance>", global_image_token="<global-img>")
    model = SmolVLMForConditionalGeneration(SmolVLMConfig(**_idefics_config_kwargs(tok)))
    images = SmolVLMImageProcessorPil(**_idefics_image_kwargs())
    video = dict(video_processor_type="SmolVLMVideoProcessor", size=images.to_dict()["size"],
                 max_image_size=images.to_dict()["max_image_size"])
    _write_processor(out, "SmolVLMProcessor", tok, SMOLVLM_TEMPLATE, images, video, image_seq_len=_image_seq_len())
    return _save(model, out, [tok.eos_token_id])


# -- Gemma 3 ---------------------------------------------------------------------------------

GEMMA3_SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<start_of_turn>", "<end_of_turn>",
                   "<start_of_image>", "<end_of_image>", "<image_soft_token>"]
GEMMA3_IMAGE_SIZE = 64  # 8x8 patches, average-pooled 2x2 into 4x4 soft tokens (official: 64x64 into 16x16)
GEMMA3_IMAGE_TOKENS = 16


def build_gemma3(out: Path) -> Path:
    """Gemma 3 (SigLIP vision tower, pooled to a fixed number of soft tokens per image)."""
    from tokenizers import pre_tokenizers
    from transformers import (Gemma3Config, Gemma3ForConditionalGeneration, Gemma3ImageProcessorPil,
                              Gemma3Processor, GemmaTokenizer)

    torch.manual_seed(SEED)
    split = pre_tokenizers.Split("▁", behavior="merged_with_next")
    tok = _bpe(GemmaTokenizer, GEMMA3_SPECIALS, split=split, byte_fallback=True, add_bos_token=True,
               unk_token="<unk>", bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", mask_token="<mask>",
               boi_token="<start_of_image>", eoi_token="<end_of_image>", image_token="<image_soft_token>")
    ids = tok.convert_tokens_to_ids
    size = GEMMA3_IMAGE_SIZE
    # One sliding-window layer and one global layer, like the official 5:1 interleaving.
    text = _text_kwargs(tok, head_dim=16, query_pre_attn_scalar=16, sliding_window=128,
                        layer_types=["sliding_attention", "full_attention"])
    cfg = Gemma3Config(
        text_config=text, vision_config=dict(_vision_kwargs(), model_type="siglip_vision_model", image_size=size),
        mm_tokens_per_image=GEMMA3_IMAGE_TOKENS, boi_token_index=ids("<start_of_image>"),
        eoi_token_index=ids("<end_of_image>"), image_token_index=ids("<image_soft_token>"),
    )
    model = Gemma3ForConditionalGeneration(cfg)
    # The projector's weight starts at zero: every image would be the same blank.
    _make_image_matter(model.model.multi_modal_projector)
    images = Gemma3ImageProcessorPil(size={"height": size, "width": size}, do_pan_and_scan=False)
    processor = Gemma3Processor(image_processor=images, tokenizer=tok, image_seq_length=GEMMA3_IMAGE_TOKENS,
                                chat_template=GEMMA3_TEMPLATE)
    return _save(model, out, [tok.eos_token_id, ids("<end_of_turn>")], processor)


# -- Mllama (Llama 3.2 Vision) ---------------------------------------------------------------

def build_mllama(out: Path) -> Path:
    """Llama-3.2-Vision: tiled vision encoder; its features enter the text model only through
    cross-attention layers (here layer 1 of 2), not as tokens."""
    from transformers import MllamaConfig, MllamaForConditionalGeneration, MllamaImageProcessorPil, MllamaProcessor

    torch.manual_seed(SEED)
    tok = _llama3_tokenizer(["<|image|>"])
    size = factory.IMAGE_SIZE
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_global_layers=1,
                  attention_heads=2, image_size=size, patch_size=PATCH, max_num_tiles=4,
                  intermediate_layers_indices=[0], vision_output_dim=64)  # 32 wide x (last + 1 intermediate)
    text = _text_kwargs(tok, cross_attention_layers=[1])
    cfg = MllamaConfig(vision_config=vision, text_config=text, image_token_index=tok.convert_tokens_to_ids("<|image|>"))
    model = MllamaForConditionalGeneration(cfg)
    # The cross-attention gates start at zero (tanh(0) = 0): the image would change nothing. Open
    # them, and widen the projector so that the image, not only its presence, steers the tokens.
    with torch.no_grad():
        for layer in model.model.language_model.layers:
            if hasattr(layer, "cross_attn_attn_gate"):
                layer.cross_attn_attn_gate.fill_(1.0)
                layer.cross_attn_mlp_gate.fill_(1.0)
    _make_image_matter(model.model.multi_modal_projector)
    images = MllamaImageProcessorPil(size={"height": size, "width": size}, max_image_tiles=4)
    processor = MllamaProcessor(image_processor=images, tokenizer=tok, chat_template=MLLAMA_TEMPLATE)
    ids = tok.convert_tokens_to_ids
    return _save(model, out, [ids("<|end_of_text|>"), ids("<|eom_id|>"), ids("<|eot_id|>")], processor)


# -- all of them -----------------------------------------------------------------------------

CHAT_BUILDERS = {
    "llava": (build_llava, "llava-hf/llava-1.5-7b-hf"),
    "llava_next": (build_llava_next, "llava-hf/llava-v1.6-mistral-7b-hf"),
    "qwen2_vl": (build_qwen2_vl, "Qwen/Qwen2-VL-2B-Instruct"),
    "qwen2_5_vl": (build_qwen2_5_vl, "Qwen/Qwen2.5-VL-3B-Instruct"),
    "idefics3": (build_idefics3, "HuggingFaceM4/Idefics3-8B-Llama3"),
    "smolvlm": (build_smolvlm, "HuggingFaceTB/SmolVLM-256M-Instruct"),
    "gemma3": (build_gemma3, "google/gemma-3-4b-it"),
    "mllama": (build_mllama, "meta-llama/Llama-3.2-11B-Vision-Instruct"),
}


NEEDS_TORCHVISION = {"qwen2_vl", "qwen2_5_vl", "smolvlm"}  # for AutoProcessor.from_pretrained


def build_all_chat(root: Path) -> dict[str, Path]:
    """Every tiny chat checkpoint, laid out as ``root/<hub org>/<hub name>`` like a local mirror."""
    return {name: build(root / repo) for name, (build, repo) in CHAT_BUILDERS.items()}
