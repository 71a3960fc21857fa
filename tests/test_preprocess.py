import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageSequence

from helpers import realdev_rows
from models.preprocess import (
    ImageError,
    InputSpec,
    _flatten,
    fuse_frames,
    load_image,
    normalize,
    preprocess,
    to_canvas,
)

SPEC_RGB = InputSpec(32, 128, 3)
SPEC_GRAY = InputSpec(32, 128, 1)


def png_bytes(image: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_shape_range_and_channels():
    img = Image.new("RGB", (160, 60), (255, 0, 0))
    rgb = preprocess(img, SPEC_RGB)
    gray = preprocess(img, SPEC_GRAY)
    assert rgb.shape == (3, 32, 128) and rgb.dtype == np.float32
    assert gray.shape == (1, 32, 128)
    assert rgb.min() >= -1 and rgb.max() <= 1
    assert np.allclose(rgb[0], 1.0) and np.allclose(rgb[1], -1.0)  # red stays red


def test_keep_aspect_then_pad_with_border_colour():
    img = Image.new("RGB", (64, 32), (200, 200, 200))
    img.paste((0, 0, 0), (20, 10, 40, 20))
    canvas = to_canvas(img, SPEC_RGB)
    assert canvas.shape == (32, 128, 3)
    assert (canvas[:, 64:] == 200).all()  # padding is the border colour
    assert canvas[15, 30].max() < 50  # content kept at scale 1


def test_wider_than_model_is_squeezed_not_cropped():
    img = Image.new("RGB", (400, 32), (255, 255, 255))
    img.paste((0, 0, 0), (390, 0, 400, 32))  # ink at the far right
    canvas = to_canvas(img, SPEC_GRAY)
    assert canvas.shape == (32, 128, 1)
    assert canvas[:, -1].mean() < 128


def test_sources_bytes_path_and_pil_agree(tmp_path: Path):
    img = Image.effect_noise((120, 40), 60).convert("RGB")
    data = png_bytes(img)
    (tmp_path / "a.png").write_bytes(data)
    a = preprocess(data, SPEC_RGB)
    b = preprocess(tmp_path / "a.png", SPEC_RGB)
    c = preprocess(str(tmp_path / "a.png"), SPEC_RGB)
    d = preprocess(img, SPEC_RGB)
    assert np.array_equal(a, b) and np.array_equal(b, c) and np.array_equal(c, d)


def test_transparency_composited_on_white():
    img = Image.new("RGBA", (40, 20), (0, 0, 0, 0))
    out = load_image(png_bytes(img))
    assert out.mode == "RGB" and np.asarray(out).min() == 255


def test_sixteen_bit_and_cmyk_readable():
    arr = (np.arange(40 * 20).reshape(20, 40) * 60).astype(np.uint16)
    sixteen = Image.fromarray(arr)
    assert load_image(png_bytes(sixteen)).size == (40, 20)
    cmyk = Image.new("CMYK", (40, 20), (0, 0, 0, 255))
    assert np.asarray(load_image(png_bytes(cmyk, "JPEG"))).max() < 60


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"hello, I am text", "not a readable image"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 30, "not a readable"),
    ],
)
def test_bad_bytes_raise_clear_error(data, message):
    with pytest.raises(ImageError, match=message):
        preprocess(data, SPEC_RGB)


