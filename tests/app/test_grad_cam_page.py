"""AppTest of the Image page with Grad-CAM panels (the real default model, no browser)."""

from __future__ import annotations

from tests.app.test_pages import FAST_IMAGE, page, panel_stats, run


def test_image_page_draws_grad_cam_with_its_colour_bar():
    at = page("image", {**FAST_IMAGE, "methods": ["Grad-CAM", "Guided Grad-CAM", "Integrated Gradients"]})
    run(at)
    assert at.metric[0].value == "Egyptian cat"
    sums = [total for _, total in panel_stats(at)]
    assert len(sums) == 3
    # a CAM's pixel sum is no output difference: shown for IG only
    assert sums[:2] == ["n/a (not additive)"] * 2 and sums[2] != "n/a (not additive)"
    captions = "\n".join(c.value for c in at.caption)
    assert "layer=conv_head" in captions and "relu_attributions=true" in captions
    assert "7 x 7 cells" in captions  # the map's resolution is stated
    assert "no display smoothing" in captions  # Grad-CAM is drawn as computed
    # each CAM panel: the blended map and its colour bar under it; IG: the map only
    # (the input thumbnail and the disagreement map carry captions)
    assert len([im for im in at.image if not im.proto.imgs[0].caption]) == 3 + 2
    # an earlier stage is allowed, and the panel says so
    at.selectbox(key="grad_cam.layer").set_value("blocks.4")
    run(at)
    captions = "\n".join(c.value for c in at.caption)
    assert "blocks.4 is not the last convolutional stage" in captions  # (markdown-escaped after)
    assert "14 x 14 cells" in captions
    # Compare takes Grad-CAM like every method: the agreement matrix (automatic on images)
    # names it, and the re-predicting metrics wait for their buttons
    assert any("Grad-CAM" in str(c.proto.spec) and "Integrated Gradients" in str(c.proto.spec)
               for c in at.get("vega_lite_chart"))
    assert at.button(key="cmp.run.faithfulness") is not None


def test_grad_cam_png_carries_its_colour_bar(tiny_image, tiny_image_input):
    """The downloaded panel is what the screen shows: the map, then the colour bar."""
    import io

    from PIL import Image

    from dashboard import export
    from dashboard.types import Input
    from explainers import run_method
    enc = tiny_image.encode(tiny_image_input)
    inp = Input(enc, tiny_image.predict(enc))
    sizes = {}
    for name in ("grad_cam", "saliency"):
        a = run_method(tiny_image, enc, name, target=0)
        sizes[name] = Image.open(io.BytesIO(export.panel_png(tiny_image, inp, a, 1.0))).size
    assert sizes["grad_cam"][1] > sizes["saliency"][1] + 20  # the bar and its labels
