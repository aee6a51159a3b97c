"""The official `openai` Python client against `compress serve` on the demo model.

Checks, each against an independent reference:
  * completions (plain and streamed) equal `compress generate` greedy output;
  * the chat prompt the server builds equals transformers' `apply_chat_template` ids for the
    same messages, and chat (plain and streamed) equals a completion on those ids;
  * n > 1, stop strings, logprobs and usage come back in the client's types;
  * errors surface as the client's exception classes (400, 401, 404);
  * SIGTERM stops the server with exit status 0.

Usage: python tests/interop/serve_openai.py COMPRESS_BINARY [MODEL_DIR]
"""

import json
import re
import signal
import subprocess
import sys
import urllib.request

import openai
from transformers import AutoTokenizer

binary = sys.argv[1]
model_dir = sys.argv[2] if len(sys.argv) > 2 else "examples/models/demo"
KEY = "ci-key"


def generate(prompt, max_tokens):
    out = subprocess.run(
        [binary, "generate", "--model", model_dir, "--prompt", prompt,
         "--max-tokens", str(max_tokens), "--json"],
        check=True, capture_output=True, text=True).stdout
    return json.loads(out)


server = subprocess.Popen(
    [binary, "serve", "--model", model_dir, "--port", "0", "--kv-blocks", "256",
     "--api-key", KEY, "--model-name", "demo"],
    stderr=subprocess.PIPE, text=True)
try:
    line = server.stderr.readline()
    port = int(re.search(r"127\.0\.0\.1:(\d+)", line).group(1))
    base = f"http://127.0.0.1:{port}/v1"
    client = openai.OpenAI(base_url=base, api_key=KEY, max_retries=0)

    assert [m.id for m in client.models.list().data] == ["demo"]

    # Completions = compress generate (greedy).
    prompt = "Call me Ishmael. Some years ago"
    want = generate(prompt, 20)
    r = client.completions.create(model="demo", prompt=prompt, max_tokens=20, temperature=0)
    assert r.choices[0].text == want["text"], (r.choices[0].text, want["text"])
    assert r.usage.completion_tokens == 20 and r.choices[0].finish_reason == "length"
    text = "".join(c.choices[0].text for c in client.completions.create(
        model="demo", prompt=prompt, max_tokens=20, temperature=0, stream=True))
    assert text == want["text"], (text, want["text"])
    print("completions: plain and streamed equal compress generate")

    # Chat: the template and tokenization agree with transformers.
    messages = [{"role": "system", "content": "Answer briefly."},
                {"role": "user", "content": "Who is the captain of the Pequod?"}]
    hf = AutoTokenizer.from_pretrained(model_dir)
    hf_ids = hf.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    hf_ids = list(hf_ids["input_ids"] if isinstance(hf_ids, dict) or hasattr(hf_ids, "keys") else hf_ids)
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/tokenize", data=json.dumps({"messages": messages}).encode(),
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    ours = json.load(urllib.request.urlopen(req))["tokens"]
    assert ours == hf_ids, (ours, hf_ids)
    chat = client.chat.completions.create(model="demo", messages=messages, max_tokens=16,
                                          temperature=0)
    plain = client.completions.create(model="demo", prompt=hf_ids, max_tokens=16, temperature=0)
    assert chat.choices[0].message.role == "assistant"
    assert chat.choices[0].message.content == plain.choices[0].text
    assert chat.usage.prompt_tokens == len(hf_ids)
    streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="demo", messages=messages, max_tokens=16, temperature=0, stream=True)
        if c.choices)
    assert streamed == chat.choices[0].message.content
    print(f"chat: prompt ids = transformers apply_chat_template ({len(hf_ids)} tokens); "
          "plain and streamed equal a completion on them")

    # n, stop, logprobs.
    r = client.completions.create(model="demo", prompt=prompt, max_tokens=8, temperature=0.8,
                                  n=3, seed=5)
    assert sorted(c.index for c in r.choices) == [0, 1, 2]
    assert 3 <= r.usage.completion_tokens <= 24
    full = want["text"]
    stop = full[len(full) // 2: len(full) // 2 + 3]
    r = client.completions.create(model="demo", prompt=prompt, max_tokens=20, temperature=0,
                                  stop=[stop])
    assert r.choices[0].text == full[: full.index(stop)] and r.choices[0].finish_reason == "stop"
    r = client.completions.create(model="demo", prompt=prompt, max_tokens=5, temperature=0,
                                  logprobs=2)
    lp = r.choices[0].logprobs
    assert len(lp.token_logprobs) == 5 and all(v <= 0 for v in lp.token_logprobs)
    assert all(len(t) <= 2 for t in lp.top_logprobs)
    c = client.chat.completions.create(model="demo", messages=messages, max_tokens=4,
                                       temperature=0, logprobs=True, top_logprobs=2)
    assert len(c.choices[0].logprobs.content) == 4
    assert len(c.choices[0].logprobs.content[0].top_logprobs) == 2
    print("n, stop, logprobs: ok")

    # Errors arrive as the client's exceptions.
    for call, exc in [
        (lambda: client.completions.create(model="demo", prompt=prompt, max_tokens=0),
         openai.BadRequestError),
        (lambda: client.completions.create(model="nope", prompt=prompt), openai.NotFoundError),
        (lambda: openai.OpenAI(base_url=base, api_key="wrong", max_retries=0)
         .completions.create(model="demo", prompt=prompt), openai.AuthenticationError),
        (lambda: client.chat.completions.create(model="demo", messages=[]),
         openai.BadRequestError),
    ]:
        try:
            call()
        except exc as e:
            assert e.body and "message" in e.body, e.body
        else:
            raise AssertionError(f"expected {exc.__name__}")
    print("errors: 400, 404, 401 as the client's exceptions")
finally:
    server.send_signal(signal.SIGTERM)
    code = server.wait(timeout=30)
assert code == 0, f"compress serve exited with {code} after SIGTERM"
print("SIGTERM: exit 0")
