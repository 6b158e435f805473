/* chat_template.c: the chat formats of chat_template.h, rendered in C. */
#include "chat_template.h"

#include <string.h>

struct tw_chat_template {
    tw_chat_kind kind;
    char *default_system; /* owned; NULL when none */
};

static const char *const kind_names[TW_CHAT_COUNT] = {"chatml", "llama3", "llama2", "mistral",
                                                      "alpaca"};

static const char *const alpaca_default_system =
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.";

const char *tw_chat_template_names(void) { return "chatml, llama3, llama2, mistral, alpaca"; }

static tw_status make(tw_chat_kind kind, const char *system, tw_chat_template **out) {
    tw_chat_template *t = tw_calloc(1, sizeof *t);
    if (!t) return TW_ERR_NOMEM;
    t->kind = kind;
    if (system) {
        t->default_system = tw_strdup(system);
        if (!t->default_system) {
            tw_free(t);
            return TW_ERR_NOMEM;
        }
    }
    *out = t;
    return TW_OK;
}

void tw_chat_template_free(tw_chat_template *t) {
    if (!t) return;
    tw_free(t->default_system);
    tw_free(t);
}

static int kind_by_name(const char *name) {
    for (int k = 0; k < TW_CHAT_COUNT; k++)
        if (!strcmp(name, kind_names[k])) return k;
    return -1;
}

tw_status tw_chat_template_from_name(const char *name, tw_chat_template **out) {
    *out = NULL;
    int k = name ? kind_by_name(name) : -1;
    if (k < 0)
        return tw_error(TW_ERR_NOT_FOUND, "unknown chat template '%s' (known: %s)",
                        name ? name : "(null)", tw_chat_template_names());
    return make((tw_chat_kind)k, k == TW_CHAT_ALPACA ? alpaca_default_system : NULL, out);
}

/* The literal default system prompt of a ChatML Jinja source: the text between
 * "<|im_start|>system" + newline (a real one or the two characters \n of a string escape) and
 * "<|im_end|>", when that text is a plain literal (no quote, no Jinja tag or expression).
 * Returns a heap string (tw_free) with \n, \t, \\ escapes decoded, NULL when there is none;
 * *nomem is set when an allocation failed. */
static char *chatml_default_system(const char *jinja, int *nomem) {
    static const char head[] = "<|im_start|>system";
    *nomem = 0;
    for (const char *p = strstr(jinja, head); p; p = strstr(p + 1, head)) {
        const char *q = p + sizeof head - 1;
        if (*q == '\n') q += 1;
        else if (q[0] == '\\' && q[1] == 'n') q += 2;
        else continue;
        const char *end = strstr(q, "<|im_end|>");
        if (!end || end == q) continue;
        int literal = 1;
        for (const char *c = q; c < end && literal; c++)
            if (*c == '\'' || *c == '"' || (*c == '{' && (c[1] == '{' || c[1] == '%')))
                literal = 0;
        if (!literal) continue;
        tw_sb sb;
        tw_sb_init(&sb);
        for (const char *c = q; c < end; c++) {
            if (*c == '\\' && c + 1 < end && (c[1] == 'n' || c[1] == 't' || c[1] == '\\')) {
                tw_sb_putc(&sb, c[1] == 'n' ? '\n' : c[1] == 't' ? '\t' : '\\');
                c++;
            } else {
                tw_sb_putc(&sb, *c);
            }
        }
        if (sb.failed) {
            tw_sb_free(&sb);
            *nomem = 1;
            return NULL;
        }
        return tw_sb_take(&sb);
    }
    return NULL;
}

/* Recognition only: which format, -1 when none. */
static int detect_kind(const char *jinja) {
    if (strstr(jinja, "<|im_start|>")) return TW_CHAT_CHATML;
    if (strstr(jinja, "<|start_header_id|>")) return TW_CHAT_LLAMA3;
    if (strstr(jinja, "[INST]")) return strstr(jinja, "<<SYS>>") ? TW_CHAT_LLAMA2 : TW_CHAT_MISTRAL;
    if (strstr(jinja, "### Instruction")) return TW_CHAT_ALPACA;
    return -1;
}

