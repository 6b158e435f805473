/* chat_template.h: conversations -> prompt text for the chat formats twin knows, written in C
 * (no Jinja engine). A model's own Jinja template (GGUF tokenizer.chat_template, HF
 * tokenizer_config.json) is only recognised by its distinctive markers, never executed.
 *
 *   name     recognised by (in this order)           one turn, as the model's template renders it
 *   chatml   "<|im_start|>"                          <|im_start|>ROLE\nCONTENT<|im_end|>\n
 *   llama3   "<|start_header_id|>"                   <|start_header_id|>ROLE<|end_header_id|>\n\n
 *                                                      TRIM(CONTENT)<|eot_id|>
 *   llama2   "[INST]" and "<<SYS>>"                  [INST] <<SYS>>\nSYS\n<</SYS>>\n\nUSER [/INST]
 *                                                      ASSISTANT </s><s>[INST] ...
 *   mistral  "[INST]"                                [INST] USER [/INST]ASSISTANT</s>[INST] ...
 *   alpaca   "### Instruction"                       SYS\n\n### Instruction:\nUSER\n\n
 *                                                      ### Response:\nASSISTANT\n\n
 * Generation prompts: chatml "<|im_start|>assistant\n", llama3
 * "<|start_header_id|>assistant<|end_header_id|>\n\n", alpaca "### Response:\n", the [INST]
 * formats none (the prompt already ends with "[/INST]").
 *
 * The rendered text leaves out the template's leading bos_token: the caller tokenizes it with
 * TW_TOK_ADD_SPECIAL | TW_TOK_PARSE_SPECIAL, so the tokenizer adds BOS when the model asks for
 * one (as llama.cpp does) and the markers become their special tokens. Later "<s>"/"</s>"
 * inside the text (llama2, mistral) are rendered, as the Jinja templates render them.
 *
 * System prompts: llama2 and alpaca put the system message where shown; mistral v0.1 has no
 * system role, so a system message is put before the first user message's content followed by
 * "\n\n" (what Mistral's later templates do). Default system prompts: a template recognised
 * from a model's Jinja source keeps the literal default system message that source inserts when
 * the conversation has none (SmolLM2: "You are a helpful AI assistant named SmolLM, trained by
 * Hugging Face"; Qwen2: "You are a helpful assistant."), found as the literal text between
 * "<|im_start|>system\n" and "<|im_end|>" in a string of the source; alpaca's default is the
 * Stanford Alpaca preamble ("Below is an instruction that describes a task. Write a response
 * that appropriately completes the request."); the others have none.
 *
 * End of turn: the model stops at the template's end-of-turn token (chatml "<|im_end|>",
 * llama3 "<|eot_id|>", llama2/mistral "</s>") as well as at EOS; alpaca also stops at the
 * text "### Instruction:".
 *
 * Thread safety: a template is immutable after it is made; rendering may run on many threads.
 */
#ifndef TWIN_CHAT_TEMPLATE_H
#define TWIN_CHAT_TEMPLATE_H

#include <stddef.h>

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    TW_CHAT_CHATML = 0,
    TW_CHAT_LLAMA3,
    TW_CHAT_LLAMA2,
    TW_CHAT_MISTRAL,
    TW_CHAT_ALPACA,
    TW_CHAT_COUNT
} tw_chat_kind;

/* One message: role "system", "user" or "assistant"; content is UTF-8 text. */
typedef struct {
    const char *role;
    const char *content;
} tw_chat_msg;

typedef struct tw_chat_template tw_chat_template;

/* The template called `name` ("chatml", "llama3", "llama2", "mistral", "alpaca"; case as
 * written). An unknown name is TW_ERR_NOT_FOUND with a message listing the names. */
tw_status tw_chat_template_from_name(const char *name, tw_chat_template **out);
/* Recognises a model's Jinja template (see the table above). TW_ERR_ARG for NULL or "";
 * TW_ERR_UNSUPPORTED when no marker matches (the message lists the names, for
 * --chat-template). */
tw_status tw_chat_template_detect(const char *jinja, tw_chat_template **out);
/* The template `name`, taking the default system prompt from jinja when jinja (may be NULL) is
 * recognised as the same format: --chat-template chatml on SmolLM2 renders what SmolLM2's own
 * template renders. */
tw_status tw_chat_template_from_name_for(const char *name, const char *jinja,
                                         tw_chat_template **out);
void tw_chat_template_free(tw_chat_template *t); /* NULL is a no-op */

tw_chat_kind tw_chat_template_kind(const tw_chat_template *t);
const char *tw_chat_template_name(const tw_chat_template *t);
/* "chatml, llama3, llama2, mistral, alpaca" (static). */
const char *tw_chat_template_names(void);
/* The default system prompt, NULL when none. */
const char *tw_chat_template_default_system(const tw_chat_template *t);
/* Text of the end-of-turn token (to look up with tw_tokenizer_find), NULL when none. */
const char *tw_chat_template_eot(const tw_chat_template *t);
/* Stop strings the format needs besides the end-of-turn token; *n of them (static). */
const char *const *tw_chat_template_stops(const tw_chat_template *t, size_t *n);

/* Appends the prompt for msgs[0..n) to out, with the generation prompt when
 * add_generation_prompt. TW_ERR_ARG for a role other than system/user/assistant, a NULL
 * content, or a system message that is not the first message; TW_ERR_NOMEM. */
tw_status tw_chat_template_render(const tw_chat_template *t, const tw_chat_msg *msgs, size_t n,
                                  int add_generation_prompt, tw_sb *out);

#ifdef __cplusplus
}
#endif
#endif
