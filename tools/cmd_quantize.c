/* cmd_quantize.c: twin quantize IN.gguf OUT.gguf TYPE: converts a GGUF model's weights to
 * another type, keeping its metadata (general.file_type updated), as llama.cpp's
 * llama-quantize does for the same target types.
 *
 * Which tensors change (the same choices as llama.cpp's llama-quant.cpp, for the types twin
 * writes):
 *   - only weight matrices: tensors with two or more non-trivial dimensions, except norms
 *     (*_norm.weight), position_embd, token_types, ffn_gate_inp and ssm_conv1d; everything
 *     else (norms, biases, 1-D tensors) is copied as it is;
 *   - the output head (output.weight, or token_embd.weight when the model ties the head to
 *     it) goes to q8_0 for q4_0/q4_1 targets: llama.cpp picks q6_K there, falling back to
 *     q8_0 when a row is not a multiple of 256 (SmolLM2's 576); twin does not write K-quants,
 *     so it takes q8_0 always. --pure turns this off (every matrix gets TYPE);
 *   - a matrix whose rows are not a whole number of TYPE's blocks becomes f16 (llama.cpp's
 *     fallback), a matrix already of the target type is copied byte for byte.
 * Converting goes through f32: tw_dequantize_row then tw_quantize_row (engine/quant.h, whose
 * quantizers round as ggml's reference ones do). Requantizing an already quantized model
 * (q4_1 -> q8_0) adds the new type's rounding on top of the old one; llama.cpp asks for
 * --allow-requantize there, twin says so on stderr and goes on.
 * Rows are converted in parallel (--threads / TWIN_THREADS). The output is written atomically
 * (temporary file + rename) by engine/gguf.h's writer; IN is mapped, never modified.
 */
#include "cli.h"
#include "gguf.h"
#include "quant.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out) {
    fprintf(out,
            "usage: twin quantize IN.gguf OUT.gguf TYPE [--pure] [--verbose]\n\n"
            "Writes OUT.gguf: IN's metadata (general.file_type set for TYPE) and tensors, with\n"
            "the weight matrices converted to TYPE, one of: f32 f16 bf16 q8_0 q4_0 q4_1.\n"
            "Norms, biases, 1-D tensors and position embeddings are copied unchanged; for q4_0\n"
            "and q4_1 the output head (or the tied token embedding) is q8_0, as llama.cpp\n"
            "chooses for rows that are not a multiple of 256, unless --pure. A matrix whose\n"
            "rows do not split into TYPE's blocks is written as f16.\n"
            "  --pure      every weight matrix to TYPE (no q8_0 head)\n"
            "  --verbose   one line per tensor: name, shape, old type -> new type\n\n"
            "exit status: 0 success, 1 unreadable input / unsupported tensor / write error,\n"
            "2 bad usage\n");
}

typedef struct {
    const char *name;
    tw_dtype type;
    uint32_t llama_ftype; /* general.file_type (llama_ftype) */
} quant_target;

static const quant_target quant_targets[] = {
    {"f32", TW_DTYPE_F32, 0},   {"f16", TW_DTYPE_F16, 1},   {"bf16", TW_DTYPE_BF16, 32},
    {"q8_0", TW_DTYPE_Q8_0, 7}, {"q4_0", TW_DTYPE_Q4_0, 2}, {"q4_1", TW_DTYPE_Q4_1, 3},
};
#define N_TARGETS (sizeof quant_targets / sizeof quant_targets[0])

static int ends_with(gguf_str s, const char *suffix) {
    size_t n = strlen(suffix);
    return s.len >= n && memcmp(s.ptr + s.len - n, suffix, n) == 0;
}

static int contains(gguf_str s, const char *needle) {
    size_t n = strlen(needle);
    for (uint64_t i = 0; i + n <= s.len; i++)
        if (memcmp(s.ptr + i, needle, n) == 0) return 1;
    return 0;
}

/* Dimensions that count (ggml_n_dims): the last one above 1, at least 1. */
static int tensor_n_dims(const gguf_tensor *t) {
    int n = 1;
    for (int d = 0; d < GGUF_MAX_DIMS; d++)
        if (t->ne[d] > 1) n = d + 1;
    return n;
}

/* A weight matrix llama.cpp would quantize. */
static int quant_allowed(const gguf_tensor *t) {
    if (tensor_n_dims(t) < 2) return 0;
    if (!ends_with(t->name, "weight")) return 0;
    static const char *const keep[] = {"_norm.weight", "ffn_gate_inp.weight", "position_embd.weight",
                                       "token_types.weight", "ssm_conv1d"};
    for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++)
        if (contains(t->name, keep[i])) return 0;
    return 1;
}

