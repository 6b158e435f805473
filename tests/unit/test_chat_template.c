/* test_chat_template.c: the C chat formats against what jinja2 renders from the models' own
 * templates (expected strings from tools/gen_chat_template_golden.py: SmolLM2's template as
 * its GGUF carries it, Qwen2, Llama-3, Llama-2, Mistral v0.1, and the stated Alpaca format),
 * recognition of each template from its Jinja source, the default system prompt taken from it,
 * end-of-turn tokens and stop strings, names and their errors, bad messages. */
#include "chat_template.h"
#include "test.h"

static const struct { const char *name, *jinja; } jinja_sources[] = {
    {"smollm2",
     "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"},
    {"qwen2",
     "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"},
    {"llama3",
     "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"},
    {"llama2",
     "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"},
    {"mistral",
     "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"},
};

static const tw_chat_msg conv_one_user[] = {{"user", "Hello"}};
static const tw_chat_msg conv_system_multi[] = {
    {"system", "You are a helpful assistant"}, {"user", "Hello"},
    {"assistant", "Hi there"},                 {"user", "Who are you"},
    {"assistant", "   I am an assistant   "},  {"user", "Another question"},
};
static const tw_chat_msg conv_no_system_multi[] = {
    {"user", " Caf\xc3\xa9 na\xc3\xafve?\n"}, {"assistant", "Oui."}, {"user", "Merci"}};

