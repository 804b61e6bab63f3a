"""Drawing of the synthetic pedestrians: one identity's look plus one shot's geometry -> an RGB image.

Body coordinates are in person units: the person is 1 tall, x = 0 is the body axis (+x is the person's front
in a side view), y = 0 the top of the head and y = 1 the soles. Everything is drawn at SUPERSAMPLE times the
output size with PIL ImageDraw and box-downsampled, which anti-aliases the edges; lighting, blur and noise are
applied to the small image with numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

SUPERSAMPLE = 2

COLOUR_RGB = {
    "black": (28, 28, 32),
    "white": (236, 236, 232),
    "grey": (128, 128, 132),
    "red": (192, 32, 38),
    "blue": (38, 78, 176),
    "green": (40, 132, 62),
    "yellow": (232, 202, 44),
    "pink": (236, 142, 172),
    "purple": (118, 58, 152),
    "brown": (112, 72, 42),
    "orange": (236, 122, 30),
}
HAIR_RGB = {"black": (24, 20, 18), "brown": (96, 60, 32), "blonde": (214, 182, 108), "grey": (170, 170, 170)}
DENIM_RGB = {"blue": (62, 92, 142), "black": (40, 42, 50), "grey": (112, 116, 124)}
SKIN_TONES = ((236, 200, 172), (222, 178, 146), (196, 148, 112), (156, 108, 76), (112, 76, 52))
_STRAP = (46, 46, 50)
_LENS = (18, 18, 22)

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class Look:
    """What one identity looks like: named attributes plus hidden nuisance (exact shades, body shape)."""

    attrs: dict[str, str | None]  # flat keys such as "upper.colour" -> "red" (None = absent)
    shades: dict[str, RGB]  # colour attribute key -> this identity's exact RGB
    skin: RGB
    shoulder: float  # half-width of the shoulders, person units
    hip: float  # half-width of the hips
    stature: float  # 0.9..1.0, scales the drawn height
    hand: int  # +1 right, -1 left: the hand that carries the object


@dataclass(frozen=True)
class Shot:
    """One image's viewpoint, pose, framing and disturbances."""

    view: str  # front | back | side
    mirror: bool  # left-right mirrored (a side view then faces left; a bag changes hands)
    stride: float  # 0..1 leg spread
    swing: float  # -1..1 arm swing
    scale: float  # person height as a share of the usable height
    dx: float  # -1..1 horizontal offset
    dy: float  # 0..1 vertical placement in the free space
    occlusion: str | None  # feet | legs | side | None
    occlusion_side: int  # +1 / -1 image side covered by a side occluder


def _dark(c: RGB, f: float = 0.6) -> RGB:
    return (int(c[0] * f), int(c[1] * f), int(c[2] * f))


class _Pen:
    """Maps person units to canvas pixels and draws; `flip` = -1 mirrors x."""

    def __init__(self, draw: ImageDraw.ImageDraw, cx: float, top: float, ph: float, flip: int, outline=True):
        self.draw, self.cx, self.top, self.ph, self.flip, self.outline = draw, cx, top, ph, flip, outline

    def pt(self, x: float, y: float) -> tuple[float, float]:
        return (self.cx + self.flip * x * self.ph, self.top + y * self.ph)

    def _line(self, fill):
        return _dark(fill) if self.outline and isinstance(fill, tuple) else None

    def poly(self, pts, fill) -> None:
        self.draw.polygon([self.pt(x, y) for x, y in pts], fill=fill, outline=self._line(fill))

    def box(self, x, y, rx, ry):
        (x0, y0), (x1, y1) = self.pt(x - rx, y - ry), self.pt(x + rx, y + ry)
        return [min(x0, x1), y0, max(x0, x1), y1]

    def ellipse(self, x, y, rx, ry, fill, outline: bool = True) -> None:
        self.draw.ellipse(self.box(x, y, rx, ry), fill=fill, outline=self._line(fill) if outline else None)

    def rect(self, x, y, rx, ry, fill, radius: float = 0.0) -> None:
        r = int(radius * self.ph)
        self.draw.rounded_rectangle(self.box(x, y, rx, ry), radius=r, fill=fill, outline=self._line(fill))

    def limb(self, a, b, width: float, fill) -> None:
        w = max(1, round(width * self.ph))
        self.draw.line([self.pt(*a), self.pt(*b)], fill=fill, width=w)
        for x, y in (a, b):
            self.ellipse(x, y, width / 2, width / 2, fill, outline=False)

    def chord(self, x, y, rx, ry, fill) -> None:  # the top half of an ellipse
        self.draw.chord(self.box(x, y, rx, ry), 180, 360, fill=fill, outline=self._line(fill))