static tw_status make_for(tw_chat_kind k, const char *jinja, tw_chat_template **out) {
    if (k == TW_CHAT_CHATML && jinja) {
        int nomem;
        char *sys = chatml_default_system(jinja, &nomem);
        if (nomem) return tw_error(TW_ERR_NOMEM, "chat template: out of memory");
        tw_status st = make(k, sys, out);
        tw_free(sys);
        return st;
    }
    return make(k, k == TW_CHAT_ALPACA ? alpaca_default_system : NULL, out);
}

tw_status tw_chat_template_detect(const char *jinja, tw_chat_template **out) {
    *out = NULL;
    if (!jinja || !*jinja) return tw_error(TW_ERR_ARG, "chat template: the model has none");
    int k = detect_kind(jinja);
    if (k < 0)
        return tw_error(TW_ERR_UNSUPPORTED,
                        "chat template: the model's template is not one twin recognises; "
                        "name one with --chat-template (known: %s)",
                        tw_chat_template_names());
    return make_for((tw_chat_kind)k, jinja, out);
}

tw_status tw_chat_template_from_name_for(const char *name, const char *jinja,
                                         tw_chat_template **out) {
    *out = NULL;
    int k = name ? kind_by_name(name) : -1;
    if (k < 0) return tw_chat_template_from_name(name, out); /* the error listing the names */
    if (jinja && *jinja && detect_kind(jinja) == k) return make_for((tw_chat_kind)k, jinja, out);
    return tw_chat_template_from_name(name, out);
}

tw_chat_kind tw_chat_template_kind(const tw_chat_template *t) { return t->kind; }
const char *tw_chat_template_name(const tw_chat_template *t) { return kind_names[t->kind]; }
const char *tw_chat_template_default_system(const tw_chat_template *t) {
    return t->default_system;
}

const char *tw_chat_template_eot(const tw_chat_template *t) {
    switch (t->kind) {
    case TW_CHAT_CHATML: return "<|im_end|>";
    case TW_CHAT_LLAMA3: return "<|eot_id|>";
    case TW_CHAT_LLAMA2:
    case TW_CHAT_MISTRAL: return "</s>";
    default: return NULL;
    }
}

const char *const *tw_chat_template_stops(const tw_chat_template *t, size_t *n) {
    static const char *const alpaca_stops[] = {"### Instruction:"};
    if (t->kind == TW_CHAT_ALPACA) {
        *n = 1;
        return alpaca_stops;
    }
    *n = 0;
    return NULL;
}

/* ---- rendering --------------------------------------------------------------------------- */

enum { ROLE_SYSTEM, ROLE_USER, ROLE_ASSISTANT };

static int role_of(const char *r) {
    if (!r) return -1;
    if (!strcmp(r, "system")) return ROLE_SYSTEM;
    if (!strcmp(r, "user")) return ROLE_USER;
    if (!strcmp(r, "assistant")) return ROLE_ASSISTANT;
    return -1;
}

static int is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* Appends s without leading and trailing ASCII whitespace (Jinja's trim / Python's strip on
 * the ASCII range; other Unicode spaces stay). */
static void put_trimmed(tw_sb *sb, const char *s) {
    size_t n = strlen(s), a = 0;
    while (a < n && is_space(s[a])) a++;
    while (n > a && is_space(s[n - 1])) n--;
    tw_sb_append(sb, s + a, n - a);
}

