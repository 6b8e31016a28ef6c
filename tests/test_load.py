import time

import pytest

import vlmzoo
from vlmzoo import hub
from vlmzoo.errors import HubUnreachableError, UnknownModelError


def test_unknown_name_suggests(monkeypatch):
    with pytest.raises(UnknownModelError, match="Did you mean: clip-vit-b-32"):
        vlmzoo.load("clip-vit-b32")


def test_wrong_type_and_empty_name():
    with pytest.raises(UnknownModelError, match="must be a string"):
        vlmzoo.load(42)
    with pytest.raises(UnknownModelError, match="empty"):
        vlmzoo.load("  ")


def test_catalog_id_without_weights_fails_fast_and_says_why(monkeypatch):
    # not declared offline: the probe must find out by itself, quickly
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setenv("HF_HOME", "/nonexistent-hf-home")
    hub._probed.clear()
    t0 = time.monotonic()
    with pytest.raises(HubUnreachableError, match="unreachable.*openai/clip-vit-base-patch32"):
        vlmzoo.load("clip-vit-b-32")
    assert time.monotonic() - t0 < 10  # the hub's own retries would take far longer


def test_hub_id_not_in_catalog_goes_to_the_hub():
    with pytest.raises(HubUnreachableError, match="someone/some-model"):
        vlmzoo.load("someone/some-model")


def test_planned_family_is_refused_clearly(monkeypatch):
    import vlmzoo.families

    # every built-in family has code now: a family whose code is to come, as a plugin's may be
    vlmzoo.catalog.get("imagebind")  # the catalog read (and its cards checked) before the stand-in
    monkeypatch.setattr(vlmzoo.families, "loadable", lambda name: name != "imagebind")
    with pytest.raises(UnknownModelError, match="imagebind is in the catalog .* but vlmzoo cannot load family "
                                                "'imagebind' yet"):
        vlmzoo.load("imagebind")


def test_folder_checks(tmp_path, tiny):
    with pytest.raises(UnknownModelError, match="no config.json"):
        vlmzoo.load(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    with pytest.raises(UnknownModelError, match="model_type 'llama'"):
        vlmzoo.load(tmp_path)


def test_pickled_weights_are_refused(tmp_path, tiny):
    import shutil

    folder = tmp_path / "pickled"
    shutil.copytree(tiny["clip"], folder)
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    with pytest.raises(UnknownModelError, match="no .safetensors weights"):
        vlmzoo.load(folder)


def test_device_and_dtype_can_be_set(tiny):
    import torch

    m = vlmzoo.load(tiny["clip"], dtype="bfloat16")
    assert m.dtype == torch.bfloat16 and next(m.model.parameters()).dtype == torch.bfloat16
    assert vlmzoo.load(tiny["clip"], dtype="float32").dtype == torch.float32
    with pytest.raises(Exception, match="unknown dtype"):
        vlmzoo.load(tiny["clip"], dtype="float8")
    with pytest.raises(Exception, match="unknown device"):
        vlmzoo.load(tiny["clip"], device="tpu")


def test_too_large_for_this_machine_fails_before_download(monkeypatch):
    from vlmzoo.engine import memory

    monkeypatch.setattr(memory, "available_bytes", lambda: 1 * 2**30)
    # the memory check must come before any attempt to fetch the weights
    monkeypatch.setattr(hub, "download", lambda *a, **k: pytest.fail("tried to download"))
    with pytest.raises(memory.InsufficientMemoryError, match=r"blip-large needs about 2\.1 GiB in float32.*bfloat16"):
        vlmzoo.load("blip-large")  # 0.47B parameters x 4 bytes x 1.2


def test_memory_estimate_reads_local_weights(tiny, monkeypatch):
    from vlmzoo.engine import memory

    params = memory.params_from_weights(tiny["clip"])
    assert 0 < params < 0.001  # a tiny checkpoint: well under a million parameters
    monkeypatch.setattr(memory, "available_bytes", lambda: 1000)
    with pytest.raises(memory.InsufficientMemoryError, match="1000|0.0 GiB is available"):
        vlmzoo.load(tiny["clip"])


@pytest.mark.parametrize("native", [True, False])
def test_cpu_default_dtype_follows_the_family_and_the_cpu(native, tiny, tiny_prompted, monkeypatch, mirror):
    import torch

    from vlmzoo.engine import device

    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: native)
    # dual encoders prefer bf16 (embeddings survive it); generative families stay exact
    expected = torch.bfloat16 if native else torch.float32
    assert vlmzoo.load(tiny["clip"]).dtype == expected  # a folder: its family decides
    assert vlmzoo.load("clip-vit-b-32").dtype == expected  # a catalog id: its card, then family
    assert vlmzoo.load(tiny["blip-caption"]).dtype == torch.float32
    assert vlmzoo.load(tiny_prompted["git"]).dtype == torch.float32