def _pattern_fill(size, colour: RGB, pattern: str, second: RGB | None, top: float, ph: float) -> Image.Image:
    """A full-canvas RGBA image of the garment colour with stripes or checks in the second colour."""
    if pattern not in ("stripes", "checks") or second is None:
        return Image.new("RGBA", size, (*colour, 255))
    w, h = size
    period = 0.045 * ph
    rows = (np.arange(h) - top) % period
    if pattern == "stripes":
        on = np.broadcast_to((rows < period * 0.45)[:, None], (h, w))
    else:  # thin lines both ways: a plaid
        on = (rows < period * 0.22)[:, None] | (np.arange(w) % period < period * 0.22)[None, :]
    arr = np.where(on[..., None], np.array((*second, 255), np.uint8), np.array((*colour, 255), np.uint8))
    return Image.fromarray(arr.astype(np.uint8), "RGBA")


def _body_side(look: Look, view: str) -> int:
    """Side (+1 = +x, person units) of the carrying hand: seen from the front, the person's right is at -x."""
    return {"front": -look.hand, "back": look.hand}.get(view, 1)


def item_side(look: Look, shot: Shot) -> int:
    """Image side (+1 right) of the carrying hand, after the shot's mirroring."""
    side = _body_side(look, shot.view)
    return -side if shot.mirror else side


def _geometry(look: Look, shot: Shot) -> dict:
    """Shoulder/hand and hip/ankle positions for this pose, person units. Limbs are listed -x first, which in
    a side view is the far one; the near arm carries any object there."""
    s, a = shot.stride, shot.swing
    side = _body_side(look, shot.view)
    item_arm = 1 if shot.view == "side" or side > 0 else 0
    held = look.attrs["carried.type"] in ("handbag", "umbrella")
    lift = [0.0, 0.0]
    lift[1 - item_arm if held else 0] = 0.03 * abs(a)  # a forward-swinging arm looks shorter
    if shot.view == "side":
        reach = [-0.14 * a, 0.14 * a * (0.3 if held else 1.0)]  # a carried bag swings less
        arms = [((0.0, 0.19), (reach[i], 0.52 - lift[i])) for i in (0, 1)]
        legs = [((0.0, 0.53), (x * 0.13 * s, 0.955)) for x in (1, -1)]
    else:
        sw = look.shoulder
        arms = [((x * (sw - 0.025), 0.19), (x * (sw + 0.01), 0.52 - lift[i])) for i, x in enumerate((-1, 1))]
        legs = [((x * 0.048, 0.53), (x * (0.05 + 0.03 * s), 0.955 - 0.02 * s * (x < 0))) for x in (-1, 1)]
    return {"arms": arms, "legs": legs, "item_arm": item_arm, "item_side": side}


