"""MiniGPT-4 (Vicuna V0, Llama 2) and MiniGPT-v2, implemented in vlmzoo, held to the official code.

tests/data/minigpt4/ holds, per released architecture, a tiny random checkpoint in the official
file layout (eva_vit_g.pth, blip2_pretrained_flant5xxl.pth for the Vicuna version, the MiniGPT
checkpoint, the LLM folder) and the official implementation's outputs on fixed inputs (its
README says from where and how). vlmzoo loads each folder through ``vlmzoo.load`` (the pickles
read with weights_only=True, converted once to safetensors) and must reproduce them: pixels
bit-exact, every stage of the image path within 1e-5, prompt token ids exactly, first logits
within 1e-4, greedy answers exactly (questions, chats, MiniGPT-v2's tasks, its batched
evaluation path). The full-size checks map every tensor of every released file onto vlmzoo's
modules built at full size on the meta device, and a transformers-format BLIP-2 folder stands in
for the two LAVIS files with identical image embeddings.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from pickles import with_payload
from PIL import Image

import vlmzoo
from vlmzoo import catalog
from vlmzoo.engine.generation import GenerationOptions
from vlmzoo.errors import InputError, UnknownModelError
from vlmzoo.families.checkpoints import Ignore, Split, plan, route
from vlmzoo.families.minigpt4 import convert, processing
from vlmzoo.tasks import AskRequest, ImagePart, Message, parse_messages

DATA = Path(__file__).parent / "data" / "minigpt4"
IMAGES = Path(__file__).parent / "data" / "moondream2" / "images"
VARIANTS = ["minigpt4_vicuna", "minigpt4_llama2", "minigptv2"]
TOL = 1e-4
CHAT_PENALTY = 1.05  # Chat.answer's default: the reference chats ran greedy with it


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """vlmzoo's cache (where the pickles are converted) in a folder of this module's own."""
    with pytest.MonkeyPatch.context() as patch:
        folder = tmp_path_factory.mktemp("cache")
        patch.setenv("XDG_CACHE_HOME", str(folder))
        yield folder


@pytest.fixture(scope="module")
def models(cache):
    return {v: vlmzoo.load(DATA / v / "checkpoint", dtype="float32") for v in VARIANTS}


@pytest.fixture(scope="module")
def references() -> dict:
    return {v: json.loads((DATA / v / "reference.json").read_text(encoding="utf-8")) for v in VARIANTS}


def _image(name: str) -> Image.Image:
    return Image.open(IMAGES / name).convert("RGB")


def _turns(reference):
    """(image, turn name, messages, turn) for every chat turn of a reference, as the official
    Chat held them: one image uploaded, then questions and the answers given."""
    for name, r in reference["images"].items():
        first = None
        for key, turn in r.items():
            if not (isinstance(turn, dict) and "context" in turn):
                continue
            if key == "multi_turn":
                messages = first + [{"role": "assistant", "content": r["question"]["answer"]},
                                    {"role": "user", "content": turn["user_text"]}]
            else:
                messages = [{"role": "user", "content": [{"type": "image", "image": _image(name)},
                                                         {"type": "text", "text": turn["user_text"]}]}]
                first = first or messages
            yield name, key, messages, turn


def _prompt(model, messages) -> str:
    return model.prompt(AskRequest(tuple(parse_messages(messages))))


# -- inputs --------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_pixels_are_bit_exact(models, references, variant):
    model, ref = models[variant], references[variant]
    assert model.processor.image_size == ref["vis_processor"]["image_size"]
    for name, r in ref["images"].items():
        pixels = processing.to_pixels(_image(name), model.processor.image_size)
        assert list(pixels.shape) == r["pixels"]["shape"]
        assert hashlib.sha256(pixels.tobytes()).hexdigest() == r["pixels"]["sha256"], name
    if variant == "minigptv2":  # the 224 px positions interpolated to 448 at load, as the official load does
        table = model.model.visual_encoder.embeddings.position_embedding.detach().numpy().astype(np.float32)
        want = ref["pos_embed_interpolation"]
        assert list(table.shape) == want["model_shape"]
        assert hashlib.sha256(table.tobytes()).hexdigest() == want["model_pos_embed_sha256"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_prompts_and_token_ids_equal_the_official(models, references, variant):
    model, ref = models[variant], references[variant]
    conversation = ref["conversation_template"]
    assert model.variant.conversation.system == conversation["system"]
    assert list(model.variant.conversation.roles) == conversation["roles"]
    for name, key, messages, turn in _turns(ref):
        context = turn["context"]
        prompt = _prompt(model, messages)
        assert prompt == context["prompt"], (name, key)
        inputs = model.processor([prompt], [[_image(name)]])
        ids = inputs["input_ids"][0].tolist()
        (text0, image, text1) = context["layout"]
        positions = inputs["image_positions"][0, 0].tolist()
        assert positions == list(range(image["start"], image["start"] + image["length"])), (name, key)
        assert ids[: text0["length"]] == context["segments"][0]["ids"], (name, key)  # with the BOS
        assert ids[text1["start"]:] == context["segments"][1]["ids"], (name, key)
        assert len(ids) == text1["start"] + text1["length"]
    first = context["segments"][0]["ids"]
    if variant != "minigpt4_vicuna":  # the literal <s> of the Llama-2 templates is one more BOS
        assert first.count(1) == 2 and (first[:2] == [1, 1]) == (variant == "minigptv2")


# -- the image path ------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_stage_of_the_image_path_equals_the_official(models, references, variant):
    """transformers' Blip2VisionModel as EVA ViT-g, its post_layernorm as ln_vision, Blip2QFormerModel
    as the query-only Q-Former, the 4-token merge and llama_proj: sums of each stage within the
    elementwise tolerance, the projected embeddings elementwise."""
    model, ref = models[variant], references[variant]
    for name, r in ref["images"].items():
        pixels = torch.from_numpy(processing.to_pixels(_image(name), model.processor.image_size))[None]
        with torch.inference_mode():
            stages = model.model.vision_stages(pixels)
        want = [k for k in ("visual_encoder", "ln_vision", "qformer", "image_embeds") if k in r]
        assert sorted(want) == sorted(stages), name
        for stage in want:
            got = stages[stage].double()
            assert list(got.shape) == r[stage]["shape"], (name, stage)
            bound = 1e-5 * got.numel()
            assert abs(float(got.sum()) - r[stage]["sum"]) < bound, (name, stage)
            assert abs(float(got.abs().sum()) - r[stage]["abs_sum"]) < bound, (name, stage)
        if "image_embeds_file" in r:
            np.testing.assert_allclose(stages["image_embeds"][0].numpy(), np.load(DATA / variant / r["image_embeds_file"]),
                                       atol=1e-5, rtol=0, err_msg=name)


# -- generation ----------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_first_logits_tokens_and_chat_answers_equal_the_official(models, references, variant):
    """Every reference turn (MiniGPT-4: a question per image and a second round; MiniGPT-v2: each
    task token): the first step's logits, the greedy tokens under the official repetition penalty
    (over the answer's tokens and a BOS) and the answer they make, exactly; through ``ask`` (the
    stops, the lean loop's absence, the clean-up) for every second round and two images' turns."""
    model, ref = models[variant], references[variant]
    for name, key, messages, turn in _turns(ref):
        inputs = model.processor([_prompt(model, messages)], [[_image(name)]])
        with torch.inference_mode():
            out = model.model.generate(**inputs, max_new_tokens=len(turn["new_tokens"]), do_sample=False,
                                       repetition_penalty=CHAT_PENALTY, output_logits=True, return_dict_in_generate=True)
        np.testing.assert_allclose(out.logits[0][0].numpy(), np.array(turn["first_logits"], np.float32), atol=TOL, rtol=0,
                                   err_msg=f"{name} {key}")
        tokens = out.sequences[0, inputs["input_ids"].shape[1]:].tolist()
        assert tokens == turn["new_tokens"], (name, key)
        assert model.clean(model.decode(tokens)) == turn["answer"], (name, key)
        if key != "multi_turn" and name not in ("coffee.png", "rocket.png"):
            continue
        answer = model.ask(messages=messages, max_new_tokens=24, repetition_penalty=CHAT_PENALTY)
        assert answer.text == turn["answer"], (name, key)
        if "###" in turn["decoded_skip_special"]:  # MiniGPT-4 stops at the text ### (the official at its tokens)
            assert answer.finish_reason == "stop" and answer.num_tokens <= len(turn["new_tokens"]), (name, key)
        else:
            assert answer.num_tokens == len(turn["new_tokens"]), (name, key)


def _in_one_batch(model, images, questions, **gen):
    """``ask`` with all the questions in one batch."""
    model.batch_size = len(questions)
    try:
        return model.ask(images, questions, **gen)
    finally:
        model.batch_size = model.default_batch_size


def test_minigptv2_evaluation_batch_equals_the_official(models, references):
    """eval_scripts' MiniGPTBase.generate: greedy, no repetition penalty (vlmzoo's default), two
    prompts left-padded in one batch: logits, answers, and each equal to its answer alone."""
    model, ev = models["minigptv2"], references["minigptv2"]["eval_generate"]
    images = [_image(n) for n in ev["images"]]
    prompts = [model.prompt(AskRequest((Message("user", (ImagePart(None), q)),))) for q in ev["questions"]]
    assert prompts == ev["texts"]
    inputs = model.processor(prompts, [[im] for im in images])
    assert (inputs["attention_mask"].shape[1] - inputs["attention_mask"].sum(1)).tolist() == ev["left_padding"]
    with torch.inference_mode():
        logits = model.model(**inputs).logits[:, -1]
    for row, want in zip(logits, ev["rows"]):
        np.testing.assert_allclose(row.numpy(), np.array(want["first_logits"], np.float32), atol=TOL, rtol=0)
    assert model._lean_decoder(GenerationOptions()) is not None  # the lean decode loop serves it
    together = _in_one_batch(model, images, ev["questions"], max_new_tokens=24)
    alone = [model.ask(im, q, max_new_tokens=24) for im, q in zip(images, ev["questions"])]
    assert [a.text for a in together] == [a.text for a in alone] == [r["answer"] for r in ev["rows"]]
    assert [a.num_tokens for a in together] == [len(r["new_tokens"]) for r in ev["rows"]]


def test_minigpt4_batches_streams_and_captions(models):
    model = models["minigpt4_vicuna"]
    images, questions = [_image("small.png"), _image("astronaut.png")], ["What is it?", "Describe it."]
    alone = [model.ask(im, q, max_new_tokens=8).text for im, q in zip(images, questions)]
    assert [a.text for a in _in_one_batch(model, images, questions, max_new_tokens=8)] == alone
    stream = model.ask(images[0], questions[0], max_new_tokens=8, stream=True)
    assert "".join(stream) == alone[0] == stream.result.text
    caption = model.caption(images[1], max_new_tokens=6)
    assert caption.text == model.ask(images[1], processing.CAPTION, max_new_tokens=6).text
    assert model._lean_decoder(GenerationOptions()) is not None
    with pytest.raises(InputError, match="image slot"):
        model.ask(images[0], "What is <ImageHere>?", max_new_tokens=2)
    with pytest.raises(InputError, match="at most 1 image"):
        model.ask([images[0], images[1]], "Which one?", max_new_tokens=2)


@pytest.mark.parametrize("variant", VARIANTS)
def test_answer_clean_up_equals_the_official(models, references, variant):
    """Chat.answer's decode and clean-up on fixed token sequences; for MiniGPT-v2 also
    MiniGPTBase.generate's (the evaluation scripts')."""
    model, ref = models[variant], references[variant]
    for case in ref["answer_postprocessing"]:
        assert processing.chat_answer(model.decode(case["ids"])) == case["answer"], case["label"]
        assert model.clean(model.decode(case["ids"])) == case["answer"], case["label"]
    for case in ref.get("eval_generate_postprocessing", []):
        assert processing.eval_answer(model.decode(case["ids"])) == case["answer"], case["label"]
    for name, key, _, turn in _turns(ref):  # the decode itself: sentencepiece's, as the official slow tokenizer
        assert model.decode(turn["output"]) == turn["decoded_skip_special"], (name, key)


def test_minigptv2_boxes_become_pixels_of_the_original_image(models, references):
    """{<x1><y1><x2><y2>} in 0-100 bins -> pixels: the bins demo_v2.py draws and eval_ref.py
    scores, then bin / 100 of the original side, ordered and clamped."""
    model, ref = models["minigptv2"], references["minigptv2"]
    boxes = ref["box_parsing"]
    width, height = boxes["width"], boxes["height"]
    rw, rh = boxes["visualize_all_bbox_together"][0]["resized_size"]
    for row in boxes["visualize_all_bbox_together"]:
        text = row["generation"]
        bins = processing.box_bins(text)
        if row["extract_substrings"]:  # demo_v2's grounding mode: the same boxes, in order
            drawn = [[int(v / 100 * s) for v, s in zip(b, (rw, rh, rw, rh))] for _, b in bins]
            assert drawn == row["rectangles_on_resized"], text
        if row["eval_ref"]["accepted"]:  # eval_ref.py's box: the first one
            x0, y0, x1, y1 = bins[0][1]
            assert [x0 / 100 * width, y0 / 100 * height, x1 / 100 * width, y1 / 100 * height] == row["eval_ref"]["box_pixels"]
        parsed = processing.parse_boxes(text, (width, height), default_label="cup")
        assert len(parsed) == len(bins)
        for box, (label, b) in zip(parsed, bins):
            fx = [min(max(v / 100, 0.0), 1.0) for v in b]
            assert (box.x0, box.y0, box.x1, box.y1) == (fx[0] * width, fx[1] * height, fx[2] * width, fx[3] * height)
            assert box.label == (label or "cup")
    assert processing.box_bins("<p>cup</p> {<1><2><3><4>}<delim>{<50><60><70><80>}") == [
        ("cup", (1, 2, 3, 4)), ("cup", (50, 60, 70, 80))]
    assert processing.box_bins("the cup is at 10 20 30 40") == []  # no box syntax, no box
    box = next(c for c in ref["answer_postprocessing"] if c["label"] == "box")  # decoded from the official ids
    (one,) = model.parse_boxes(model.decode(box["ids"]), (width, height), None, "the cup")
    assert (one.x0, one.y0, one.x1, one.y1, one.label) == (72.0, 136.0, 0.56 * 600, 312.0, "the cup")
    # ground: the RefCOCO evaluation prompt; the raw answer is the official evaluation's for it
    grounding = model.ground(IMAGES / "coffee.png", "the cup", max_new_tokens=24)
    official = references["minigptv2"]["eval_generate"]["rows"][1]["answer"]
    assert grounding.raw == official and grounding.boxes == tuple(processing.parse_boxes(official, (600, 400)))


# -- the files -----------------------------------------------------------------------------------


def _full(name: str) -> dict:
    return json.loads((DATA / f"tensors-full-size-{name}.json").read_text(encoding="utf-8"))


def _llama(llm_config: dict):
    from transformers import LlamaConfig

    return LlamaConfig(**llm_config)


def _expected(model, holders, paths, holder_names=()):
    part, _ = convert.view(model, paths, holders, holder_names)
    return {k: tuple(v.shape) for k, v in part.state_dict().items()}


def _count(module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("checkpoint", ["minigpt4_vicuna7b", "minigpt4_vicuna13b", "minigpt4_llama2", "minigptv2"])
def test_every_released_tensor_fills_ours_at_full_size(checkpoint):
    """Each released file's tensors (from the official classes at full size, tensors-full-size-*.json)
    map onto vlmzoo's modules built at full size on the meta device, or are ignored by a named row;
    nothing of ours is left unfilled; parameter counts agree."""
    facts, eva, blip2 = _full(checkpoint), _full("eva_vit_g"), _full("blip2_pretrained_flant5xxl")
    with_qformer, lora = checkpoint.startswith("minigpt4_vicuna"), checkpoint == "minigptv2"
    vision = convert.vision_config(Path(convert.EVA_VIT_G), {})
    qformer = convert.qformer_config(Path(convert.BLIP2_QFORMER), {}, vision.hidden_size) if with_qformer else None
    model, holders = convert.modules(_llama(facts["llm_config"]), vision, qformer, 32, 64 if lora else 0)
    table = convert.table(39, with_qformer)
    # eva_vit_g.pth: the 39 blocks built, and the released file's 40th (its size: 1.89 GiB)
    released = dict(eva["tensors"], **{k.replace("blocks.38.", "blocks.39."): v for k, v in eva["tensors"].items()
                                       if k.startswith("blocks.38.")})
    sources = [(released, convert.VISION_PATHS, ("qkv_biases",)),
               ({**facts["llm_tensors"], **{k: [64] for k in facts["llm_buffers_in_state_dict_4_30"]}}, convert.LLM_PATHS, ()),
               (facts["checkpoint_model"], ("llama_proj",), ("lora",) if lora else ())]
    text_side = {"Qformer.bert.embeddings.word_embeddings.weight": [30522, 768], "Qformer.cls.predictions.bias": [30522],
                 "Qformer.bert.encoder.layer.0.intermediate.dense.weight": [3072, 768],
                 "Qformer.bert.encoder.layer.0.output.LayerNorm.bias": [768]}
    if with_qformer:  # with BERT's text side too, as a fuller BLIP-2 save would hold it (the release does not)
        sources.append(({**blip2["tensors"], **text_side}, convert.QFORMER_PATHS, ()))
    filled = []
    for tensors, paths, names in sources:
        expected = _expected(model, holders, paths, names)
        steps = plan({k: tuple(v) for k, v in tensors.items()}, table, expected)
        assert steps.problems == [], paths
        assert sorted(t for s in steps.steps for t in s.targets) == sorted(expected)
        filled += [k for k in expected if k.split(".")[0] not in names]
        ignored = set(steps.ignored)
        assert all(route(k, table) == ([], None) for k in ignored)
        assert ignored == {k for k in tensors if k.startswith(("blocks.39.", "t5_proj")) or "inv_freq" in k
                           or "position_ids" in k or k in text_side}
    unfilled = set(model.state_dict()) - set(filled)
    assert unfilled == ({"visual_encoder.post_layernorm.weight", "visual_encoder.post_layernorm.bias"}
                        if not with_qformer else set())  # ln_vision keeps its init without BLIP-2's file
    counts = facts["parameter_counts"]
    tower = model.visual_encoder
    grid = facts["image_size"] // 14, 224 // 14
    assert (_count(tower) - _count(tower.post_layernorm) + _count(holders.qkv_biases)
            + (grid[0] ** 2 - grid[1] ** 2) * vision.hidden_size) == counts["visual_encoder"]  # v2: 448 px positions
    assert _count(tower.post_layernorm) == counts["ln_vision"]
    assert _count(model.llama_proj) == counts["llama_proj"]
    assert _count(model.model) + _count(model.lm_head) == counts["llm"]
    if with_qformer:
        assert _count(model.qformer) + model.query_tokens.numel() == counts["Qformer+query_tokens"]
    if lora:
        assert _count(holders.lora) == counts["lora"]
    assert (model.image_tokens_per_image() if not lora else (448 // 14) ** 2 // 4) == facts["image_tokens"]


def _flan_t5_xxl_blip2(vision, qformer, text=None):
    from transformers import Blip2Config

    text = text or {"model_type": "t5", "d_model": 4096, "d_ff": 10240, "num_layers": 24, "num_decoder_layers": 24, "num_heads": 64,
                        "d_kv": 64, "vocab_size": 32128, "feed_forward_proj": "gated-gelu", "tie_word_embeddings": False}
    return Blip2Config(vision_config=vision, qformer_config=qformer, text_config=text, num_query_tokens=32)


def test_a_transformers_blip2_flan_t5_xxl_layout_maps_at_full_size():
    """Salesforce/blip2-flan-t5-xxl's layout (transformers' Blip2ForConditionalGeneration at its
    configuration, on the meta device): its ViT, ln_vision, Q-Former and query tokens fill ours, its
    FlanT5-XXL and language projection are ignored by name; for MiniGPT-4 (Llama 2) and MiniGPT-v2
    only the ViT is taken."""
    from transformers import Blip2ForConditionalGeneration

    config = _flan_t5_xxl_blip2({}, {})
    with torch.device("meta"):
        blip2 = Blip2ForConditionalGeneration(config)
    tensors = {k: tuple(v.shape) for k, v in blip2.state_dict().items()}
    vision, qformer = config.vision_config, config.qformer_config
    llm = _llama(_full("minigpt4_vicuna7b")["llm_config"])
    for with_qformer in (True, False):
        model, holders = convert.modules(llm, vision, qformer if with_qformer else None, 32, qv_biases=False)
        paths = convert.VISION_PATHS + (convert.QFORMER_PATHS if with_qformer else ())
        expected = _expected(model, holders, paths)
        steps = plan(tensors, convert.table(39, with_qformer), expected)
        assert steps.problems == []
        assert sorted(t for s in steps.steps for t in s.targets) == sorted(expected)
        assert all(k.startswith(("language_", "vision_model.post_layernorm", "qformer.", "query_tokens"))
                   for k in steps.ignored)
        assert any(k.startswith("language_model.") for k in steps.ignored)


def _blip2_folder(source, folder: Path, text=None):
    """A tiny transformers-format BLIP-2 folder holding the fixture's LAVIS tensors, as transformers'
    conversion lays them out: our loaded modules are Blip2's own, under vision_model / qformer."""
    from transformers import Blip2ForConditionalGeneration

    tower, qformer = source.model.visual_encoder, source.model.qformer
    vision = {k: getattr(tower.config, k) for k in ("hidden_size", "intermediate_size", "num_hidden_layers",
                                                     "num_attention_heads", "image_size", "patch_size")}
    qconfig = {k: getattr(qformer.config, k) for k in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                                                       "intermediate_size")}
    tiny_t5 = {"model_type": "t5", "d_model": 48, "d_ff": 64, "num_layers": 1, "num_decoder_layers": 1, "num_heads": 2, "d_kv": 24,
                   "vocab_size": 64}
    blip2 = Blip2ForConditionalGeneration(_flan_t5_xxl_blip2(vision, qconfig, text or tiny_t5))
    state = {("vision_model" + k.removeprefix("visual_encoder") if k.startswith("visual_encoder.") else k): v
             for k, v in source.model.state_dict().items() if k.startswith(("visual_encoder.", "qformer.", "query_tokens"))}
    t5_proj = torch.load(DATA / "minigpt4_vicuna" / "checkpoint" / convert.BLIP2_QFORMER, weights_only=True)["model"]
    state.update({k.replace("t5_proj", "language_projection"): v for k, v in t5_proj.items() if k.startswith("t5_proj")})
    missing, unexpected = blip2.load_state_dict(state, strict=False)
    assert unexpected == [] and all(k.startswith("language_model.") for k in missing)
    blip2.save_pretrained(folder)


