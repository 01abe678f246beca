"""/v1/images/generations and /v1/images/edits through the relay with the official SDK: what the
client sends reaches the provider unchanged (every file byte, every field), and billing is exact."""

from __future__ import annotations

import base64
import hashlib
import io
import os

import httpx
import openai
import pytest
from PIL import Image

from relay.usage import Usage
from tests.e2e.billing_support import balance, sell_cost, settled_balance
from tests.emulator.images import IMAGE_INPUT_TOKENS, OUTPUT_TOKENS
from tests.emulator.tokens import text_tokens

MODEL = "gpt-image-2"


def image_bytes(color: str, fmt: str = "PNG", size: tuple[int, int] = (64, 48), mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, fmt)
    return buffer.getvalue()


def noise_png(side: int) -> bytes:
    """Incompressible, so the file is about 3 × side² bytes."""
    buffer = io.BytesIO()
    Image.frombytes("RGB", (side, side), os.urandom(3 * side * side)).save(buffer, "PNG")
    return buffer.getvalue()


def part(filename: str, data: bytes, content_type: str) -> dict:
    """A file part as the emulator records it."""
    return {"filename": filename, "content_type": content_type, "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest()}


def decoded(b64: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    image.load()
    return image


def received(emulator, path: str) -> list:
    return [r for r in emulator.requests if r.path == path]


def auth(account) -> dict[str, str]:
    return {"Authorization": f"Bearer {account.key}"}


# -- generations -----------------------------------------------------------------------------------

def test_generate_passes_every_option_and_decodes_to_png(openai_client, emulator) -> None:
    options = {"prompt": "A clean product render of a glass teapot", "size": "1024x1536", "quality": "low",
               "n": 2, "response_format": "b64_json", "background": "transparent", "output_format": "png",
               "moderation": "low", "user": "end-user-7"}
    result = openai_client.images.generate(model=MODEL, **options)
    assert len(result.data) == 2
    for item in result.data:
        image = decoded(item.b64_json)
        assert image.format == "PNG" and image.mode == "RGBA"  # transparent background honoured
    [sent] = received(emulator, "/v1/images/generations")
    assert sent.json == {"model": MODEL, **options}
    assert result.usage.output_tokens == OUTPUT_TOKENS["low"]["1024x1536"] * 2


def test_generate_url_response_format_is_passed_on(openai_client, emulator) -> None:
    # LiteLLM drops response_format for gpt-image models unless the relay forwards it itself.
    result = openai_client.images.generate(model=MODEL, prompt="a teapot", response_format="url")
    assert result.data[0].b64_json is None
    png = httpx.get(result.data[0].url).content
    assert Image.open(io.BytesIO(png)).format == "PNG"
    assert received(emulator, "/v1/images/generations")[0].json["response_format"] == "url"


# -- edits: multipart ------------------------------------------------------------------------------

def test_edit_with_one_uploaded_png(openai_client, emulator) -> None:
    source = image_bytes("teal")
    result = openai_client.images.edit(model=MODEL, image=("input.png", source, "image/png"),
                                       prompt="Replace the background with a bright studio setup",
                                       response_format="b64_json")
    assert decoded(result.data[0].b64_json).format == "PNG"
    [sent] = received(emulator, "/v1/images/edits")
    assert sent.form == {
        "model": [MODEL],
        "prompt": ["Replace the background with a bright studio setup"],
        "response_format": ["b64_json"],
        "image": [part("input.png", source, "image/png")],  # the field name stays `image`
    }


def test_edit_with_several_images_and_a_mask(openai_client, emulator) -> None:
    first, second = image_bytes("red", size=(80, 80)), image_bytes("blue", "JPEG", size=(80, 80))
    mask = image_bytes((0, 0, 0, 0), size=(80, 80), mode="RGBA")
    result = openai_client.images.edit(
        model=MODEL, prompt="Put both products on one table", n=2, size="1024x1024", quality="low",
        image=[("shelf.png", first, "image/png"), ("lamp.jpg", second, "image/jpeg")],
        mask=("mask.png", mask, "image/png"), background="opaque", output_format="png", input_fidelity="high",
    )
    assert len(result.data) == 2
    [sent] = received(emulator, "/v1/images/edits")
    assert sent.form["image[]"] == [part("shelf.png", first, "image/png"), part("lamp.jpg", second, "image/jpeg")]
    assert sent.form["mask"] == [part("mask.png", mask, "image/png")]
    text = {k: v for k, v in sent.form.items() if k not in ("image[]", "mask")}
    assert text == {"model": [MODEL], "prompt": ["Put both products on one table"], "n": ["2"],
                    "size": ["1024x1024"], "quality": ["low"], "background": ["opaque"],
                    "output_format": ["png"], "input_fidelity": ["high"]}
    assert result.usage.input_tokens_details.image_tokens == 2 * IMAGE_INPUT_TOKENS


def test_curl_style_repeated_image_fields_arrive_unchanged(relay, account, emulator) -> None:
    """`-F image=@a.png -F image=@b.webp` as curl sends it, with a file name that is not ASCII."""
    first, second = image_bytes("green"), image_bytes("yellow", "WEBP")
    response = httpx.post(
        relay.url + "/v1/images/edits", headers=auth(account), timeout=30,
        data={"model": MODEL, "prompt": "merge", "quality": "medium", "output_format": "webp"},
        files=[("image", ("café.png", first, "image/png")), ("image", ("b.webp", second, "image/webp"))],
    )
    assert response.status_code == 200, response.text
    [sent] = received(emulator, "/v1/images/edits")
    assert sent.form["image"] == [part("café.png", first, "image/png"), part("b.webp", second, "image/webp")]
    assert sent.form["output_format"] == ["webp"] and sent.form["quality"] == ["medium"]


# -- edits: JSON image inputs ----------------------------------------------------------------------

def test_edit_with_json_data_url_and_file_id(relay, account, emulator) -> None:
    data_url = "data:image/png;base64," + base64.b64encode(image_bytes("purple")).decode()
    body = {"model": MODEL, "prompt": "make it night", "images": [{"image_url": data_url}, {"file_id": "file-abc"}],
            "size": "1024x1024", "quality": "low", "response_format": "b64_json"}
    response = httpx.post(relay.url + "/v1/images/edits", json=body, headers=auth(account), timeout=30)
    assert response.status_code == 200, response.text
    assert decoded(response.json()["data"][0]["b64_json"]).format == "PNG"
    [sent] = received(emulator, "/v1/images/edits")
    assert sent.json == body and sent.form is None  # forwarded as JSON, the data URL intact


@pytest.mark.parametrize("images, field", [
    ([{"image_url": "data:image/png;base64," + base64.b64encode(b"not an image").decode()}], "images[0].image_url"),
    ([{"file_id": "file-1"}, {"image_url": "data:image/png;base64,@@@"}], "images[1].image_url"),
    ([{"image_url": "ftp://example.com/a.png"}], "images[0].image_url"),
    ([{"file_id": "file-1", "image_url": "https://example.com/a.png"}], "images[0]"),
    ([], "images"),
])
def test_bad_json_image_input_is_400_naming_it(relay, account, emulator, images, field) -> None:
    body = {"model": MODEL, "prompt": "x", "images": images}
    response = httpx.post(relay.url + "/v1/images/edits", json=body, headers=auth(account), timeout=30)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == field
    assert received(emulator, "/v1/images/edits") == []


# -- edits: refused uploads ------------------------------------------------------------------------

def test_corrupt_upload_is_400_naming_the_field(openai_client, emulator) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.images.edit(model=MODEL, prompt="x", image=("input.png", b"GIF? no, just text", "image/png"))
    error = caught.value.body
    assert error["param"] == "image" and error["code"] == "invalid_image"
    assert "'image'" in error["message"] and "input.png" in error["message"]

    truncated = image_bytes("white", size=(200, 200))[:-40]  # cut inside the image data
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.images.edit(model=MODEL, prompt="x", image=("ok.png", image_bytes("black"), "image/png"),
                                  mask=("mask.png", truncated, "image/png"))
    assert caught.value.body["param"] == "mask"
    assert received(emulator, "/v1/images/edits") == []


def test_missing_image_is_400(relay, account) -> None:
    response = httpx.post(relay.url + "/v1/images/edits", headers=auth(account),
                          data={"model": MODEL, "prompt": "x"}, files={"unused": ("a.txt", b"", "text/plain")})
    assert response.status_code == 400 and response.json()["error"]["param"] == "image"


@pytest.fixture
def small_upload_limit(relay, monkeypatch) -> int:
    limit = 100_000
    monkeypatch.setattr(relay.state.settings, "max_upload_bytes", limit)
    return limit


def test_oversize_upload_is_413(openai_client, emulator, small_upload_limit) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        openai_client.images.edit(model=MODEL, prompt="x", image=("big.png", noise_png(200), "image/png"))
    assert caught.value.status_code == 413
    assert caught.value.body["code"] == "request_too_large"
    assert f"{small_upload_limit} bytes" in caught.value.body["message"]
    assert received(emulator, "/v1/images/edits") == []


def test_oversize_chunked_upload_is_413(relay, account, small_upload_limit) -> None:
    """No content-length: the limit is enforced while the body streams in."""
    body = b"--b\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n\r\n"
    chunks = [body] + [b"\0" * 10_000] * 20

    response = httpx.post(relay.url + "/v1/images/edits", content=iter(chunks), timeout=30,
                          headers={**auth(account), "content-type": "multipart/form-data; boundary=b"})
    assert response.status_code == 413


# -- wrong mode ------------------------------------------------------------------------------------

def test_image_model_on_chat_is_400(openai_client, emulator) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "draw"}])
    message = caught.value.body["message"]
    assert "'gpt-image-2' is an image generation model" in message and "/v1/images/generations" in message
    assert caught.value.body["code"] == "wrong_model_mode"
    assert emulator.requests == []


