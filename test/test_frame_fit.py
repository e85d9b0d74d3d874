"""Camera-shaped frames (issue 27 item 3): how a 4:3 or 16:9 frame reaches each family's tower
(``frame_fit``), and that what the grid says maps back to the camera's own pixels."""

import numpy as np
import torch
import pytest

from stvg_ros import GroundingConfig
from stvg_ros.adapters import load_adapter
from stvg_ros.adapters.base import AdapterOptions
from stvg_ros.adapters.common import fit_content_box, fit_frame, frame_placement
from stvg_ros.adapters.qwen import qwen_frame_size
from stvg_ros.config import ConfigError
from stvg_ros.grounding.relevance import cell_box, upsample_maps

#: the shipped model's processor (max pixels 112²) and the paper's 224 for a released Qwen
QWEN_112 = dict(side=112, processor_pixels=(56 * 56, 112 * 112))
QWEN_224 = dict(side=224, processor_pixels=(128 * 28 * 28, 768 * 28 * 28))
CAMERAS = {"4:3": (480, 640), "16:9": (360, 640), "3:4 portrait": (640, 480)}


def _frame_with_box(height, width, box, value=(250, 40, 40)):
    """A dark frame with one filled rectangle ``box`` = (x0, y0, x1, y1) in its pixels."""
    frame = np.full((height, width, 3), 30, np.uint8)
    x0, y0, x1, y1 = box
    frame[y0:y1, x0:x1] = value
    return frame


def _bbox(mask):
    ys, xs = np.nonzero(mask)
    return xs.min(), ys.min(), xs.max() + 1, ys.max() + 1


@pytest.mark.parametrize("camera,setting,fit,expected", [
    # Qwen at the shipped model's 112²: 'resize' rounds 4:3 to a 5:3 grid (the cause: objects 1.25x wider)
    ("4:3", QWEN_112, "resize", (84, 140)), ("4:3", QWEN_112, "pad", (84, 140)), ("4:3", QWEN_112, "short", (112, 140)),
    ("16:9", QWEN_112, "resize", (84, 140)), ("16:9", QWEN_112, "pad", (84, 140)),
    ("16:9", QWEN_112, "short", (112, 196)),
    ("3:4 portrait", QWEN_112, "short", (140, 112)),
    # a released Qwen at the paper's 224
    ("4:3", QWEN_224, "resize", (196, 252)), ("4:3", QWEN_224, "short", (224, 308)),
    ("16:9", QWEN_224, "resize", (168, 308)), ("16:9", QWEN_224, "short", (224, 392)),
])
def test_qwen_input_size_per_camera_shape(camera, setting, fit, expected):
    """The Qwen tower's input (multiples of 28 px, one token per 28 px) for each ``frame_fit``: 'short' keeps
    the short side at the model's side and spends more tokens on the long side."""
    H, W = CAMERAS[camera]
    assert qwen_frame_size(H, W, "fixed", setting["side"], setting["processor_pixels"], 28, fit) == expected


def test_resize_distorts_and_pad_keeps_the_shape():
    """A square object on a 4:3 camera: stretched to the 112² Qwen input it comes out 1.25x too wide (its 5:3
    grid); letterboxed ('pad') or short-side fitted ('short') it stays square in the tower's input."""
    H, W = CAMERAS["4:3"]
    frame = _frame_with_box(H, W, (300, 200, 380, 280))  # 80 x 80
    for fit, tolerance in (("resize", None), ("pad", 0.05), ("short", 0.05)):
        in_h, in_w = qwen_frame_size(H, W, "fixed", **QWEN_112, frame_fit=fit)
        x0, y0, x1, y1 = _bbox(fit_frame(frame, in_h, in_w, fit)[..., 0] > 150)
        aspect = (x1 - x0) / (y1 - y0)
        if tolerance is None:
            assert aspect == pytest.approx(1.25, abs=0.1)
        else:
            assert aspect == pytest.approx(1.0, abs=tolerance * 2)


@pytest.mark.parametrize("camera", list(CAMERAS))
@pytest.mark.parametrize("fit", ["resize", "pad", "short"])
@pytest.mark.parametrize("in_size", [(84, 140), (112, 112), (112, 196)])
def test_content_box_maps_input_pixels_back_to_source_pixels(camera, fit, in_size):
    """What lies at input pixel u is at source pixel ``x0 + u * (x1 - x0) / in_w`` (``content_box``), whether the
    frame was stretched or letterboxed: an object found in the fitted input comes back on the object."""
    H, W = CAMERAS[camera]
    box = (int(W * 0.55), int(H * 0.2), int(W * 0.8), int(H * 0.45))
    in_h, in_w = in_size
    fitted = fit_frame(_frame_with_box(H, W, box), in_h, in_w, fit)
    assert fitted.shape == (in_h, in_w, 3)
    u0, v0, u1, v1 = _bbox(fitted[..., 0] > 150)
    cx0, cy0, cx1, cy1 = fit_content_box(H, W, in_h, in_w, fit)
    sx, sy = (cx1 - cx0) / in_w, (cy1 - cy0) / in_h  # source pixels per input pixel
    back = (cx0 + u0 * sx, cy0 + v0 * sy, cx0 + u1 * sx, cy0 + v1 * sy)
    for got, want, step in zip(back, box, (sx, sy, sx, sy)):
        assert abs(got - want) <= 1.5 * step + 1
    top, left, h, w = frame_placement(H, W, in_h, in_w, fit)
    if fit != "resize":  # letterboxed: the padding is the frame's mean colour, and no stretch
        assert (w / W) == pytest.approx(h / H, rel=0.03)