tw_status tw_chat_template_render(const tw_chat_template *t, const tw_chat_msg *msgs, size_t n,
                                  int add_generation_prompt, tw_sb *out) {
    for (size_t i = 0; i < n; i++) {
        int r = role_of(msgs[i].role);
        if (r < 0)
            return tw_error(TW_ERR_ARG, "chat message %zu: role '%s' is not system, user or "
                                        "assistant", i, msgs[i].role ? msgs[i].role : "(null)");
        if (!msgs[i].content)
            return tw_error(TW_ERR_ARG, "chat message %zu: no content", i);
        if (r == ROLE_SYSTEM && i > 0)
            return tw_error(TW_ERR_ARG, "chat message %zu: a system message must come first", i);
    }
    size_t start_len = out->len;
    int has_system = n > 0 && role_of(msgs[0].role) == ROLE_SYSTEM;
    const char *system = has_system ? msgs[0].content : t->default_system;
    size_t first = has_system ? 1 : 0;

    switch (t->kind) {
    case TW_CHAT_CHATML:
        /* SmolLM2/Qwen2 insert their default system turn only when there is a message at all */
        if (system && n > 0)
            tw_sb_printf(out, "<|im_start|>system\n%s<|im_end|>\n", system);
        for (size_t i = first; i < n; i++)
            tw_sb_printf(out, "<|im_start|>%s\n%s<|im_end|>\n", msgs[i].role, msgs[i].content);
        if (add_generation_prompt) tw_sb_puts(out, "<|im_start|>assistant\n");
        break;
    case TW_CHAT_LLAMA3:
        if (system) {
            tw_sb_puts(out, "<|start_header_id|>system<|end_header_id|>\n\n");
            put_trimmed(out, system);
            tw_sb_puts(out, "<|eot_id|>");
        }
        for (size_t i = first; i < n; i++) {
            tw_sb_printf(out, "<|start_header_id|>%s<|end_header_id|>\n\n", msgs[i].role);
            put_trimmed(out, msgs[i].content);
            tw_sb_puts(out, "<|eot_id|>");
        }
        if (add_generation_prompt) tw_sb_puts(out, "<|start_header_id|>assistant<|end_header_id|>\n\n");
        break;
    case TW_CHAT_LLAMA2: {
        int first_user = 1;
        for (size_t i = first; i < n; i++) {
            if (role_of(msgs[i].role) == ROLE_USER) {
                if (!first_user) tw_sb_puts(out, "<s>"); /* the first BOS is the tokenizer's */
                tw_sb_puts(out, "[INST] ");
                if (first_user && system) {
                    /* Meta's template strips the system block + content as one string */
                    tw_sb block;
                    tw_sb_init(&block);
                    tw_sb_printf(&block, "<<SYS>>\n%s\n<</SYS>>\n\n%s", system, msgs[i].content);
                    if (block.failed) out->failed = 1;
                    else put_trimmed(out, tw_sb_str(&block));
                    tw_sb_free(&block);
                } else {
                    put_trimmed(out, msgs[i].content);
                }
                tw_sb_puts(out, " [/INST]");
                first_user = 0;
            } else {
                tw_sb_puts(out, " ");
                put_trimmed(out, msgs[i].content);
                tw_sb_puts(out, " </s>");
            }
        }
        break;
    }
    case TW_CHAT_MISTRAL: {
        int first_user = 1;
        for (size_t i = first; i < n; i++) {
            if (role_of(msgs[i].role) == ROLE_USER) {
                tw_sb_puts(out, "[INST] ");
                if (first_user && system) {
                    tw_sb_puts(out, system);
                    tw_sb_puts(out, "\n\n");
                }
                tw_sb_puts(out, msgs[i].content);
                tw_sb_puts(out, " [/INST]");
                first_user = 0;
            } else {
                tw_sb_puts(out, msgs[i].content);
                tw_sb_puts(out, "</s>");
            }
        }
        break;
    }
    case TW_CHAT_ALPACA:
        if (system) tw_sb_printf(out, "%s\n\n", system);
        for (size_t i = first; i < n; i++)
            tw_sb_printf(out, "%s\n%s\n\n",
                         role_of(msgs[i].role) == ROLE_USER ? "### Instruction:" : "### Response:",
                         msgs[i].content);
        if (add_generation_prompt) tw_sb_puts(out, "### Response:\n");
        break;
    default:
        TW_ASSERT(0);
    }
    if (out->failed) {
        out->len = start_len < out->len ? start_len : out->len;
        return tw_error(TW_ERR_NOMEM, "chat template: out of memory rendering %zu messages", n);
    }
    return TW_OK;
}
