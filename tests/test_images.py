import base64
import io

import numpy as np
import pytest
from PIL import Image

from vlmzoo.errors import ImageError, InputError
from vlmzoo.images import expand, load_image, load_images


def _png(img: Image.Image, fmt="PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.fixture
def rgb():
    arr = np.zeros((20, 30, 3), np.uint8)
    arr[:, :, 0] = 200  # red
    return Image.fromarray(arr)


def test_path_bytes_base64_data_uri_pil_and_array_agree(tmp_path, rgb):
    data = _png(rgb)
    (tmp_path / "a.png").write_bytes(data)
    b64 = base64.b64encode(data).decode()
    sources = [str(tmp_path / "a.png"), tmp_path / "a.png", data, b64, "data:image/png;base64," + b64,
               rgb, np.asarray(rgb)]
    for src in sources:
        out = load_image(src).image
        assert out.mode == "RGB" and out.size == (30, 20)
        assert out.getpixel((0, 0)) == (200, 0, 0), type(src)


def test_directory_expands_recursively_sorted(tmp_path, rgb):
    (tmp_path / "b").mkdir()
    for rel in ("b/2.png", "a.jpg", "b/1.png", "notes.txt"):
        p = tmp_path / rel
        p.write_bytes(_png(rgb, "JPEG" if rel.endswith("jpg") else "PNG") if not rel.endswith("txt") else b"hi")
    names = [str(p) for p in expand(tmp_path)]
    assert names == [str(tmp_path / "a.jpg"), str(tmp_path / "b/1.png"), str(tmp_path / "b/2.png")]


def test_empty_directory_and_empty_list_are_errors(tmp_path):
    with pytest.raises(InputError, match="holds no image files"):
        expand(tmp_path)
    with pytest.raises(InputError, match="empty list"):
        expand([])


def test_urls_are_off_by_default():
    with pytest.raises(ImageError, match="allow_urls") as e:
        load_image("https://example.com/cat.jpg")
    assert e.value.source == "https://example.com/cat.jpg"


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (40, 20), (0, 255, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = tmp_path / "rot.jpg"
    img.save(path, exif=exif)
    assert load_image(path).image.size == (20, 40)


@pytest.mark.parametrize("mode", ["P", "L", "1", "CMYK", "LA"])
def test_modes_become_rgb(mode, rgb):
    out = load_image(_png(rgb.convert(mode), "TIFF" if mode == "CMYK" else "PNG")).image
    assert out.mode == "RGB" and out.size == (30, 20)


def test_transparent_pixels_become_white_not_black():
    img = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert load_image(_png(img)).image.getpixel((0, 0)) == (255, 255, 255)


def test_palette_with_transparency():
    img = Image.new("RGBA", (4, 4), (0, 0, 255, 0)).convert("P")
    img.info["transparency"] = 0
    assert load_image(_png(img, transparency=0)).image.mode == "RGB"


def test_sixteen_bit_is_scaled_not_clipped():
    arr = np.full((8, 8), 65535, np.uint16)
    out = load_image(_png(Image.fromarray(arr))).image
    assert out.getpixel((0, 0)) == (255, 255, 255)
    half = load_image(np.full((8, 8), 32768, np.uint16)).image
    assert half.getpixel((0, 0))[0] == 128


def test_animated_gif_takes_first_frame():
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    r, g, b = load_image(buf.getvalue()).image.getpixel((0, 0))
    assert r > 200 and b < 50


def test_pixel_limit_names_the_file(tmp_path, rgb):
    path = tmp_path / "big.png"
    path.write_bytes(_png(rgb))
    with pytest.raises(ImageError, match=r"big.png: 30x20 = 600 pixels is over the limit of 100"):
        load_image(path, max_pixels=100)


def test_decompression_bomb_is_refused_without_decoding(tmp_path):
    # a 1-bit PNG of 20000 x 20000 pixels is a few KB on disk and 400 MP in memory
    path = tmp_path / "bomb.png"
    Image.new("1", (20000, 20000)).save(path)
    assert path.stat().st_size < 200_000
    with pytest.raises(ImageError, match="bomb.png.*(over the limit|decompression bomb)"):
        load_image(path)


def test_truncated_file(tmp_path, rgb):
    data = _png(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)), "JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="cut.jpg: .*truncated"):
        load_image(path)


def test_corrupt_empty_and_non_image_files(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("this is not an image")
    (tmp_path / "garbage.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 50)
    with pytest.raises(ImageError, match="empty.png: empty file"):
        load_image(tmp_path / "empty.png")
    with pytest.raises(ImageError, match="text.png: not an image"):
        load_image(tmp_path / "text.png")
    with pytest.raises(ImageError, match="garbage.jpg"):
        load_image(tmp_path / "garbage.jpg")


def test_missing_file_and_wrong_types():
    with pytest.raises(ImageError, match="nope.jpg: no such file"):
        load_image("nope.jpg")
    with pytest.raises(ImageError, match="unsupported image type int"):
        load_image(42)
    with pytest.raises(ImageError, match="channels last"):
        load_image(np.zeros((3, 8, 8, 2), np.uint8))
    with pytest.raises(ImageError, match=r"\[0, 1\]"):
        load_image(np.full((4, 4, 3), 2.0))
    with pytest.raises(ImageError, match="not an image"):
        load_image("data:text/plain;base64,aGVsbG8=")
    with pytest.raises(ImageError, match="not valid base64"):
        load_image("data:image/png;base64,@@@")


def test_batch_skips_bad_files_and_keeps_good_ones(tmp_path, rgb):
    (tmp_path / "a.png").write_bytes(_png(rgb))
    (tmp_path / "b.png").write_bytes(b"broken")
    (tmp_path / "c.png").write_bytes(_png(rgb))
    intake = load_images(tmp_path, skip_bad=True)
    assert [im.name for im in intake.images] == [str(tmp_path / "a.png"), str(tmp_path / "c.png")]
    assert len(intake.errors) == 1 and intake.errors[0].source == str(tmp_path / "b.png")
    with pytest.raises(ImageError, match="b.png"):
        load_images(tmp_path)
