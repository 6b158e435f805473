/* fuzz_hfconfig.c: hf_config_parse on arbitrary bytes (a config.json body). A config that
 * parses must satisfy the struct's promises (positive sizes, kv heads dividing heads, a known
 * architecture and activation); one that does not must leave a one-line message naming it. */
#include "hfconfig.h"

#include <stdint.h>
#include <string.h>

#define NAME "fuzz/config.json"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    hf_config c;
    tw_status rc = hf_config_parse((const char *)data, size, NAME, &c);
    if (rc != TW_OK) {
        const char *msg = tw_errmsg();
        TW_ASSERT(tw_errcode() == rc);
        TW_ASSERT(strchr(msg, '\n') == NULL);
        TW_ASSERT(rc == TW_ERR_NOMEM || strstr(msg, NAME) != NULL);
        return 0;
    }
    TW_ASSERT(hf_arch_name(c.arch) != NULL && strcmp(c.model_type, hf_arch_name(c.arch)) == 0);
    TW_ASSERT(hf_act_name(c.act) != NULL);
    TW_ASSERT(c.hidden_size > 0 && c.intermediate_size > 0 && c.n_layers > 0 && c.vocab_size > 0);
    TW_ASSERT(c.n_heads > 0 && c.n_kv_heads > 0 && c.n_heads % c.n_kv_heads == 0);
    TW_ASSERT(c.head_dim > 0 && c.max_position_embeddings > 0);
    TW_ASSERT(c.n_eos >= 0 && c.n_eos <= HF_MAX_EOS);
    TW_ASSERT(c.norm_eps > 0 && c.norm_eps <= 1);
    TW_ASSERT(c.uses_rope ? c.rope_theta > 0 : c.rope_theta == 0);
    TW_ASSERT(memchr(c.model_type, 0, sizeof c.model_type) && memchr(c.torch_dtype, 0, sizeof c.torch_dtype));
    return 0;
}
