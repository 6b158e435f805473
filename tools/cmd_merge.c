/* cmd_merge.c: twin merge -m BASE --lora ADAPTER -o OUT.gguf [--type T]: a LoRA adapter (a PEFT
 * folder or a llama.cpp GGUF LoRA, engine/lora.h) merged into its base GGUF model, written as
 * a standalone GGUF that any llama.cpp-compatible runtime loads without the adapter.
 *
 * Each adapted weight becomes W + scale * B A, one row at a time (lora_merge_gguf). Without
 * --type the merged weights keep their type (K-quants, which twin does not write, become q8_0)
 * and every other tensor is copied byte for byte. With --type the merged model is then
 * converted as `twin quantize` converts (the same rules and code: cmd_quantize), from f32
 * merged weights, so the adapter's contribution is rounded once. */
#include "cli.h"
#include "lora.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *out) {
    fprintf(out,
            "usage: twin merge -m BASE --lora ADAPTER -o OUT.gguf [--type T]\n\n"
            "Merges a LoRA adapter into its base model and writes the result as one GGUF file.\n"
            "  -m BASE         the base model: a GGUF file or a name from twin model fetch\n"
            "                  (llama-family architectures: llama, qwen2)\n"
            "  --lora ADAPTER  a PEFT adapter folder (adapter_config.json +\n"
            "                  adapter_model.safetensors) or a llama.cpp GGUF LoRA file\n"
            "  -o OUT.gguf     where to write the merged model (atomically)\n"
            "  --type T        convert the merged model's weight matrices to T (f32 f16 bf16\n"
            "                  q8_0 q4_0 q4_1), as twin quantize does; default: each merged weight\n"
            "                  keeps its type, everything else is copied unchanged\n\n"
            "The adapter must have been made for this base: its architecture, layer count and\n"
            "shapes must fit, and a base sha256 stored in the adapter must match the file.\n\n"
            "exit status: 0 success, 1 runtime error (unreadable files, an adapter for another\n"
            "model, write error), 2 bad usage\n");
}

static const char *const type_names[] = {"f32", "f16", "bf16", "q8_0", "q4_0", "q4_1"};

int cmd_merge(int argc, char **argv) {
    const char *model = NULL, *adapter = NULL, *out = NULL, *type = NULL;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        if (cli_is_help(argv[i])) {
            usage(stdout);
            return CLI_OK;
        }
        if (cli_opt(argc, argv, &i, "-m", &v) || cli_opt(argc, argv, &i, "--model", &v)) {
            if (!v) return cli_fail(CLI_USAGE, "merge", "-m needs a value (BASE)");
            model = v;
        } else if (cli_opt(argc, argv, &i, "--lora", &v)) {
            if (!v) return cli_fail(CLI_USAGE, "merge", "--lora needs a value (ADAPTER)");
            adapter = v;
        } else if (cli_opt(argc, argv, &i, "-o", &v)) {
            if (!v) return cli_fail(CLI_USAGE, "merge", "-o needs a value (OUT.gguf)");
            out = v;
        } else if (cli_opt(argc, argv, &i, "--type", &v)) {
            if (!v) return cli_fail(CLI_USAGE, "merge", "--type needs a value");
            type = v;
        } else {
            return cli_fail(CLI_USAGE, "merge", "unexpected argument '%s' (see twin merge --help)",
                            argv[i]);
        }
    }
    if (!model || !adapter || !out) {
        usage(stderr);
        return cli_fail(CLI_USAGE, "merge", "-m BASE, --lora ADAPTER and -o OUT.gguf are required");
    }
    if (type) {
        int ok = 0;
        for (size_t k = 0; k < sizeof type_names / sizeof *type_names; k++)
            ok |= !strcmp(type, type_names[k]);
        if (!ok)
            return cli_fail(CLI_USAGE, "merge", "--type '%s': expected f32, f16, bf16, q8_0, q4_0 "
                                                "or q4_1",
                            type);
    }
    char *base_path = cli_resolve_model("merge", model);
    if (!base_path) return CLI_ERR;
    int rc = CLI_OK;
    tw_backend *be = NULL;
    lora_set *s = NULL;
    char *tmp = NULL;
    lora_base base;
    if (tw_is_dir(base_path)) {
        rc = cli_fail(CLI_ERR, "merge", "%s: a folder; merge writes GGUF from a GGUF base (convert "
                                        "the HF model to GGUF first)",
                      base_path);
        goto done;
    }
    if (lora_base_from_gguf(base_path, &base) || lora_model_hash(base_path, base.sha256) ||
        tw_backend_open("cpu", &be) || lora_load(be, adapter, &base, &s)) {
        rc = cli_fail_status("merge");
        goto done;
    }
    fprintf(stderr, "merging %d adapters (rank %d, scale %g) into %s\n",
            (int)lora_set_n_adapters(s), (int)lora_set_config(s)->rank,
            (double)lora_set_scale(s), base_path);
    if (!type) {
        if (lora_merge_gguf(base_path, s, out, TW_DTYPE_COUNT)) rc = cli_fail_status("merge");
    } else {
        tw_sb sb;
        tw_sb_init(&sb);
        tw_sb_printf(&sb, "%s.merge-f32.%ld.gguf", out, (long)getpid());
        tmp = tw_sb_take(&sb);
        if (!tmp) {
            rc = cli_fail(CLI_ERR, "merge", "out of memory");
        } else if (lora_merge_gguf(base_path, s, tmp, TW_DTYPE_F32)) {
            rc = cli_fail_status("merge");
        } else {
            char *qargv[] = {"quantize", tmp, (char *)out, (char *)type, NULL};
            rc = cmd_quantize(4, qargv);
        }
        if (tmp) unlink(tmp);
    }
    if (!rc) fprintf(stderr, "wrote %s\n", out);
done:
    tw_free(tmp);
    lora_set_free(s);
    tw_backend_free(be);
    tw_free(base_path);
    return rc;
}