def _draw_lower(pen: _Pen, look: Look, shot: Shot, g: dict) -> None:
    kind, skin = look.attrs["lower.type"], look.skin
    cloth = look.shades.get("lower.colour", skin)
    side = shot.view == "side"
    for i, (hip, ankle) in enumerate(g["legs"]):
        dim = 0.8 if side and i == 0 else 1.0  # the far leg of a side view is in shade
        leg_cloth, leg_skin = _dark(cloth, dim), _dark(skin, dim)
        pen.limb(hip, ankle, 0.058, leg_skin)
        knee = (hip[0] + 0.3 * (ankle[0] - hip[0]), hip[1] + 0.3 * (ankle[1] - hip[1]))
        if kind in ("trousers", "jeans"):
            pen.limb(hip, ankle, 0.066, leg_cloth)
        elif kind == "shorts":
            pen.limb(hip, knee, 0.07, leg_cloth)
        shoe = _dark(look.shades["feet.colour"], dim)
        fwd = 0.025 if side else 0.0
        if look.attrs["feet.type"] == "boots":
            pen.rect(ankle[0], 0.92, 0.034, 0.05, shoe, radius=0.01)
        pen.ellipse(ankle[0] + fwd, 0.965, 0.05 if side else 0.036, 0.022, shoe)
    hw = 0.07 if side else look.hip
    if kind in ("trousers", "jeans", "shorts"):
        # the waist stays inside the top's outline, so a legs occluder hides the whole garment
        pen.poly([(-hw + 0.012, 0.46), (hw - 0.012, 0.46), (hw, 0.56), (0.0, 0.585), (-hw, 0.56)], cloth)
        if kind == "jeans":  # seams and a waistband tell denim from trousers
            pen.limb((-hw + 0.01, 0.47), (hw - 0.01, 0.47), 0.012, _dark(cloth, 0.7))
            for hip, ankle in g["legs"]:
                pen.limb(hip, ankle, 0.008, tuple(min(255, v + 40) for v in cloth))
    elif kind == "skirt":
        pen.poly([(-hw + 0.015, 0.46), (hw - 0.015, 0.46), (hw + 0.045, 0.67), (-hw - 0.045, 0.67)], cloth)


def _draw_upper(canvas: Image.Image, pen: _Pen, look: Look, shot: Shot, g: dict) -> None:
    at, sh = look.attrs, look.shades
    kind, colour = at["upper.type"], sh["upper.colour"]
    side, sw, hw = shot.view == "side", look.shoulder, look.hip
    hem = {"coat": 0.72, "dress": 0.7, "jacket": 0.55}.get(kind, 0.52)
    flare = {"dress": 0.05, "coat": 0.02}.get(kind, 0.0)
    sleeve_len = {"t-shirt": 0.35, "dress": 0.22}.get(kind, 0.93)
    if side:
        d = 0.075
        torso = [
            (-d + 0.01, 0.155),
            (d - 0.01, 0.155),
            (d, 0.2),
            (d - 0.01, 0.42),
            (d + flare, hem),
            (-d - flare, hem),
            (-d - 0.005, 0.42),
            (-d, 0.2),
        ]
    else:
        w = hw + flare
        torso = [
            (-sw + 0.02, 0.155),
            (sw - 0.02, 0.155),
            (sw, 0.185),
            (hw - 0.005, 0.42),
            (w, hem),
            (-w, hem),
            (-hw + 0.005, 0.42),
            (-sw, 0.185),
        ]
    pattern, second = at["upper.pattern"], sh.get("upper.pattern_colour")
    fill = _pattern_fill(canvas.size, colour, pattern, second, pen.top, pen.ph)

    def sleeve(i: int) -> tuple:
        shoulder, hand = g["arms"][i]
        return shoulder, (
            shoulder[0] + sleeve_len * (hand[0] - shoulder[0]),
            shoulder[1] + sleeve_len * (hand[1] - shoulder[1]),
        )

    def bare_arm(i: int, dim: float = 1.0) -> None:
        shoulder, hand = g["arms"][i]
        pen.limb(shoulder, hand, 0.044, _dark(look.skin, dim))
        pen.ellipse(*hand, 0.022, 0.024, _dark(look.skin, dim))

    def paste(draw_mask) -> None:
        mask = Image.new("L", canvas.size, 0)
        draw_mask(_Pen(ImageDraw.Draw(mask), pen.cx, pen.top, pen.ph, pen.flip, outline=False))
        canvas.paste(fill, (0, 0), mask)

    near = [1] if side else [0, 1]
    if side:  # the far arm is behind the torso, in shade
        bare_arm(0, 0.8)
        pen.limb(*sleeve(0), 0.058, _dark(colour, 0.75))
    paste(lambda m: m.poly(torso, 255))
    for i in near:
        bare_arm(i)
    paste(lambda m: [m.limb(*sleeve(i), 0.058, 255) for i in near])
    pen.draw.polygon([pen.pt(*p) for p in torso], outline=_dark(colour))
    front = shot.view == "front"
    if kind in ("jacket", "coat") and front:
        inner = sh["upper.inner_colour"]
        pen.poly([(-0.032, 0.16), (0.032, 0.16), (0.028, 0.45), (-0.028, 0.45)], inner)
        pen.limb((0.034, 0.17), (0.034, hem - 0.01), 0.008, _dark(colour, 0.5))
        pen.limb((-0.034, 0.17), (-0.034, hem - 0.01), 0.008, _dark(colour, 0.5))
    if kind == "shirt" and not side:
        collar = tuple(min(255, v + 30) for v in colour)
        pen.poly([(-0.035, 0.15), (0.0, 0.19), (-0.01, 0.2), (-0.045, 0.17)], collar)
        pen.poly([(0.035, 0.15), (0.0, 0.19), (0.01, 0.2), (0.045, 0.17)], collar)
        if front:
            pen.limb((0.0, 0.2), (0.0, hem - 0.01), 0.006, _dark(colour, 0.55))
    if kind == "sweater":
        pen.rect(0.0, hem - 0.012, 0.075 if side else hw, 0.012, _dark(colour, 0.75))
    if pattern == "logo" and front and second is not None:
        pen.ellipse(0.0, 0.27, 0.035, 0.03, second)
        pen.ellipse(0.0, 0.27, 0.014, 0.012, colour, outline=False)