@pytest.mark.parametrize("variant", ["minigpt4_vicuna", "minigptv2"])
def test_a_transformers_blip2_folder_gives_identical_image_embeddings(models, references, tmp_path, variant):
    """The ViT (and for MiniGPT-4 with Vicuna ln_vision, the Q-Former and the query tokens) from a
    transformers BLIP-2 folder instead of eva_vit_g.pth and blip2_pretrained_flant5xxl.pth: the
    same image embeddings, bit for bit, and the same answers."""
    folder = tmp_path / "minigpt"
    shutil.copytree(DATA / variant / "checkpoint", folder)
    (folder / convert.EVA_VIT_G).unlink()
    (folder / convert.BLIP2_QFORMER).unlink(missing_ok=True)
    _blip2_folder(models["minigpt4_vicuna"], folder / "blip2-flan-t5-xxl")
    model = vlmzoo.load(folder, dtype="float32")
    layout = convert.Layout.read(folder)
    assert layout.blip2_folder and layout.vit.name == "blip2-flan-t5-xxl"
    pixels = torch.from_numpy(np.stack([processing.to_pixels(_image(n), model.processor.image_size)
                                        for n in ("astronaut.png", "panorama.png")]))
    with torch.inference_mode():
        ours, official_files = model.model.image_embeds(pixels), models[variant].model.image_embeds(pixels)
    assert torch.equal(ours, official_files)
    np.testing.assert_allclose(ours[0].numpy(), np.load(DATA / variant / "image-embeds-astronaut.npy"), atol=1e-5, rtol=0)
    _, _key, messages, turn = next(_turns(references[variant]))
    assert model.ask(messages=messages, max_new_tokens=24, repetition_penalty=CHAT_PENALTY).text == turn["answer"]