/* The type tensor t gets when the model is quantized to target. */
static tw_dtype quant_choose(const gguf_tensor *t, const quant_target *target, int is_head, int pure) {
    if (!quant_allowed(t)) return t->type;
    tw_dtype ty = target->type;
    if (!pure && is_head && (ty == TW_DTYPE_Q4_0 || ty == TW_DTYPE_Q4_1)) ty = TW_DTYPE_Q8_0;
    if (t->ne[0] % tw_dtype_block_size(ty) != 0) ty = TW_DTYPE_F16;
    return ty;
}

/* Converts the rows of t (type src_type) to dst of type ty, in parallel. TW_OK or the first
 * row's error. */
static tw_status quant_convert(const gguf_tensor *t, tw_dtype ty, void *dst, int threads) {
    int64_t ne0 = t->ne[0];
    int64_t rows = 1;
    for (int d = 1; d < GGUF_MAX_DIMS; d++) rows *= t->ne[d];
    size_t src_rb = tw_dtype_row_bytes(t->type, ne0), dst_rb = tw_dtype_row_bytes(ty, ne0);
    int failed = 0;
#pragma omp parallel num_threads(threads)
    {
        float *row = tw_malloc((size_t)ne0 * sizeof(float));
        if (!row) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            int f;
#pragma omp atomic read
            f = failed;
            if (f || !row) continue;
            if (tw_dequantize_row(t->type, (const char *)t->data + (size_t)r * src_rb, row, ne0) != TW_OK ||
                tw_quantize_row(ty, row, (char *)dst + (size_t)r * dst_rb, ne0) != TW_OK) {
#pragma omp atomic write
                failed = 1;
            }
        }
        tw_free(row);
    }
    if (failed)
        return tw_error(TW_ERR_NOMEM, "tensor '%.*s': conversion %s -> %s failed", (int)t->name.len,
                        t->name.ptr, tw_dtype_name(t->type), tw_dtype_name(ty));
    return TW_OK;
}

static void print_shape(const gguf_tensor *t) {
    printf("[");
    for (uint32_t d = 0; d < t->n_dims; d++) printf("%s%lld", d ? ", " : "", (long long)t->ne[d]);
    printf("]");
}