@pytest.mark.parametrize("endpoint", ["generate", "edit"])
def test_chat_model_on_images_is_400(openai_client, emulator, endpoint) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        if endpoint == "generate":
            openai_client.images.generate(model="gpt-5.5", prompt="a teapot")
        else:
            openai_client.images.edit(model="gpt-5.5", prompt="x", image=("a.png", image_bytes("red"), "image/png"))
    message = caught.value.body["message"]
    assert "'gpt-5.5' is a chat model" in message and "/v1/chat/completions" in message
    assert emulator.requests == []


# -- billing ---------------------------------------------------------------------------------------

def test_edit_charge_equals_sell_price_times_reported_usage(relay, account, openai_client) -> None:
    before = balance(relay, account.id)
    prompt = "Replace the background with a bright studio setup"
    result = openai_client.images.edit(model=MODEL, prompt=prompt, quality="high", size="1024x1024",
                                       image=[("a.png", image_bytes("red"), "image/png"),
                                              ("b.png", image_bytes("blue"), "image/png")])
    # What the emulator reported: prompt text tokens, 2 input images, one high-quality square image.
    reported = Usage(input_tokens=text_tokens(prompt), image_input_tokens=2 * IMAGE_INPUT_TOKENS,
                     image_output_tokens=OUTPUT_TOKENS["high"]["1024x1024"])
    expected = sell_cost(relay, MODEL, reported)
    assert result.usage.input_tokens == reported.prompt_tokens
    assert result.usage.output_tokens == reported.image_output_tokens
    assert before - settled_balance(relay, account.id) == expected
    assert result.usage.model_extra["cost"] == pytest.approx(expected / 1e9)


def test_generation_charge_equals_sell_price_times_reported_usage(relay, account, openai_client) -> None:
    before = balance(relay, account.id)
    prompt = "A walnut table"
    openai_client.images.generate(model=MODEL, prompt=prompt, size="1536x1024", quality="medium", n=3)
    reported = Usage(input_tokens=text_tokens(prompt), image_output_tokens=3 * OUTPUT_TOKENS["medium"]["1536x1024"])
    assert before - settled_balance(relay, account.id) == sell_cost(relay, MODEL, reported)