def test_blip2_folders_of_other_weights_are_refused(models, tmp_path):
    folder = tmp_path / "minigpt"
    shutil.copytree(DATA / "minigpt4_vicuna" / "checkpoint", folder)
    (folder / convert.EVA_VIT_G).unlink()
    (folder / convert.BLIP2_QFORMER).unlink()
    _blip2_folder(models["minigpt4_vicuna"], folder / "blip2-opt",
                  text={"model_type": "opt", "hidden_size": 48, "ffn_dim": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                            "vocab_size": 64, "word_embed_proj_dim": 48})
    with pytest.raises(UnknownModelError, match="Q-Former of BLIP-2 FlanT5-XXL.*language model is opt"):
        vlmzoo.load(folder)


def test_pickles_are_converted_once_and_a_code_payload_is_refused(models, cache, tmp_path, monkeypatch):
    for variant in VARIANTS:
        layout = convert.Layout.read(DATA / variant / "checkpoint")
        for file, wrapper in [(layout.vit, None), (layout.ckpt, "model")] + ([(layout.qformer, "model")] if layout.qformer else []):
            folder = convert.converted_folder(file, wrapper)
            assert folder.parent == cache / "vlmzoo" / "converted" and (folder / "model.safetensors").is_file()
    ckpt = convert.converted_folder(DATA / "minigptv2" / "checkpoint" / "minigptv2_checkpoint.pth") / "model.safetensors"
    stamp = ckpt.stat().st_mtime_ns
    vlmzoo.load(DATA / "minigptv2" / "checkpoint", dtype="float32")
    assert ckpt.stat().st_mtime_ns == stamp  # read again, not written again

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    marker, folder = tmp_path / "ran", tmp_path / "ckpt"
    shutil.copytree(DATA / "minigpt4_llama2" / "checkpoint", folder)
    with_payload(folder / "pretrained_minigpt4_llama2_7b.pth", marker)
    with pytest.raises(UnknownModelError, match=r"pretrained_minigpt4_llama2_7b\.pth: refused: the pickle holds more"):
        vlmzoo.load(folder)
    assert not marker.exists() and not list((tmp_path / "cache").rglob("*.safetensors"))