int cmd_quantize(int argc, char **argv) {
    const char *pos[3];
    int n_pos = 0, pure = 0, verbose = 0;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            usage(stdout);
            return CLI_OK;
        } else if (cli_flag(argv, i, "--pure")) {
            pure = 1;
        } else if (cli_flag(argv, i, "--verbose") || cli_flag(argv, i, "-v")) {
            verbose = 1;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return cli_fail(CLI_USAGE, "quantize", "unknown option '%s' (twin quantize --help)", argv[i]);
        } else if (n_pos < 3) {
            pos[n_pos++] = argv[i];
        } else {
            return cli_fail(CLI_USAGE, "quantize", "unexpected argument '%s'", argv[i]);
        }
    }
    if (n_pos < 3) {
        usage(stderr);
        return CLI_USAGE;
    }
    const char *in_path = pos[0], *out_path = pos[1], *type_name = pos[2];
    const quant_target *target = NULL;
    for (size_t i = 0; i < N_TARGETS; i++)
        if (strcmp(type_name, quant_targets[i].name) == 0) target = &quant_targets[i];
    if (!target)
        return cli_fail(CLI_USAGE, "quantize", "TYPE '%s' is not one of f32 f16 bf16 q8_0 q4_0 q4_1",
                        type_name);

    gguf_file *in = gguf_open(in_path);
    if (!in) return cli_fail_status("quantize");
    int threads = tw_threads_get();
    if (threads < 1) threads = 1;

    uint64_t n_t = gguf_n_tensors(in);
    void **bufs = tw_calloc(n_t ? n_t : 1, sizeof *bufs);
    gguf_writer *w = gguf_writer_new(gguf_version(in) == 2 ? 2 : 3, 0);
    if (!bufs || !w) {
        tw_free(bufs);
        gguf_writer_free(w);
        gguf_close(in);
        return cli_fail(CLI_ERR, "quantize", "no memory");
    }
    int rc = CLI_OK;
    tw_status st = TW_OK;
    /* metadata, in the input's order; general.file_type and the quantization version follow */
    for (uint64_t i = 0; i < gguf_n_kv(in) && st == TW_OK; i++) {
        const gguf_kv *kv = gguf_kv_at(in, i);
        char key[256];
        if (kv->key.len >= sizeof key) {
            st = tw_error(TW_ERR_FORMAT, "%s: metadata key of %llu bytes is too long to copy", in_path,
                          (unsigned long long)kv->key.len);
            break;
        }
        memcpy(key, kv->key.ptr, kv->key.len);
        key[kv->key.len] = 0;
        st = gguf_writer_set_value(w, key, &kv->value);
    }
    int quantized = target->type != TW_DTYPE_F32 && target->type != TW_DTYPE_F16 && target->type != TW_DTYPE_BF16;
    if (st == TW_OK) st = gguf_writer_set_u32(w, "general.file_type", target->llama_ftype);
    if (st == TW_OK && quantized) st = gguf_writer_set_u32(w, "general.quantization_version", 2);

    int tied = gguf_find_tensor(in, "output.weight") == NULL;
    size_t n_conv = 0, n_same = 0, n_kept = 0, n_requant = 0;
    uint64_t out_bytes = 0, in_bytes = 0;
    double t0 = tw_now_s();
    for (uint64_t i = 0; i < n_t && st == TW_OK; i++) {
        const gguf_tensor *t = gguf_tensor_at(in, i);
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)(t->name.len < 127 ? t->name.len : 127), t->name.ptr);
        int is_head = gguf_str_eq(t->name, "output.weight") || (tied && gguf_str_eq(t->name, "token_embd.weight"));
        tw_dtype ty = quant_choose(t, target, is_head, pure);
        const void *data = t->data;
        in_bytes += t->nbytes;
        if (ty != t->type) {
            if (!tw_dtype_can_dequantize(t->type)) {
                st = tw_error(TW_ERR_UNSUPPORTED, "%s: tensor '%s' is %s, which twin cannot convert", in_path,
                              name, tw_dtype_name(t->type) ? tw_dtype_name(t->type) : "an unknown type");
                break;
            }
            int64_t rows = (int64_t)(t->nbytes / tw_dtype_row_bytes(t->type, t->ne[0]));
            size_t nb = tw_dtype_row_bytes(ty, t->ne[0]) * (size_t)rows;
            bufs[i] = tw_malloc(nb ? nb : 1);
            if (!bufs[i]) {
                st = tw_error(TW_ERR_NOMEM, "no memory for tensor '%s' (%zu bytes)", name, nb);
                break;
            }
            st = quant_convert(t, ty, bufs[i], threads);
            if (st != TW_OK) break;
            data = bufs[i];
            n_conv++;
            if (t->type != TW_DTYPE_F32 && t->type != TW_DTYPE_F16 && t->type != TW_DTYPE_BF16) n_requant++;
        } else if (quant_allowed(t)) {
            n_same++;
        } else {
            n_kept++;
        }
        out_bytes += tw_dtype_row_bytes(ty, t->ne[0]) * (t->nbytes / tw_dtype_row_bytes(t->type, t->ne[0]));
        if (verbose) {
            printf("  %-32s ", name);
            print_shape(t);
            printf(" %s -> %s%s\n", tw_dtype_name(t->type), tw_dtype_name(ty),
                   ty == t->type ? " (copied)" : "");
        }
        st = gguf_writer_add_tensor(w, name, ty, t->n_dims, t->ne, data);
    }
    if (st == TW_OK) st = gguf_writer_write(w, out_path);
    if (st != TW_OK) {
        rc = cli_fail_status("quantize");
        if (rc == CLI_USAGE) rc = CLI_ERR; /* a bad tensor or key is the file's fault, not usage */
    } else {
        if (n_requant && quantized)
            fprintf(stderr, "twin quantize: note: %zu tensors were already quantized; converting "
                            "them adds %s rounding to theirs\n", n_requant, target->name);
        printf("%s (%.1f MB) -> %s (%s, %.1f MB): %zu tensors converted, %zu already of their "
               "type, %zu kept (norms, biases, 1-D, position embeddings), %.2f s\n",
               in_path, (double)in_bytes / 1e6, out_path, target->name, (double)out_bytes / 1e6, n_conv,
               n_same, n_kept, tw_now_s() - t0);
    }
    for (uint64_t i = 0; i < n_t; i++) tw_free(bufs[i]);
    tw_free(bufs);
    gguf_writer_free(w);
    gguf_close(in);
    return rc;
}
