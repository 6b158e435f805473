#!/usr/bin/env python3
"""Renders the models' own Jinja chat templates with jinja2 (as HF transformers does) on the
conversations of tests/unit/test_chat_template.c, and prints the expected strings as C string
literals: the independent reference for twin's C rendering (engine/chat_template.c).

    python3 tools/gen_chat_template_golden.py [SmolLM2-135M-Instruct.Q4_1.gguf]

With a GGUF path, SmolLM2's template is read from its tokenizer.chat_template (needs the
`gguf` package) and checked equal to the copy below. twin leaves the leading BOS to the
tokenizer (chat_template.h), so the templates are rendered with their model's bos_token and
that one leading BOS is taken off; later ones (llama2's "<s>[INST]") stay."""
import sys

import jinja2

TEMPLATES = {
    # HuggingFaceTB/SmolLM2-135M-Instruct (GGUF tokenizer.chat_template)
    "smollm2": "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}",
    # Qwen/Qwen2-7B-Instruct
    "qwen2": "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}",
    # meta-llama/Meta-Llama-3-8B-Instruct
    "llama3": "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}",
    # meta-llama/Llama-2-7b-chat-hf
    "llama2": "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}",
    # mistralai/Mistral-7B-Instruct-v0.1 (no system role: system conversations are not rendered)
    "mistral": "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}",
    # Alpaca has no Jinja template of its own; this one is the format chat_template.h states
    # (the Stanford Alpaca prompt), written in Jinja so the C rendering is checked against it.
    "alpaca": "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{{ messages[0]['content'] + '\n\n' }}{% else %}{% set loop_messages = messages %}{{ 'Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n' }}{% endif %}{% for message in loop_messages %}{% if message['role'] == 'user' %}{{ '### Instruction:\n' + message['content'] + '\n\n' }}{% else %}{{ '### Response:\n' + message['content'] + '\n\n' }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '### Response:\n' }}{% endif %}",
}

CONVERSATIONS = {
    "one_user": [{"role": "user", "content": "Hello"}],
    "system_multi": [
        {"role": "system", "content": "You are a helpful assistant"},
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi there"},
        {"role": "user", "content": "Who are you"},
        {"role": "assistant", "content": "   I am an assistant   "},
        {"role": "user", "content": "Another question"},
    ],
    "no_system_multi": [
        {"role": "user", "content": " Caf\u00e9 na\u00efve?\n"},
        {"role": "assistant", "content": "Oui."},
        {"role": "user", "content": "Merci"},
    ],
}


def c_literal(s):
    out = []
    for ch in s.encode("utf-8"):
        c = chr(ch)
        if c == "\n":
            out.append("\\n")
        elif c == '"':
            out.append('\\"')
        elif c == "\\":
            out.append("\\\\")
        elif 0x20 <= ch < 0x7F:
            out.append(c)
        else:
            out.append("\\x%02x\" \"" % ch)
    return '"' + "".join(out) + '"'


def main():
    if len(sys.argv) > 1:
        from gguf import GGUFReader

        r = GGUFReader(sys.argv[1])
        f = r.fields["tokenizer.chat_template"]
        real = bytes(f.parts[f.data[0]]).decode()
        assert real == TEMPLATES["smollm2"], "SmolLM2's template differs from the copy here"
        print("/* SmolLM2 template read from %s: equal to the copy */" % sys.argv[1])
    env = jinja2.Environment()

    def raise_exception(msg):
        raise jinja2.TemplateError(msg)

    for name, src in TEMPLATES.items():
        t = env.from_string(src)
        for cname, msgs in CONVERSATIONS.items():
            for gen in (True, False):
                try:
                    bos = "<|begin_of_text|>" if name == "llama3" else "<s>"
                    out = t.render(messages=msgs, add_generation_prompt=gen, bos_token=bos,
                                   eos_token="</s>", raise_exception=raise_exception)
                    if out.startswith(bos):
                        out = out[len(bos):]
                except jinja2.TemplateError as e:
                    print("/* %s %s gen=%d: %s */" % (name, cname, gen, e))
                    continue
                print("{\"%s\", \"%s\", %d,\n %s}," % (name, cname, gen, c_literal(out)))


if __name__ == "__main__":
    main()