def test_the_llm_as_pickled_bin_shards_loads_as_its_safetensors(models, cache, tmp_path):
    """Vicuna V0 is published as pytorch_model-*.bin shards: each read with weights_only=True,
    converted once, and the shards read together."""
    from safetensors.torch import load_file

    folder = tmp_path / "minigpt"
    shutil.copytree(DATA / "minigpt4_vicuna" / "checkpoint", folder)
    llm = folder / "vicuna"
    state = load_file(llm / "model.safetensors")
    (llm / "model.safetensors").unlink()
    names = sorted(state)
    shards = {"pytorch_model-00001-of-00002.bin": names[: len(names) // 2],
              "pytorch_model-00002-of-00002.bin": names[len(names) // 2:]}
    for shard, keys in shards.items():
        torch.save({k: state[k] for k in keys}, llm / shard)
    (llm / "pytorch_model.bin.index.json").write_text(json.dumps(
        {"weight_map": {k: shard for shard, keys in shards.items() for k in keys}}))
    model = vlmzoo.load(folder, dtype="float32")
    for name, p in models["minigpt4_vicuna"].model.state_dict().items():
        assert torch.equal(model.model.state_dict()[name], p), name


def test_a_folder_missing_a_file_is_named(tmp_path, cache):
    folder = tmp_path / "minigpt"
    shutil.copytree(DATA / "minigpt4_vicuna" / "checkpoint", folder)
    shutil.rmtree(folder / "vicuna")
    with pytest.raises(UnknownModelError, match="the language model folder is missing.*Vision-CAIR/vicuna"):
        vlmzoo.load(folder)
    shutil.copytree(DATA / "minigpt4_vicuna" / "checkpoint" / "vicuna", folder / "vicuna")
    (folder / "pretrained_minigpt4.pth").unlink()
    with pytest.raises(UnknownModelError, match="no single MiniGPT-4 / MiniGPT-v2 checkpoint.*pretrained_minigpt4.pth"):
        vlmzoo.load(folder)
    shutil.copy(DATA / "minigpt4_vicuna" / "checkpoint" / "pretrained_minigpt4.pth", folder)
    (folder / convert.BLIP2_QFORMER).unlink()
    with pytest.raises(UnknownModelError, match=r"needs BLIP-2's Q-Former.*blip2_pretrained_flant5xxl\.pth"):
        vlmzoo.load(folder)
    (folder / convert.EVA_VIT_G).unlink()
    with pytest.raises(UnknownModelError, match=r"the vision tower is missing: eva_vit_g\.pth"):
        vlmzoo.load(folder)
    (folder / "minigpt4.json").write_text(json.dumps({"vit": {}, "llama_model": "nowhere"}))
    with pytest.raises(UnknownModelError, match="llama_model in minigpt4.json names .*nowhere"):
        vlmzoo.load(folder)


def test_an_unmapped_tensor_is_an_error_and_ignore_rows_drop_only_what_they_name():
    table = [Ignore(r"buffer\.\d+", "a buffer computed at load"), Split(r"qkv", ("q", "k", "v")), (r"(o)", r"\1")]
    assert route("buffer.3", table) == ([], None)
    result = plan({"buffer.0": (4,), "buffer.1": (4,), "qkv": (6, 2), "o": (2,), "head": (3,)}, table,
                  {"q": (2, 2), "k": (2, 2), "v": (2, 2), "o": (2,)})
    assert result.ignored == ["buffer.0", "buffer.1"]
    assert [s.sources for s in result.steps] == [["qkv"], ["o"]]
    assert result.problems == ["1 tensor(s) no rule maps to the model: head"]
    # a name the Ignore pattern does not match is still unmapped, a missing tensor still missing
    assert plan({"buffer.x": (9,), "qkv": (6, 2)}, table, {"q": (2, 2), "k": (2, 2), "v": (2, 2), "o": (2,)}).problems == [
        "1 tensor(s) no rule maps to the model: buffer.x", "1 model tensor(s) the checkpoint does not hold: o"]


def test_the_cards_are_supported_and_name_the_upstream_commit():
    from vlmzoo.families import family_class

    assert family_class("minigpt4").__name__ == "MiniGPT4Model"  # class_for picks MiniGPTv2Model by the LoRA
    for name in ("minigpt-4", "minigpt-v2"):
        card = catalog.get(name).card
        assert card.support == "supported" and card.family == "minigpt4", name
        assert "d94738a7626ec43eba6c2cddf3cd2043f1a9689a" in card.ported_from
    assert catalog.get("minigpt-v2").card.tasks == ("caption", "ask", "ground")
    assert {c.name for c in catalog.get("minigpt-4").card.checkpoints} >= {"minigpt-4", "minigpt-4-7b",
                                                                                 "minigpt-4-llama2"}


@pytest.mark.parametrize("name", ["minigpt-4", "minigpt-4-7b", "minigpt-4-llama2", "minigpt-v2"])
def test_loading_by_name_says_which_folder_to_lay_out(name):
    """The published files lie in several places: the name is refused at once, before the hub or
    the memory check, with what to put in a folder."""
    with pytest.raises(UnknownModelError, match=rf"{name} cannot be fetched by name: .*eva_vit_g\.pth.*vlmzoo\.load"):
        vlmzoo.load(name)


def test_the_memory_check_counts_the_assembled_model_before_loading(monkeypatch):
    """The files are pickles and folders in several places: the model they make is counted on
    the meta device, and a machine without room refuses before loading a weight."""
    from vlmzoo.engine import memory
    from vlmzoo.families.minigpt4 import MiniGPT4Model

    folder = DATA / "minigpt4_vicuna" / "checkpoint"
    counted = MiniGPT4Model.weight_params(folder)
    model = vlmzoo.load(folder, dtype="float32")
    # what the files hold: eva's separate q / v biases where the loaded model has one fused qkv bias
    assert counted == pytest.approx(sum(p.numel() for p in model.model.parameters()) / 1e9, rel=1e-3)
    monkeypatch.setattr(memory, "available_bytes", lambda: 1000)
    with pytest.raises(memory.InsufficientMemoryError, match=rf"needs about .* \({counted:.2f}B parameters"):
        vlmzoo.load(folder, dtype="float32")
