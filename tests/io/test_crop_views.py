"""Multi-crop boxes and their cutting against arrays cut by hand: odd sizes, portrait and
square frames, torchvision's and SlowFast's rounding, mirrored views."""

from __future__ import annotations

import numpy as np
import pytest

from feat3d.errors import UsageError
from feat3d.io.views import ClipViews, ViewError, crop_boxes, cut_views, split_views


def frames(height: int, width: int, count: int = 2) -> np.ndarray:
    """``(count, H, W, 3)`` uint8 frames whose every pixel differs from its neighbours."""
    values = np.arange(count * height * width * 3) % 251
    return values.reshape(count, height, width, 3).astype(np.uint8)


def test_five_crops_of_an_odd_frame_in_torchvision_order_and_rounding():
    clip = frames(7, 9)
    views = cut_views(clip, crop_boxes(7, 9, 4, 5))
    # centre: round(3 / 2) = 2 and round(5 / 2) = 2 (halves to even, as center_crop)
    expected = [clip[:, :4, :4], clip[:, :4, 5:], clip[:, 3:, :4], clip[:, 3:, 5:],
                clip[:, 2:6, 2:6]]  # fmt: skip
    assert views.shape == (5, 2, 4, 4, 3)
    for view, hand in zip(views, expected, strict=True):
        np.testing.assert_array_equal(view, hand)


def test_ten_crops_are_the_five_then_the_five_of_the_mirrored_frame():
    clip = frames(9, 12)
    views = cut_views(clip, crop_boxes(9, 12, (5, 6), 10))
    mirrored = clip[:, :, ::-1]
    # centre of the mirrored frame: round(4 / 2) = 2, round(6 / 2) = 3
    expected = [mirrored[:, :5, :6], mirrored[:, :5, 6:], mirrored[:, 4:, :6],
                mirrored[:, 4:, 6:], mirrored[:, 2:7, 3:9]]  # fmt: skip
    assert views.shape == (10, 2, 5, 6, 3)
    np.testing.assert_array_equal(views[:5], cut_views(clip, crop_boxes(9, 12, (5, 6), 5)))
    for view, hand in zip(views[5:], expected, strict=True):
        np.testing.assert_array_equal(view, hand)


def test_mirrored_boxes_name_the_pixels_they_hold():
    boxes = crop_boxes(8, 11, 4, 10)
    assert [box.flipped for box in boxes] == [False] * 5 + [True] * 5
    # the mirrored frame's top-left view holds the original's top-right pixels, mirrored
    assert boxes[5].as_list() == [0, 7, 4, 4, 1] and boxes[1].as_list() == [0, 7, 4, 4, 0]
    # centres: round(7 / 2) = 4 in the frame, 7 - round(7 / 2) = 3 in the mirrored one
    assert boxes[4].x0 == 4 and boxes[9].x0 == 3
    clip = frames(8, 11)
    for box, view in zip(boxes, cut_views(clip, boxes), strict=True):
        region = clip[:, box.y0 : box.y0 + 4, box.x0 : box.x0 + 4]
        np.testing.assert_array_equal(view, region[:, :, ::-1] if box.flipped else region)


@pytest.mark.parametrize(
    ("height", "width", "corners"),
    [
        (5, 11, [(1, 0), (1, 4), (1, 7)]),  # landscape: along x, ceil(7 / 2) = 4
        (11, 5, [(0, 1), (4, 1), (7, 1)]),  # portrait: along y
        (6, 6, [(1, 0), (1, 1), (1, 2)]),  # square: along x, as SlowFast's uniform_crop
    ],
)
def test_three_crops_along_the_long_side(height, width, corners):
    clip = frames(height, width)
    boxes = crop_boxes(height, width, 4, 3)
    assert [(box.y0, box.x0) for box in boxes] == corners
    for (y, x), view in zip(corners, cut_views(clip, boxes), strict=True):
        np.testing.assert_array_equal(view, clip[:, y : y + 4, x : x + 4])


def test_one_crop_is_the_centre_crop():
    assert crop_boxes(48, 85, 32, 1)[0].as_list() == [8, 26, 32, 32, 0]  # round(26.5) = 26


def test_a_box_larger_than_the_frame_or_a_bad_count_is_a_usage_error():
    with pytest.raises(UsageError, match=r"a 8×8 crop box does not fit in a 7×9 frame"):
        crop_boxes(7, 9, 8, 5)
    with pytest.raises(ViewError, match="1, 3, 5 or 10"):
        crop_boxes(7, 9, 4, 4)
    with pytest.raises(ViewError, match="needs a crop size"):
        ClipViews(5, None)


def test_clip_views_record_the_boxes_of_the_frames_they_cut():
    views = ClipViews(3, 4)
    assert views.attributes() == {}
    out = views.cut(frames(11, 5))
    assert out.shape == (3, 2, 4, 4, 3) and out.flags.c_contiguous
    assert views.attributes() == {"crop_boxes": [[0, 1, 4, 4, 0], [4, 1, 4, 4, 0],
                                                 [7, 1, 4, 4, 0]]}  # fmt: skip


def test_split_views_keeps_or_averages_the_crop_axis():
    rows = np.arange(12, dtype=np.float32).reshape(6, 2)  # 2 clips × 3 crops
    np.testing.assert_array_equal(split_views(rows, 3)[1], rows[3:])
    mean = split_views(rows, 3, "mean")
    assert mean.shape == (2, 2) and mean.dtype == np.float32
    np.testing.assert_array_equal(mean, [[2, 3], [8, 9]])