def test_truncated_png_raises_image_error():
    data = png_bytes(Image.effect_noise((200, 80), 50).convert("RGB"))
    with pytest.raises(ImageError):
        preprocess(data[: len(data) // 2], SPEC_RGB)


def test_limits_on_pixels_and_frames():
    with pytest.raises(ImageError, match="too large"):
        load_image(png_bytes(Image.new("L", (300, 300))), max_pixels=10_000)
    frames = [Image.new("RGB", (20, 10), (i * 20, 0, 0)) for i in range(10)]
    gif = png_bytes(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    with pytest.raises(ImageError, match="too many frames"):
        load_image(gif, max_frames=5)


def test_missing_path():
    with pytest.raises(ImageError, match="no such file"):
        load_image("/nonexistent/x.png")


def synthetic_easy_gif() -> bytes:
    """Three frames, three black squares, frame i hides square i (as EasyCaptcha hides one character per frame)."""
    frames = []
    for hidden in range(3):
        frame = Image.new("RGB", (90, 30), "white")
        for j in range(3):
            if j != hidden:
                frame.paste((0, 0, 0), (10 + 30 * j, 5, 25 + 30 * j, 25))
        frames.append(frame)
    return png_bytes(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def test_gif_fusion_shows_every_square():
    fused = np.asarray(load_image(synthetic_easy_gif()).convert("L"))
    for j in range(3):
        assert fused[15, 17 + 30 * j] < 30, f"square {j} missing after fusion"
    first = np.asarray(Image.open(io.BytesIO(synthetic_easy_gif())).convert("L"))
    assert first[15, 17] > 200  # the first frame alone hides square 0


@pytest.mark.parametrize("method", ["min", "mean", "median"])
def test_fuse_methods_shape(method):
    frames = [Image.new("RGB", (10, 5), (v, v, v)) for v in (0, 100, 255)]
    out = np.asarray(fuse_frames(frames, method))
    assert out.shape == (5, 10, 3)
    assert out[0, 0, 0] == {"min": 0, "mean": 118, "median": 100}[method]


def darkness(image: Image.Image, columns: slice = slice(None)) -> float:
    """Sum over pixels of (255 - darkest channel): how much coloured or dark ink there is."""
    arr = np.asarray(image, dtype=np.float32)[:, columns]
    return float((255 - arr.min(axis=2)).sum())


def test_gif_fusion_on_real_easycaptcha_gifs():
    rows = realdev_rows("easy_gif")
    assert len(rows) >= 20
    for path, row in rows:
        frames = [_flatten(f.copy()) for f in ImageSequence.Iterator(Image.open(path))]
        assert len(frames) == len(row.label)  # one frame per character
        fused = load_image(path)
        assert fused.size == frames[0].size
        assert darkness(fused) >= max(darkness(f) for f in frames)
        # Frame 0 hides the first character; the fused image shows it: the first character cell gains
        # at least twice the ink.
        first_cell = slice(0, fused.size[0] // len(row.label))
        assert darkness(fused, first_cell) > 2 * darkness(frames[0], first_cell)


def test_normalize_layout():
    canvas = np.zeros((4, 6, 3), np.uint8)
    canvas[..., 2] = 255
    out = normalize(canvas)
    assert out.shape == (3, 4, 6) and out[2].min() == 1.0 and out[0].max() == -1.0


def test_prepare_batch_keeps_the_readable_sources_and_says_why_the_others_failed():
    from models.preprocess import IMAGE_ERROR_KINDS, prepare_batch

    spec = InputSpec(32, 128, 1)
    good = Image.fromarray(np.random.default_rng(0).integers(0, 256, (60, 160, 3), dtype=np.uint8))
    png = io.BytesIO()
    good.save(png, "PNG")
    cut = png.getvalue()[: len(png.getvalue()) // 2]  # header intact, pixel data cut short
    sources = [b"", png.getvalue(), b"not an image at all", good, cut]
    batch = prepare_batch(sources, spec)
    assert batch.kept == [1, 3] and batch.sizes == [(160, 60), (160, 60)]
    assert batch.inputs.shape == (2, 1, 32, 128) and batch.inputs.dtype == np.float32
    assert np.array_equal(batch.inputs[0], preprocess(good, spec))
    kinds = {index: error.kind for index, error in batch.failures}
    assert kinds == {0: "empty file", 2: "not an image", 4: "corrupt image data"}
    assert all(kind in IMAGE_ERROR_KINDS for kind in kinds.values())
    empty = prepare_batch([b""], spec)
    assert empty.inputs.shape == (0, 1, 32, 128) and empty.kept == []


def test_image_error_kind_does_not_depend_on_the_message():
    from models.preprocess import ImageError

    assert ImageError("whatever words", "too many frames").kind == "too many frames"
    assert ImageError("no kind given").kind == "not an image"
    with pytest.raises(ValueError, match="unknown image error kind"):
        ImageError("x", "made up")


def test_decoder_bugs_cost_only_their_source(monkeypatch):
    from models import preprocess as module

    spec = InputSpec(32, 128, 1)
    real = module.load_image

    def flaky(source, **kwargs):
        if source == b"boom":
            raise IndexError("decoder bug")
        return real(source, **kwargs)

    monkeypatch.setattr(module, "load_image", flaky)
    batch = module.prepare_batch([b"boom", Image.new("RGB", (60, 20), "white")], spec)
    assert batch.kept == [1] and batch.failures[0][1].kind == "corrupt image data"