@pytest.mark.parametrize("flags, warned", [({"avx2", "fma"}, True), ({"avx2", "avx512f", "avx512_bf16"}, False),
                                           ({"avx2", "amx_bf16"}, False)])
def test_bf16_asked_for_on_a_cpu_that_emulates_it_is_warned_about(flags, warned, tiny, monkeypatch, caplog):
    import torch

    from vlmzoo.engine import device

    monkeypatch.setattr(device, "cpu_flags", lambda: flags)
    with caplog.at_level("WARNING", logger="vlmzoo.engine"):
        assert vlmzoo.load(tiny["clip"], dtype="bfloat16").dtype == torch.bfloat16  # asked for: honoured
    assert any("bfloat16 asked for on a CPU without native" in r.getMessage() for r in caplog.records) is warned
    caplog.clear()
    with caplog.at_level("WARNING", logger="vlmzoo.engine"):
        vlmzoo.load(tiny["clip"], dtype="float32")
        vlmzoo.load(tiny["clip"])  # the default never picks an emulated dtype
    assert not any("asked for on a CPU" in r.getMessage() for r in caplog.records)


def test_a_card_can_keep_its_model_in_float32(monkeypatch, mirror):
    import torch

    from vlmzoo import catalog
    from vlmzoo.engine import device

    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: True)
    entry = catalog.get("clip-vit-b-32")
    strict = catalog.Entry(entry.card.model_copy(update={"cpu_dtype": "float32"}), entry.checkpoint)
    monkeypatch.setattr(catalog, "find", lambda name: strict if name == "clip-vit-b-32" else None)
    assert vlmzoo.load("clip-vit-b-32").dtype == torch.float32


def test_one_resolver_says_what_a_name_is(tiny, tmp_path):
    from vlmzoo.names import ApiName, CatalogName, FolderName, HubName, read_name

    assert isinstance(read_name(tiny["clip"]), FolderName)
    assert read_name("clip").entry.card.id == "clip-vit-b-32" and isinstance(read_name("clip"), CatalogName)
    assert read_name("hf-hub:openai/clip-vit-base-patch32").entry.checkpoint.name == "clip-vit-b-32"
    assert read_name("hf-hub:someone/model") == HubName("someone/model")
    api = read_name("gpt4o")  # a catalog alias of an API model
    assert isinstance(api, ApiName) and (api.provider, api.model, api.family) == ("openai", "gpt-4o", "openai")
    compatible = read_name("openai-compatible:http://h:8000/v1#m")
    assert (compatible.family, compatible.base_url, compatible.name) == ("openai_compatible", "http://h:8000/v1",
                                                                         "openai-compatible:http://h:8000/v1#m")
    with pytest.raises(UnknownModelError, match="no config.json"):
        read_name(tmp_path)


def test_weight_bytes_and_text_tokens_answer_without_reaching_inside(tiny):
    model = vlmzoo.load(tiny["clip"], dtype="float32")
    assert model.weight_bytes() == 4 * sum(p.numel() for p in model.model.parameters())
    texts = ["a photo of a cat", "dog", "word " * 500]  # the last is truncated to the text tower's 77 positions
    tokenizer = model.processor.tokenizer
    read = [min(len(tokenizer(t)["input_ids"]), tokenizer.model_max_length) for t in texts]
    assert read[2] == tokenizer.model_max_length
    assert model.embed_texts(texts).tokens == sum(read)
    assert model.embed_images(_photo()).tokens is None


def _photo():
    from PIL import Image

    return Image.new("RGB", (40, 30), (200, 10, 10))
