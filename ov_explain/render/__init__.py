"""Pictures from maps: normalising, colouring, overlays and PNG / JPEG bytes (:mod:`.maps`), picture grids
(:mod:`.grids`) and the HTML templates. Pure functions on arrays; it imports only numpy, OpenCV and jinja2."""

from ov_explain.render.maps import (
                                    COLORMAPS,
                                    blend_levels,
                                    colorize,
                                    colorize_rgba,
                                    draw_box,
                                    encode_jpeg,
                                    encode_png,
                                    frame_levels,
                                    normalize,
                                    overlay,
                                    resize,
                                    rgba_png,
)

__all__ = ["COLORMAPS", "blend_levels", "colorize", "colorize_rgba", "draw_box", "encode_jpeg", "encode_png",
           "frame_levels", "normalize", "overlay", "resize", "rgba_png"]