static const struct {
    const char *name, *conv;
    int gen;
    const char *want;
} golden[] = {
    {"smollm2", "one_user", 1,
     "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n"},
    {"smollm2", "one_user", 0,
     "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n"},
    {"smollm2", "system_multi", 1,
     "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\nHi there<|im_end|>\n<|im_start|>user\nWho are you<|im_end|>\n<|im_start|>assistant\n   I am an assistant   <|im_end|>\n<|im_start|>user\nAnother question<|im_end|>\n<|im_start|>assistant\n"},
    {"smollm2", "system_multi", 0,
     "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\nHi there<|im_end|>\n<|im_start|>user\nWho are you<|im_end|>\n<|im_start|>assistant\n   I am an assistant   <|im_end|>\n<|im_start|>user\nAnother question<|im_end|>\n"},
    {"smollm2", "no_system_multi", 1,
     "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\n Caf\xc3" "\xa9" " na\xc3" "\xaf" "ve?\n<|im_end|>\n<|im_start|>assistant\nOui.<|im_end|>\n<|im_start|>user\nMerci<|im_end|>\n<|im_start|>assistant\n"},
    {"smollm2", "no_system_multi", 0,
     "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\n Caf\xc3" "\xa9" " na\xc3" "\xaf" "ve?\n<|im_end|>\n<|im_start|>assistant\nOui.<|im_end|>\n<|im_start|>user\nMerci<|im_end|>\n"},
    {"qwen2", "one_user", 1,
     "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n"},
    {"qwen2", "one_user", 0,
     "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n"},
    {"qwen2", "system_multi", 1,
     "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\nHi there<|im_end|>\n<|im_start|>user\nWho are you<|im_end|>\n<|im_start|>assistant\n   I am an assistant   <|im_end|>\n<|im_start|>user\nAnother question<|im_end|>\n<|im_start|>assistant\n"},
    {"qwen2", "system_multi", 0,
     "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\nHi there<|im_end|>\n<|im_start|>user\nWho are you<|im_end|>\n<|im_start|>assistant\n   I am an assistant   <|im_end|>\n<|im_start|>user\nAnother question<|im_end|>\n"},
    {"qwen2", "no_system_multi", 1,
     "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n Caf\xc3" "\xa9" " na\xc3" "\xaf" "ve?\n<|im_end|>\n<|im_start|>assistant\nOui.<|im_end|>\n<|im_start|>user\nMerci<|im_end|>\n<|im_start|>assistant\n"},
    {"qwen2", "no_system_multi", 0,
     "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n Caf\xc3" "\xa9" " na\xc3" "\xaf" "ve?\n<|im_end|>\n<|im_start|>assistant\nOui.<|im_end|>\n<|im_start|>user\nMerci<|im_end|>\n"},
    {"llama3", "one_user", 1,
     "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"},
    {"llama3", "one_user", 0,
     "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"},
    {"llama3", "system_multi", 1,
     "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHi there<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWho are you<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nI am an assistant<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nAnother question<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"},
    {"llama3", "system_multi", 0,
     "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHi there<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWho are you<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nI am an assistant<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nAnother question<|eot_id|>"},
    {"llama3", "no_system_multi", 1,
     "<|start_header_id|>user<|end_header_id|>\n\nCaf\xc3" "\xa9" " na\xc3" "\xaf" "ve?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nOui.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nMerci<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"},
    {"llama3", "no_system_multi", 0,
     "<|start_header_id|>user<|end_header_id|>\n\nCaf\xc3" "\xa9" " na\xc3" "\xaf" "ve?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nOui.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nMerci<|eot_id|>"},
    {"llama2", "one_user", 1,
     "[INST] Hello [/INST]"},
    {"llama2", "one_user", 0,
     "[INST] Hello [/INST]"},
    {"llama2", "system_multi", 1,
     "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST] Hi there </s><s>[INST] Who are you [/INST] I am an assistant </s><s>[INST] Another question [/INST]"},
    {"llama2", "system_multi", 0,
     "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST] Hi there </s><s>[INST] Who are you [/INST] I am an assistant </s><s>[INST] Another question [/INST]"},
    {"llama2", "no_system_multi", 1,
     "[INST] Caf\xc3" "\xa9" " na\xc3" "\xaf" "ve? [/INST] Oui. </s><s>[INST] Merci [/INST]"},
    {"llama2", "no_system_multi", 0,
     "[INST] Caf\xc3" "\xa9" " na\xc3" "\xaf" "ve? [/INST] Oui. </s><s>[INST] Merci [/INST]"},
    {"mistral", "one_user", 1,
     "[INST] Hello [/INST]"},
    {"mistral", "one_user", 0,
     "[INST] Hello [/INST]"},
    {"mistral", "no_system_multi", 1,
     "[INST]  Caf\xc3" "\xa9" " na\xc3" "\xaf" "ve?\n [/INST]Oui.</s>[INST] Merci [/INST]"},
    {"mistral", "no_system_multi", 0,
     "[INST]  Caf\xc3" "\xa9" " na\xc3" "\xaf" "ve?\n [/INST]Oui.</s>[INST] Merci [/INST]"},
    {"alpaca", "one_user", 1,
     "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\nHello\n\n### Response:\n"},
    {"alpaca", "one_user", 0,
     "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\nHello\n\n"},
    {"alpaca", "system_multi", 1,
     "You are a helpful assistant\n\n### Instruction:\nHello\n\n### Response:\nHi there\n\n### Instruction:\nWho are you\n\n### Response:\n   I am an assistant   \n\n### Instruction:\nAnother question\n\n### Response:\n"},
    {"alpaca", "system_multi", 0,
     "You are a helpful assistant\n\n### Instruction:\nHello\n\n### Response:\nHi there\n\n### Instruction:\nWho are you\n\n### Response:\n   I am an assistant   \n\n### Instruction:\nAnother question\n\n"},
    {"alpaca", "no_system_multi", 1,
     "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\n Caf\xc3" "\xa9" " na\xc3" "\xaf" "ve?\n\n\n### Response:\nOui.\n\n### Instruction:\nMerci\n\n### Response:\n"},
    {"alpaca", "no_system_multi", 0,
     "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\n Caf\xc3" "\xa9" " na\xc3" "\xaf" "ve?\n\n\n### Response:\nOui.\n\n### Instruction:\nMerci\n\n"},
};

/* The template a golden row is rendered with: recognised from the model's Jinja source, or
 * (alpaca, which has none) by name. */
static tw_chat_template *template_for(const char *name) {
    tw_chat_template *t = NULL;
    for (size_t i = 0; i < sizeof jinja_sources / sizeof jinja_sources[0]; i++)
        if (!strcmp(jinja_sources[i].name, name)) {
            CHECK_EQ_INT(tw_chat_template_detect(jinja_sources[i].jinja, &t), TW_OK);
            return t;
        }
    CHECK_EQ_INT(tw_chat_template_from_name(name, &t), TW_OK);
    return t;
}

static void conv_get(const char *name, const tw_chat_msg **m, size_t *n) {
    if (!strcmp(name, "one_user")) *m = conv_one_user, *n = 1;
    else if (!strcmp(name, "system_multi")) *m = conv_system_multi, *n = 6;
    else *m = conv_no_system_multi, *n = 3;
}