def _draw_head(pen: _Pen, look: Look, shot: Shot, behind: bool) -> None:
    """`behind` = draw only the long hair that lies behind the body (before the torso)."""
    at, view = look.attrs, shot.view
    hair = look.shades["head.hair_colour"]
    long = at["head.hair_length"] == "long"
    if behind:
        if long and view == "front":
            pen.poly([(-0.06, 0.06), (0.06, 0.06), (0.07, 0.25), (-0.07, 0.25)], _dark(hair, 0.8))
        return
    if view == "front":
        pen.ellipse(0.0, 0.07, 0.056, 0.07, hair)
        if long:
            for s in (-1, 1):
                pen.poly([(s * 0.035, 0.06), (s * 0.06, 0.07), (s * 0.068, 0.26), (s * 0.04, 0.25)], hair)
        pen.ellipse(0.0, 0.086, 0.045, 0.056, look.skin)
        for s in (-1, 1):
            pen.ellipse(s * 0.018, 0.08, 0.005, 0.005, (40, 30, 30), outline=False)
    elif view == "back":
        pen.ellipse(0.0, 0.072, 0.054, 0.068, hair)
        if long:
            pen.poly([(-0.055, 0.06), (0.055, 0.06), (0.068, 0.27), (-0.068, 0.27)], hair)
    else:
        pen.ellipse(0.005, 0.075, 0.048, 0.066, look.skin)
        pen.ellipse(-0.004, 0.068, 0.05, 0.066, hair)
        pen.ellipse(0.02, 0.088, 0.034, 0.052, look.skin, outline=False)
        pen.poly([(0.048, 0.07), (0.064, 0.092), (0.046, 0.1)], look.skin)
        pen.ellipse(0.036, 0.08, 0.005, 0.005, (40, 30, 30), outline=False)
        if long:
            pen.poly([(-0.05, 0.06), (-0.015, 0.07), (-0.02, 0.27), (-0.062, 0.26)], hair)
    hat = at["head.hat"]
    if hat is not None:
        hc = look.shades["head.hat_colour"]
        pen.chord(0.0, 0.058 if hat == "beanie" else 0.052, 0.06, 0.058, hc)
        if hat == "beanie":
            pen.rect(0.0, 0.052, 0.058, 0.01, _dark(hc, 0.8))
        elif view == "front":
            pen.ellipse(0.0, 0.052, 0.062, 0.012, _dark(hc, 0.85))
        elif view == "side":
            pen.poly([(0.02, 0.042), (0.105, 0.05), (0.1, 0.06), (0.02, 0.058)], _dark(hc, 0.85))
    if at["head.glasses"] is not None and view != "back":
        if view == "front":
            for s in (-1, 1):
                pen.rect(s * 0.019, 0.079, 0.014, 0.008, _LENS)
            pen.limb((-0.006, 0.078), (0.006, 0.078), 0.004, _LENS)
        else:
            pen.rect(0.034, 0.079, 0.014, 0.008, _LENS)
            pen.limb((0.02, 0.078), (-0.01, 0.074), 0.004, _LENS)


