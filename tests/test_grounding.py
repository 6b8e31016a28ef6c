"""Every box format decodes to canonical pixel xyxy boxes. Expectations are worked by hand."""

import pytest

from vlmzoo.families.florence2 import parse_florence2_boxes
from vlmzoo.families.kosmos2 import parse_kosmos2_boxes, patch_box
from vlmzoo.families.paligemma import parse_paligemma_boxes
from vlmzoo.families.qwen2_vl import parse_qwen2_boxes, parse_qwen25_boxes
from vlmzoo.tasks import Box


def _xyxy(box: Box):
    return pytest.approx((box.x0, box.y0, box.x1, box.y1), abs=1e-6)


def test_qwen2_boxes_are_thousandths_of_the_image():
    text = "<|object_ref_start|>the red car<|object_ref_end|><|box_start|>(100,250),(500,1000)<|box_end|><|im_end|>"
    (box,) = parse_qwen2_boxes(text, (640, 480))
    # x: 100/1000*640 = 64, 500/1000*640 = 320; y: 250/1000*480 = 120, 1000/1000*480 = 480
    assert (box.x0, box.y0, box.x1, box.y1) == _xyxy(Box(64, 120, 320, 480)) and box.label == "the red car"


def test_qwen2_several_boxes_and_default_label():
    text = "<|box_start|>(0,0),(10,20)<|box_end|> and <|box_start|>(900, 900), (999, 999)<|box_end|>"
    a, b = parse_qwen2_boxes(text, (1000, 2000), default_label="dog")
    assert (a.x0, a.y0, a.x1, a.y1) == _xyxy(Box(0, 0, 10, 40)) and a.label == "dog"
    assert (b.x0, b.y0, b.x1, b.y1) == _xyxy(Box(900, 1800, 999, 1998))


def test_qwen25_boxes_are_pixels_of_the_resized_image():
    # the model saw 448x336 (w x h); the original is 1024x768: every coordinate scales by 1024/448
    text = '```json\n[{"bbox_2d": [112, 84, 224, 336], "label": "cat"}]\n```'
    (box,) = parse_qwen25_boxes(text, (1024, 768), (448, 336))
    assert (box.x0, box.y0, box.x1, box.y1) == _xyxy(Box(256, 192, 512, 768)) and box.label == "cat"


def test_paligemma_locs_are_y_first_in_1024_bins():
    text = "<loc0256><loc0512><loc0768><loc1023> cat ; <loc0000><loc0000><loc0512><loc0512> dog"
    cat, dog = parse_paligemma_boxes(text, (2048, 1024))
    # y: 256/1024*1024 = 256, 768/1024*1024 = 768; x: 512/1024*2048 = 1024, 1023/1024*2048 = 2046
    assert (cat.x0, cat.y0, cat.x1, cat.y1) == _xyxy(Box(1024, 256, 2046, 768)) and cat.label == "cat"
    assert (dog.x0, dog.y0, dog.x1, dog.y1) == _xyxy(Box(0, 0, 1024, 512)) and dog.label == "dog"


def test_kosmos2_patch_boxes():
    side = 32
    # one cell: its whole extent. cell 33 = row 1, column 1
    assert patch_box(33, 33, side) == pytest.approx((1 / 32, 1 / 32, 2 / 32, 2 / 32))
    # one row of cells: corners. cells 32..35 = row 1, columns 0..3
    assert patch_box(32, 35, side) == pytest.approx((0, 1 / 32, 4 / 32, 2 / 32))
    # general case: centre to centre. cell 0 (0,0) to cell 1023 (31,31)
    assert patch_box(0, 1023, side) == pytest.approx((0.5 / 32, 0.5 / 32, 31.5 / 32, 31.5 / 32))


def test_kosmos2_grounded_caption_on_a_non_square_image():
    text = ("An image of <phrase>a snowman</phrase><object><patch_index_0044><patch_index_0863></object> "
            "warming himself by <phrase>a fire</phrase><object><patch_index_0005><patch_index_0911>"
            "</delimiter_of_multi_objects/><patch_index_0100><patch_index_0100></object>.")
    boxes = parse_kosmos2_boxes(text, (640, 320))
    assert [b.label for b in boxes] == ["a snowman", "a fire", "a fire"]
    # 44 = (x 12, y 1), 863 = (x 31, y 26): centres -> x 12.5/32*640 = 250, 31.5/32*640 = 630;
    # y 1.5/32*320 = 15, 26.5/32*320 = 265
    s = boxes[0]
    assert (s.x0, s.y0, s.x1, s.y1) == _xyxy(Box(250, 15, 630, 265))
    # 100 = (x 4, y 3), a single cell: x 4/32*640 = 80 .. 100, y 3/32*320 = 30 .. 40
    c = boxes[2]
    assert (c.x0, c.y0, c.x1, c.y1) == _xyxy(Box(80, 30, 100, 40))