static void test_golden(void) {
    for (size_t i = 0; i < sizeof golden / sizeof golden[0]; i++) {
        tw_chat_template *t = template_for(golden[i].name);
        if (!t) continue;
        const tw_chat_msg *m;
        size_t n;
        conv_get(golden[i].conv, &m, &n);
        tw_sb sb;
        tw_sb_init(&sb);
        CHECK_EQ_INT(tw_chat_template_render(t, m, n, golden[i].gen, &sb), TW_OK);
        if (strcmp(tw_sb_str(&sb), golden[i].want) != 0)
            fprintf(stderr, "%s / %s / gen=%d:\n", golden[i].name, golden[i].conv, golden[i].gen);
        CHECK_EQ_STR(tw_sb_str(&sb), golden[i].want);
        tw_sb_free(&sb);
        tw_chat_template_free(t);
    }
}

static void test_detect(void) {
    const char *want[] = {"chatml", "chatml", "llama3", "llama2", "mistral"};
    for (size_t i = 0; i < sizeof jinja_sources / sizeof jinja_sources[0]; i++) {
        tw_chat_template *t;
        CHECK_EQ_INT(tw_chat_template_detect(jinja_sources[i].jinja, &t), TW_OK);
        CHECK_EQ_STR(tw_chat_template_name(t), want[i]);
        tw_chat_template_free(t);
    }
    tw_chat_template *t;
    CHECK_EQ_INT(tw_chat_template_detect(jinja_sources[0].jinja, &t), TW_OK);
    CHECK_EQ_STR(tw_chat_template_default_system(t),
                 "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
    tw_chat_template_free(t);
    CHECK_EQ_INT(tw_chat_template_detect(jinja_sources[1].jinja, &t), TW_OK);
    CHECK_EQ_STR(tw_chat_template_default_system(t), "You are a helpful assistant.");
    tw_chat_template_free(t);
    /* a ChatML source with no literal default (OpenHermes) and one whose system literal is an
     * expression (Qwen2.5-like tool branch) keep none */
    CHECK_EQ_INT(tw_chat_template_detect(
                     "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
                     "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}",
                     &t),
                 TW_OK);
    CHECK(tw_chat_template_default_system(t) == NULL);
    tw_chat_template_free(t);
    CHECK_EQ_INT(tw_chat_template_detect("{{- '<|im_start|>system\\n' + messages[0]['content'] "
                                         "}}{{- '<|im_start|>system\\nYou are Qwen.<|im_end|>\\n' }}",
                                         &t),
                 TW_OK);
    CHECK_EQ_STR(tw_chat_template_default_system(t), "You are Qwen.");
    tw_chat_template_free(t);
    CHECK_EQ_INT(tw_chat_template_detect("{% for m in messages %}### Instruction:\n{{ m.content }}"
                                         "{% endfor %}",
                                         &t),
                 TW_OK);
    CHECK_EQ_STR(tw_chat_template_name(t), "alpaca");
    tw_chat_template_free(t);

    t = (tw_chat_template *)1;
    CHECK_EQ_INT(tw_chat_template_detect("{{ messages }}", &t), TW_ERR_UNSUPPORTED);
    CHECK(t == NULL);
    CHECK(strstr(tw_errmsg(), "--chat-template") != NULL);
    CHECK(strstr(tw_errmsg(), "chatml, llama3, llama2, mistral, alpaca") != NULL);
    CHECK_EQ_INT(tw_chat_template_detect("", &t), TW_ERR_ARG);
    CHECK_EQ_INT(tw_chat_template_detect(NULL, &t), TW_ERR_ARG);
}

static void test_names(void) {
    const char *names[] = {"chatml", "llama3", "llama2", "mistral", "alpaca"};
    const char *eot[] = {"<|im_end|>", "<|eot_id|>", "</s>", "</s>", NULL};
    for (int k = 0; k < 5; k++) {
        tw_chat_template *t;
        CHECK_EQ_INT(tw_chat_template_from_name(names[k], &t), TW_OK);
        CHECK_EQ_STR(tw_chat_template_name(t), names[k]);
        CHECK_EQ_INT(tw_chat_template_kind(t), k);
        if (eot[k]) CHECK_EQ_STR(tw_chat_template_eot(t), eot[k]);
        else CHECK(tw_chat_template_eot(t) == NULL);
        size_t ns;
        const char *const *stops = tw_chat_template_stops(t, &ns);
        CHECK_EQ_INT(ns, k == 4 ? 1 : 0);
        if (k == 4) CHECK_EQ_STR(stops[0], "### Instruction:");
        /* by name: no default system prompt, except alpaca's preamble */
        CHECK(k == 4 ? tw_chat_template_default_system(t) != NULL
                     : tw_chat_template_default_system(t) == NULL);
        tw_chat_template_free(t);
    }
    tw_chat_template *t = (tw_chat_template *)1;
    CHECK_EQ_INT(tw_chat_template_from_name("vicuna", &t), TW_ERR_NOT_FOUND);
    CHECK(t == NULL);
    CHECK_EQ_STR(tw_errmsg(),
                 "unknown chat template 'vicuna' (known: chatml, llama3, llama2, mistral, alpaca)");
    CHECK_EQ_INT(tw_chat_template_from_name("ChatML", &t), TW_ERR_NOT_FOUND);

    /* --chat-template chatml on SmolLM2 keeps SmolLM2's default system prompt; on a Llama-3
     * template it has none */
    CHECK_EQ_INT(tw_chat_template_from_name_for("chatml", jinja_sources[0].jinja, &t), TW_OK);
    CHECK_EQ_STR(tw_chat_template_default_system(t),
                 "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
    tw_chat_template_free(t);
    CHECK_EQ_INT(tw_chat_template_from_name_for("chatml", jinja_sources[2].jinja, &t), TW_OK);
    CHECK(tw_chat_template_default_system(t) == NULL);
    tw_chat_template_free(t);
    CHECK_EQ_INT(tw_chat_template_from_name_for("chatml", NULL, &t), TW_OK);
    tw_chat_template_free(t);
    CHECK_EQ_INT(tw_chat_template_from_name_for("nope", jinja_sources[0].jinja, &t),
                 TW_ERR_NOT_FOUND);
}

static void test_mistral_system(void) {
    /* Mistral v0.1's template refuses a system message; twin puts it before the first user
     * message (chat_template.h) */
    tw_chat_template *t;
    CHECK_EQ_INT(tw_chat_template_from_name("mistral", &t), TW_OK);
    tw_sb sb;
    tw_sb_init(&sb);
    CHECK_EQ_INT(tw_chat_template_render(t, conv_system_multi, 6, 1, &sb), TW_OK);
    CHECK_EQ_STR(tw_sb_str(&sb), "[INST] You are a helpful assistant\n\nHello [/INST]Hi there</s>"
                                 "[INST] Who are you [/INST]   I am an assistant   </s>"
                                 "[INST] Another question [/INST]");
    tw_sb_free(&sb);
    tw_chat_template_free(t);
}

static void test_bad_messages(void) {
    tw_chat_template *t;
    CHECK_EQ_INT(tw_chat_template_from_name("chatml", &t), TW_OK);
    tw_sb sb;
    tw_sb_init(&sb);
    tw_chat_msg bad_role[] = {{"user", "a"}, {"tool", "b"}};
    CHECK_EQ_INT(tw_chat_template_render(t, bad_role, 2, 1, &sb), TW_ERR_ARG);
    CHECK(strstr(tw_errmsg(), "message 1") && strstr(tw_errmsg(), "'tool'"));
    tw_chat_msg late_system[] = {{"user", "a"}, {"system", "b"}};
    CHECK_EQ_INT(tw_chat_template_render(t, late_system, 2, 1, &sb), TW_ERR_ARG);
    tw_chat_msg no_content[] = {{"user", NULL}};
    CHECK_EQ_INT(tw_chat_template_render(t, no_content, 1, 1, &sb), TW_ERR_ARG);
    CHECK_EQ_INT(sb.len, 0);
    /* no messages: only the generation prompt (SmolLM2's loop inserts its system turn only
     * inside the loop) */
    tw_chat_template *smol;
    CHECK_EQ_INT(tw_chat_template_detect(jinja_sources[0].jinja, &smol), TW_OK);
    CHECK_EQ_INT(tw_chat_template_render(smol, NULL, 0, 1, &sb), TW_OK);
    CHECK_EQ_STR(tw_sb_str(&sb), "<|im_start|>assistant\n");
    tw_chat_template_free(smol);
    tw_sb_free(&sb);
    tw_chat_template_free(t);
    tw_chat_template_free(NULL);

    /* every allocation of detection failing in turn: an error, never a crash or a leak */
    for (uint64_t k = 1; k <= 4; k++) {
        tw_mem_fail_after(k);
        tw_status st = tw_chat_template_detect(jinja_sources[0].jinja, &t);
        tw_mem_fail_after(0);
        if (st == TW_OK) tw_chat_template_free(t);
        else CHECK_EQ_INT(st, TW_ERR_NOMEM);
    }
}

int main(void) {
    RUN(test_golden);
    RUN(test_detect);
    RUN(test_names);
    RUN(test_mistral_system);
    RUN(test_bad_messages);
    TEST_DONE();
}
