"""The official `openai` client against `qwen3_5 serve` (run by the serve_http tests).

Usage: openai_client.py BASE_URL MODEL_ID MAX_TOKENS
Prints one JSON object: the texts of a chat completion (whole and streamed), a text
completion, the listed model ids, and what a bad request raised.
"""

import json
import sys

import openai

base_url, model, max_tokens = sys.argv[1], sys.argv[2], int(sys.argv[3])
client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=120)
messages = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hello there"},
]
out = {"openai_version": openai.__version__}

chat = client.chat.completions.create(
    model=model, messages=messages, temperature=0, max_tokens=max_tokens
)
out["chat"] = chat.choices[0].message.content
out["chat_finish"] = chat.choices[0].finish_reason
out["chat_usage"] = [chat.usage.prompt_tokens, chat.usage.completion_tokens]

pieces = []
finish = None
usage = None
for chunk in client.chat.completions.create(
    model=model,
    messages=messages,
    temperature=0,
    max_tokens=max_tokens,
    stream=True,
    stream_options={"include_usage": True},
):
    if chunk.usage is not None:
        usage = [chunk.usage.prompt_tokens, chunk.usage.completion_tokens]
    for choice in chunk.choices:
        if choice.delta.content:
            pieces.append(choice.delta.content)
        if choice.finish_reason:
            finish = choice.finish_reason
out["chat_stream"] = "".join(pieces)
out["chat_stream_finish"] = finish
out["chat_stream_usage"] = usage

completion = client.completions.create(
    model=model, prompt="The quick brown fox", temperature=0, max_tokens=max_tokens
)
out["completion"] = completion.choices[0].text

out["models"] = [m.id for m in client.models.list()]

try:
    client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Hi"}], n=2
    )
    out["bad"] = None
except openai.BadRequestError as e:
    out["bad"] = {"status": e.status_code, "param": (e.body or {}).get("param")}

print(json.dumps(out))