def test_florence2_bins_stand_for_their_centres():
    text = "</s><s>cat<loc_100><loc_200><loc_500><loc_999>dog<loc_0><loc_0><loc_9><loc_9><loc_10><loc_10><loc_19><loc_19></s>"
    cat, dog1, dog2 = parse_florence2_boxes(text, (640, 480))
    # x: 100.5/1000*640 = 64.32, 500.5/1000*640 = 320.32; y: 200.5/1000*480 = 96.24, 999.5/1000*480 = 479.76
    assert (cat.x0, cat.y0, cat.x1, cat.y1) == _xyxy(Box(64.32, 96.24, 320.32, 479.76)) and cat.label == "cat"
    assert dog1.label == dog2.label == "dog"
    assert (dog2.x0, dog2.y0, dog2.x1, dog2.y1) == _xyxy(Box(6.72, 5.04, 12.48, 9.36))


def test_boxes_are_ordered_and_clamped():
    (box,) = parse_qwen2_boxes("<|box_start|>(800,900),(100,50)<|box_end|>", (100, 100))
    assert (box.x0, box.y0, box.x1, box.y1) == _xyxy(Box(10, 5, 80, 90))
    (box,) = parse_qwen25_boxes('{"bbox_2d": [-20, 10, 500, 400]}', (100, 100), (448, 448))
    assert box.x0 == 0 and box.x1 == 100


def test_inverted_corners_are_ordered_in_every_format():
    # models do emit the bottom-right corner first; every parser builds through Box.from_fractions
    (box,) = parse_qwen2_boxes("<|box_start|>(800,700),(100,200)<|box_end|>", (1000, 500))
    # x: 800 and 100 thousandths of 1000; y: 700/1000*500 = 350 and 200/1000*500 = 100
    assert (box.x0, box.y0, box.x1, box.y1) == _xyxy(Box(100, 100, 800, 350))
    (box,) = parse_qwen25_boxes('{"bbox_2d": [224, 336, 112, 84]}', (1024, 768), (448, 336))
    assert (box.x0, box.y0, box.x1, box.y1) == _xyxy(Box(256, 192, 512, 768))
    (cat,) = parse_paligemma_boxes("<loc0768><loc0512><loc0256><loc0000> cat", (2048, 1024))
    # y 768 and 256 of 1024 bins on 1024 rows; x 512 and 0 of 1024 bins on 2048 columns
    assert (cat.x0, cat.y0, cat.x1, cat.y1) == _xyxy(Box(0, 256, 1024, 768)) and cat.label == "cat"
    (cat,) = parse_florence2_boxes("cat<loc_500><loc_999><loc_100><loc_200>", (640, 480))
    assert (cat.x0, cat.y0, cat.x1, cat.y1) == _xyxy(Box(64.32, 96.24, 320.32, 479.76))
    # cell 863 (x 31, y 26) before cell 44 (x 12, y 1): the centres, as in the grounded caption test
    (s,) = parse_kosmos2_boxes("<phrase>a snowman</phrase><object><patch_index_0863><patch_index_0044></object>",
                               (640, 320))
    assert (s.x0, s.y0, s.x1, s.y1) == _xyxy(Box(250, 15, 630, 265))


def test_text_without_boxes_gives_none():
    assert parse_qwen2_boxes("I see no car.", (10, 10)) == []
    assert parse_paligemma_boxes("no objects", (10, 10)) == []
    assert parse_kosmos2_boxes("An image of a cat.", (10, 10)) == []
    assert parse_florence2_boxes("</s>cat</s>", (10, 10)) == []


def test_draw_boxes_marks_a_copy(tmp_path):
    from PIL import Image

    from vlmzoo.draw import save_drawn

    img = Image.new("RGB", (100, 80), "white")
    out = save_drawn(img, [Box(10, 20, 50, 60, "cat")], tmp_path / "drawn.png")
    drawn = Image.open(out)
    assert drawn.size == (100, 80) and img.getpixel((10, 40)) == (255, 255, 255)  # original untouched
    assert drawn.getpixel((10, 40)) != (255, 255, 255)  # left edge of the box
    assert drawn.getpixel((30, 40)) == (255, 255, 255)  # inside stays clear
