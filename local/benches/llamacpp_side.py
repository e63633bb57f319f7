#!/usr/bin/env python3
"""llama.cpp's side of `benches/prefill.rs`: the same measurements on the same
GGUF file and the same token sequences, through llama-cpp-python.

    pip install llama-cpp-python   # builds llama.cpp natively (a few minutes)
    python3 llamacpp_side.py MODEL.gguf TOKENS.json THREADS

TOKENS.json (written by the Rust bench): {"cold": [[ids...], ...],
"persona": [[ids...], ...] (one persona's items in order), "decode": [ids...]
(the prompt decoding starts after), "decode_steps": N}. Prints one JSON
object: seconds, CPU-seconds and token counts of each measurement.

Measured as the engine measures them:
- cold: each prompt from an empty KV cache, logits of its last position;
- persona: each item after the previous one, keeping the longest common
  prefix in the KV cache (as the engine's prefix cache does), computing the
  rest;
- decode: greedy one-token steps after a prompt, logits every step;
- head: one decoding step with the logits minus one without (llama.cpp
  skips the output head when no logits are asked for).
"""

import json
import resource
import sys
import time


def cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main():
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    model, tokens_file, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
    try:
        import numpy as np
        import llama_cpp
        from llama_cpp import Llama
    except ImportError as e:
        print(json.dumps({"error": f"llama-cpp-python is not installed ({e}): pip install llama-cpp-python"}))
        return 0
    with open(tokens_file, encoding="utf-8") as f:
        spec = json.load(f)
    longest = max(len(t) for t in spec["cold"] + spec["persona"] + [spec["decode"]])
    llm = Llama(
        model_path=model,
        n_ctx=max(1024, longest + spec["decode_steps"] + 8),
        n_batch=512,
        n_ubatch=512,
        n_threads=threads,
        n_threads_batch=threads,
        logits_all=False,
        verbose=False,
    )
    ctx, batch, n_vocab = llm._ctx, llm._batch, llm.n_vocab()

    def decode(tokens, n_past, logits=True):
        batch.set_batch(batch=tokens, n_past=n_past, logits_all=False)
        if not logits:
            batch.batch.logits[len(tokens) - 1] = False
        ctx.decode(batch)
        if logits:
            out = np.ctypeslib.as_array(ctx.get_logits_ith(len(tokens) - 1), shape=(n_vocab,))
            return int(np.argmax(out))
        return None

    def clear(from_pos=0):
        ctx.kv_cache_seq_rm(-1, from_pos, -1)

    # Warm up (first-call allocations), not measured.
    clear()
    decode(spec["cold"][0], 0)

    res = {"version": getattr(llama_cpp, "__version__", "?"), "threads": threads}

    # Cold prompts.
    toks, c0, t0 = 0, cpu_seconds(), time.perf_counter()
    for p in spec["cold"]:
        clear()
        decode(p, 0)
        toks += len(p)
    res["cold"] = {"tokens": toks, "s": time.perf_counter() - t0, "cpu_s": cpu_seconds() - c0}

    # One persona's items, the common prefix kept.
    clear()
    prev, asked, computed = [], 0, 0
    c0, t0 = cpu_seconds(), time.perf_counter()
    for p in spec["persona"]:
        keep = 0
        for a, b in zip(prev, p):
            if a != b:
                break
            keep += 1
        keep = min(keep, len(p) - 1)
        clear(keep)
        decode(p[keep:], keep)
        asked += len(p)
        computed += len(p) - keep
        prev = p
    res["persona"] = {
        "prompts": len(spec["persona"]),
        "asked": asked,
        "computed": computed,
        "s": time.perf_counter() - t0,
        "cpu_s": cpu_seconds() - c0,
    }

    # Greedy decoding after a prompt.
    p = spec["decode"]
    clear()
    tok = decode(p, 0)
    n = len(p)
    steps = spec["decode_steps"]
    c0, t0 = cpu_seconds(), time.perf_counter()
    for _ in range(steps):
        tok = decode([tok], n)
        n += 1
    res["decode"] = {"tokens": steps, "s": time.perf_counter() - t0, "cpu_s": cpu_seconds() - c0}

    # The output head: a step with logits minus a step without.
    reps = 20
    timings = {}
    for logits in (True, False, True, False):
        t0 = time.perf_counter()
        for _ in range(reps):
            clear(n)
            decode([tok], n, logits=logits)
        timings.setdefault(logits, []).append((time.perf_counter() - t0) / reps)
    with_head, without = min(timings[True]), min(timings[False])
    res["head"] = {"step_s": with_head, "step_without_head_s": without, "head_s": with_head - without}
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