def _draw_carried(pen: _Pen, look: Look, shot: Shot, g: dict) -> None:
    kind = look.attrs["carried.type"]
    if kind is None:
        return
    colour, view = look.shades["carried.colour"], shot.view
    hand = g["arms"][g["item_arm"]][1]
    s = g["item_side"] if view != "side" else 1
    if kind == "backpack":
        if view == "front":
            for x in (-0.065, 0.065):
                pen.limb((x, 0.165), (x * 1.1, 0.4), 0.024, _STRAP)
        elif view == "back":
            pen.rect(0.0, 0.31, 0.088, 0.12, colour, radius=0.03)
            pen.rect(0.0, 0.38, 0.062, 0.045, _dark(colour, 0.8), radius=0.015)
        else:
            pen.rect(-0.115, 0.31, 0.045, 0.12, colour, radius=0.025)
            pen.limb((-0.03, 0.17), (0.04, 0.3), 0.02, _dark(colour, 0.7))
    elif kind == "handbag":
        x, y = hand
        pen.draw.arc(pen.box(x, y + 0.035, 0.03, 0.03), 180, 360, fill=_dark(colour, 0.6), width=2)
        pen.rect(x, y + 0.08, 0.045, 0.045, colour, radius=0.01)
    elif kind == "shoulder bag":
        if view == "side":
            pen.limb((0.0, 0.17), (0.0, 0.43), 0.014, _STRAP)
            pen.rect(0.0, 0.47, 0.05, 0.05, colour, radius=0.01)
        else:
            pen.limb((-s * (look.shoulder - 0.03), 0.165), (s * look.hip, 0.43), 0.014, _STRAP)
            pen.rect(s * (look.hip + 0.01), 0.47, 0.045, 0.05, colour, radius=0.01)
    elif kind == "umbrella":
        x, y = hand
        pen.draw.arc(pen.box(x - 0.015, y - 0.01, 0.015, 0.02), 180, 360, fill=_STRAP, width=3)
        pen.poly([(x - 0.02, y + 0.03), (x + 0.02, y + 0.03), (x + 0.03, 0.9), (x + 0.014, 0.9)], colour)
        pen.limb((x + 0.022, 0.9), (x + 0.024, 0.96), 0.006, _STRAP)


def _muted(rng: np.random.Generator) -> RGB:
    r, g, b = rng.uniform(40, 210, 3).tolist()
    grey = 0.6 * (r + g + b) / 3  # mostly grey: backgrounds should not outshout clothes, but may share hues
    return (int(0.4 * r + grey), int(0.4 * g + grey), int(0.4 * b + grey))


def _background(w: int, h: int, rng: np.random.Generator) -> Image.Image:
    img = Image.new("RGB", (w, h), _muted(rng))
    draw = ImageDraw.Draw(img)
    horizon = int(h * rng.uniform(0.45, 0.8))
    draw.rectangle([0, horizon, w, h], fill=_muted(rng))
    for y in range(horizon, h, int(rng.integers(10, 30))):  # paving
        draw.line([0, y, w, y], fill=_muted(rng), width=1)
    palette = list(COLOUR_RGB.values())
    for _ in range(int(rng.integers(3, 9))):  # windows, doors, signs, shop fronts
        x0, y0 = rng.uniform(-0.2, 1.0) * w, rng.uniform(-0.1, 0.7) * h
        x1, y1 = x0 + rng.uniform(0.1, 0.6) * w, y0 + rng.uniform(0.05, 0.4) * h
        fill = palette[int(rng.integers(len(palette)))] if rng.random() < 0.2 else _muted(rng)
        draw.rectangle([x0, y0, x1, y1], fill=fill)
    for _ in range(int(rng.integers(0, 3))):  # poles
        x = rng.uniform(0, w)
        draw.line(
            [x, 0, x, horizon + rng.uniform(0, h - horizon)], fill=_muted(rng), width=int(rng.integers(2, 6))
        )
    for _ in range(int(rng.integers(0, 3))):  # distant passers-by
        x, y, s = rng.uniform(0, w), horizon - rng.uniform(0, 0.1) * h, rng.uniform(0.12, 0.3) * h
        draw.rectangle(
            [x - s * 0.12, y - s * 0.8, x + s * 0.12, y - s * 0.35],
            fill=palette[int(rng.integers(len(palette)))],
        )
        draw.rectangle([x - s * 0.1, y - s * 0.35, x + s * 0.1, y], fill=_muted(rng))
        draw.ellipse([x - s * 0.07, y - s, x + s * 0.07, y - s * 0.8], fill=_muted(rng))
    return img


