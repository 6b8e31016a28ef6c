"""vlmzoo serve under load: dynamic batching against one request at a time, in one run.

The baseline is what a hand-written server does: each request runs ``ask`` alone while the
others wait (here: the same server with ``max_batch=1``). Both modes serve the same loaded
model, on 127.0.0.1, to C concurrent openai clients sending R chat requests in all, each with a
different picture and the same question, ``max_tokens`` N. Prints throughput (requests/s and
completion tokens/s), latency p50/p95 and the ratio.

    python bench/serve.py [--model qwen2-vl] [--clients 16] [--requests 32] [--max-tokens 24]

The model is a Qwen2-VL-2B-sized one with random bf16 weights (bench/generate.py builds it;
no downloads), or any folder or catalog name given with --path.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

QUESTION = "Describe this picture in a few words, saying what is in it and where the light comes from."


def pictures(n: int, size: int) -> list[str]:
    from serving import data_uri

    rng = np.random.default_rng(0)
    return [data_uri(Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)), "JPEG")
            for _ in range(n)]


def drive(url: str, model_id: str, uris: list[str], clients: int, max_tokens: int) -> dict:
    import openai

    client = openai.OpenAI(base_url=f"{url}/v1", api_key="bench", max_retries=0, timeout=3600)

    def one(uri):
        t = time.perf_counter()
        r = client.chat.completions.create(model=model_id, max_tokens=max_tokens, messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": uri}}, {"type": "text", "text": QUESTION}]}])
        return time.perf_counter() - t, r.usage.completion_tokens

    one(uris[0])  # warm-up, not timed
    t = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(one, uris))
    wall = time.perf_counter() - t
    latencies = sorted(r[0] for r in results)
    tokens = sum(r[1] for r in results)
    return {"wall": wall, "rps": len(uris) / wall, "tps": tokens / wall, "tokens": tokens,
            "p50": statistics.median(latencies), "p95": latencies[int(0.95 * (len(latencies) - 1))]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="qwen2-vl", help="a size bench/generate.py builds (smolvlm, qwen2-vl)")
    ap.add_argument("--path", default=None, help="serve this checkpoint folder or catalog name instead")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--requests", type=int, default=32)
    ap.add_argument("--max-tokens", type=int, default=24)
    ap.add_argument("--image-size", type=int, default=336)
    ap.add_argument("--max-batch", type=int, default=16)
    ap.add_argument("--window-ms", type=float, default=10.0)
    ap.add_argument("--dtype", default="bfloat16", help="as bench/generate.py measures (float32 for exact parity)")
    args = ap.parse_args()

    import torch

    import vlmzoo
    from serving import running
    from vlmzoo.serve import build_app

    with tempfile.TemporaryDirectory() as tmp:
        if args.path:
            path = args.path
        else:
            from generate import build

            print(f"building a {args.model}-sized model with random weights ...", flush=True)
            path = build(args.model, Path(tmp) / args.model)
        model = vlmzoo.load(path, dtype=args.dtype)
        print(f"model: {path} ({model.dtype}), torch threads {torch.get_num_threads()}, {args.clients} clients, "
              f"{args.requests} requests, max_tokens {args.max_tokens}, {args.image_size}px pictures", flush=True)
        uris = pictures(args.requests, args.image_size)
        rows = {}
        for label, max_batch, window in (("one at a time", 1, 0.0),
                                         ("dynamic batching", args.max_batch, args.window_ms / 1000)):
            model.batch_size = max_batch
            with running(build_app({"m": model}, max_batch=max_batch, window=window)) as url:
                rows[label] = r = drive(url, "m", uris, args.clients, args.max_tokens)
            print(f"{label:>17}: {r['rps']:.2f} req/s, {r['tps']:.1f} completion tok/s ({r['tokens']} tokens), "
                  f"latency p50 {r['p50']:.1f} s p95 {r['p95']:.1f} s, wall {r['wall']:.1f} s", flush=True)
        base, ours = rows["one at a time"], rows["dynamic batching"]
        print(f"throughput ratio (dynamic batching / one at a time): x{ours['rps'] / base['rps']:.2f} requests/s, "
              f"x{ours['tps'] / base['tps']:.2f} tokens/s; p95 latency x{ours['p95'] / base['p95']:.2f}")


if __name__ == "__main__":
    main()