@pytest.mark.parametrize("family", ["qwen2_5_vl", "llava_onevision", "llava_next_video"])
@pytest.mark.parametrize("camera", ["4:3", "16:9"])
def test_each_family_letterboxes_and_reports_where_the_grid_lies(tiny_model_dir, family, camera):
    """Per family, a camera-shaped frame with ``frame_fit='pad'``: the grid (Qwen: its 28 px cells over the
    fitted input; LLaVA: the tower's square) spans past the frame's edges by the padding, and a relevance peak
    on the token cell that holds the object maps back (``cell_box``, ``upsample_maps``) onto the object in the
    frame's own pixels."""
    H, W = CAMERAS[camera]
    box = (int(W * 0.6), int(H * 0.3), int(W * 0.75), int(H * 0.5))
    frames = [_frame_with_box(H, W, box)] * 2
    adapter = load_adapter(tiny_model_dir(family))
    adapter.configure(AdapterOptions(frame_fit="resize"))
    stretched = adapter.encode_frames(frames)
    assert stretched.content_box == pytest.approx((0.0, 0.0, W, H))
    adapter.configure(AdapterOptions(frame_fit="pad"))
    visual = adapter.encode_frames(frames)
    rows, cols = visual.grid
    if family.startswith("qwen"):
        in_h, in_w = adapter.target_size(H, W)
        assert (rows, cols) == (in_h // 28, in_w // 28)
    else:
        in_h = in_w = adapter.input_side
        assert rows == cols
    assert visual.content_box == pytest.approx(fit_content_box(H, W, in_h, in_w, "pad"))
    x0, y0, x1, y1 = visual.content_box
    assert x0 <= 0 and y0 <= 0 and x1 >= W and y1 >= H and (x0 < 0 or y0 < 0)  # padded on some side
    # the grid's cell aspect is the frame's pixels' aspect: square cells stay square in the source
    assert ((x1 - x0) / cols) == pytest.approx((y1 - y0) / rows, rel=0.05)
    # the cell that holds the object's centre maps back onto the object
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    col, row = int((cx - x0) / ((x1 - x0) / cols)), int((cy - y0) / ((y1 - y0) / rows))
    bx0, by0, bx1, by1 = cell_box(row, col, row, col, visual.grid, visual.content_box)
    assert bx0 <= cx <= bx1 and by0 <= cy <= by1
    peak = np.zeros((1, rows, cols), np.float32)
    peak[0, row, col] = 1.0
    full, scale = upsample_maps(peak, visual.content_box, (H, W), max_side=None)
    ys, xs = np.nonzero(full[0] >= full[0].max() * 0.99)
    assert box[0] - (x1 - x0) / cols <= xs.mean() <= box[2] + (x1 - x0) / cols
    assert box[1] - (y1 - y0) / rows <= ys.mean() <= box[3] + (y1 - y0) / rows


def test_short_fit_gives_qwen_more_columns_and_llava_its_stretch(tiny_model_dir):
    """'short' keeps the square frame's rows and adds columns (Qwen); a square-only LLaVA tower keeps the short
    side's scale the one way it can, as 'resize' (the same tokens)."""
    H, W = CAMERAS["16:9"]
    frames = [_frame_with_box(H, W, (10, 10, 50, 50))] * 2
    qwen = load_adapter(tiny_model_dir("qwen2_5_vl"))
    qwen.configure(AdapterOptions(frame_fit="resize"))
    square = qwen.encode_frames([f[:, :H] for f in frames]).grid
    qwen.configure(AdapterOptions(frame_fit="short"))
    rows, cols = qwen.encode_frames(frames).grid
    assert rows == square[0] and cols > square[1] * 1.6  # the short side keeps the square frame's rows
    llava = load_adapter(tiny_model_dir("llava_onevision"))
    llava.configure(AdapterOptions(frame_fit="resize"))
    stretched = llava.encode_frames(frames)
    llava.configure(AdapterOptions(frame_fit="short"))
    short = llava.encode_frames(frames)
    assert short.grid == stretched.grid and short.content_box == pytest.approx(stretched.content_box)
    assert np.allclose(short.embeds.float().numpy(), stretched.embeds.float().numpy())


def test_frame_fit_is_a_config_field_that_reaches_the_adapter(tiny_model_dir):
    from stvg_ros import Grounder

    assert GroundingConfig().frame_fit == "short"  # chosen on the synthetic val split
    with pytest.raises(ConfigError, match="frame_fit"):
        GroundingConfig(frame_fit="crop")
    with pytest.raises(ValueError, match="frame_fit"):
        AdapterOptions(frame_fit="crop")
    g = Grounder.from_pretrained(tiny_model_dir("qwen2_5_vl"), config=GroundingConfig(frame_fit="pad"))
    assert g.adapter.options.frame_fit == "pad"


@pytest.mark.parametrize("family", ["qwen2_5_vl", "llava_onevision"])
def test_square_frames_are_the_same_under_every_fit(tiny_model_dir, family):
    """A square frame needs no fitting: 'pad' and 'short' give the very tokens 'resize' gives (the square-frame
    figures cannot move)."""
    from stvg_ros.adapters.tiny_models import random_frames

    frames = random_frames(2, 112, 112)
    adapter = load_adapter(tiny_model_dir(family))
    adapter.configure(AdapterOptions(frame_fit="resize"))
    ref = adapter.encode_frames(frames)
    for fit in ("pad", "short"):
        adapter.configure(AdapterOptions(frame_fit=fit))
        got = adapter.encode_frames(frames)
        assert got.grid == ref.grid and got.content_box == pytest.approx(ref.content_box)
        assert torch.equal(got.embeds, ref.embeds)