def _occluder(draw: ImageDraw.ImageDraw, shot: Shot, cx, top, ph, w, h, rng: np.random.Generator) -> None:
    colour = _muted(rng)
    if shot.occlusion == "side":
        edge = cx + shot.occlusion_side * ph * rng.uniform(0.0, 0.03)
        x0, x1 = sorted((edge, w + 1 if shot.occlusion_side > 0 else -1))
        box = [x0, top - rng.uniform(0, 0.3) * ph, x1, h]
    else:
        # feet: from above the boots' tops; legs: from above the hands, so hand-held objects hide too
        y0 = top + ph * (rng.uniform(0.8, 0.86) if shot.occlusion == "feet" else rng.uniform(0.44, 0.48))
        half = ph * rng.uniform(0.3, 0.6)
        box = [cx - half, y0, cx + half, h]
    draw.rectangle(box, fill=colour, outline=_dark(colour))
    step = int(rng.integers(6, 16))
    for y in range(int(box[1]) + step, h, step):  # slats of a bench, a fence or a car body
        draw.line([box[0], y, box[2], y], fill=_dark(colour, 0.8), width=1)


def render(look: Look, shot: Shot, height: int, width: int, rng: np.random.Generator) -> Image.Image:
    """Draw one image of `look` as framed by `shot`; `rng` drives the background and camera effects."""
    w, h = width * SUPERSAMPLE, height * SUPERSAMPLE
    canvas = _background(w, h, rng)
    ph = shot.scale * look.stature * min(0.94 * h, 2.2 * w)
    top = (h - ph) * (0.2 + 0.7 * shot.dy)
    cx = w / 2 + shot.dx * 0.1 * w
    layer = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    pen = _Pen(ImageDraw.Draw(layer), cx, top, ph, -1 if shot.mirror else 1)
    g = _geometry(look, shot)
    _draw_head(pen, look, shot, behind=True)
    if look.attrs["carried.type"] == "backpack" and shot.view == "side":
        _draw_carried(pen, look, shot, g)  # the bag sits behind the body
    _draw_lower(pen, look, shot, g)
    pen.rect(0.0, 0.15, 0.022, 0.03, look.skin)  # neck
    _draw_upper(layer, pen, look, shot, g)
    if not (look.attrs["carried.type"] == "backpack" and shot.view == "side"):
        _draw_carried(pen, look, shot, g)
    _draw_head(pen, look, shot, behind=False)  # after the bags: long hair falls over straps
    # cylindrical shading gives the flat drawing some volume: darken the layer towards the body's sides
    xs = (np.arange(w, dtype=np.float32) - cx) / (0.18 * ph)
    shade = (255 * (1.0 - 0.3 * np.clip(xs**2, 0, 1))).astype(np.uint8)
    shade_img = Image.fromarray(np.broadcast_to(shade[None, :], (h, w)).copy(), "L").convert("RGB")
    canvas.paste(ImageChops.multiply(layer.convert("RGB"), shade_img), (0, 0), layer)
    if shot.occlusion is not None:
        _occluder(ImageDraw.Draw(canvas), shot, cx, top, ph, w, h, rng)
    return _camera(canvas.reduce(SUPERSAMPLE), rng)


def _camera(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Lighting cast, low resolution, blur and sensor noise."""
    if rng.random() < 0.25:
        f = rng.uniform(0.5, 0.8)
        small = img.resize((max(8, int(img.width * f)), max(16, int(img.height * f))), Image.BILINEAR)
        img = small.resize(img.size, Image.BILINEAR)
    if rng.random() < 0.5:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.9)))
    arr = np.asarray(img, dtype=np.float32)
    gain = (rng.uniform(0.65, 1.25) * rng.uniform(0.88, 1.12, 3)).astype(np.float32)
    ramp = 1.0 + rng.uniform(-0.2, 0.2) * np.linspace(-1, 1, img.width, dtype=np.float32)
    arr = arr * gain[None, None, :] * ramp[None, :, None]
    arr += np.float32(rng.uniform(1.0, 7.0)) * rng.standard_normal(arr.shape, dtype=np.float32)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
