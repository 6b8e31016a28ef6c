"""``vlmzoo serve``: the OpenAI-compatible server (serve/ holds it; this is the command)."""

from __future__ import annotations

import click

from vlmzoo.cli.output import console, fail, styled


@click.command()
@click.option("--model", "model_args", multiple=True, required=True,
              help="model to serve (catalog id, hub id or folder); ID=NAME serves NAME as ID. Repeatable.")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", type=int, default=8000, show_default=True, help="0 picks a free port")
@click.option("--api-key", default=None, envvar="VLMZOO_API_KEY",
              help="require 'Authorization: Bearer KEY' (default: $VLMZOO_API_KEY; none: open)")
@click.option("--allow-image-urls", is_flag=True,
              help="fetch http(s) image URLs (public addresses only, size and time limited)")
@click.option("--max-batch", type=int, default=8, show_default=True, help="chats answered together at most")
@click.option("--batch-window-ms", type=float, default=10.0, show_default=True,
              help="how long a chat waits for others to batch with")
@click.option("--max-tokens", type=int, default=2048, show_default=True, help="cap on new tokens per completion")
@click.option("--max-images", type=int, default=8, show_default=True, help="images per request")
@click.option("--max-pixels", type=int, default=16_000_000, show_default=True, help="pixels per image")
@click.option("--max-request-pixels", type=int, default=32_000_000, show_default=True,
              help="pixels of all images of one request together")
@click.option("--max-body-mb", type=float, default=32.0, show_default=True, help="request body size")
@click.option("--dtype", default=None, help="float32, bfloat16 or float16 (default: the model's CPU choice)")
@click.option("--device", default=None, help="cpu or cuda (default: cuda if present)")
@click.option("--log-level", default="info", show_default=True)
def serve(model_args, host, port, api_key, allow_image_urls, max_batch, batch_window_ms, max_tokens, max_images,
          max_pixels, max_request_pixels, max_body_mb, dtype, device, log_level):
    """Serve models over the OpenAI API: /v1/chat/completions, /v1/embeddings, /v1/models.

    Any OpenAI client works: base_url=http://HOST:PORT/v1. Interactive API docs at /docs.
    """
    from vlmzoo.extras import require

    for module in ("fastapi", "uvicorn"):
        require(module, "serve", "vlmzoo serve")
    from vlmzoo.loading import load
    from vlmzoo.serve import Limits, bind, build_app, parse_model_arg, run

    if max_batch < 1:
        fail(f"--max-batch must be at least 1, got {max_batch}")
    try:
        limits = Limits(max_body_bytes=int(max_body_mb * 2**20), max_images=max_images, max_pixels=max_pixels,
                        max_request_pixels=max_request_pixels,
                        max_tokens=max_tokens, default_max_tokens=min(256, max_tokens),
                        allow_image_urls=allow_image_urls)
    except ValueError as e:
        fail(f"server limits: {e}")
    if host not in ("127.0.0.1", "localhost", "::1") and not api_key:
        console(stderr=True).print(styled("warning:", "yellow", f" listening on {host} with no API key: anyone "
                                          "who can reach this address can use the models"))
    models = {}
    for arg in model_args:
        served_as, name = parse_model_arg(arg)
        if served_as in models:
            fail(f"--model {arg}: the id {served_as!r} is served twice")
        with console(stderr=True).status(f"loading {name}"):
            models[served_as] = load(name, device=device, dtype=dtype, allow_urls=allow_image_urls,
                                     max_pixels=max_pixels)
    app = build_app(models, limits=limits, api_key=api_key, max_batch=max_batch, window=batch_window_ms / 1000)
    try:
        sock = bind(host, port)
    except OSError as e:
        fail(f"cannot listen on {host}:{port}: {e.strerror or e}")
    shown = f"[{host}]" if ":" in host else host
    # one line a script can wait for (tests and supervisors read the real port from it)
    click.echo(f"vlmzoo serve: listening on http://{shown}:{sock.getsockname()[1]}/v1 "
               f"(models: {', '.join(models)})", err=True)
    run(app, sock, log_level=log_level)
