/* crawl_files.c: file classification and small decoders for the file crawlers
 * (crawl_files.h). The tables are lists a reader can check at a glance; lookups are linear
 * because they are short and run once per file. */
#include "crawl_files.h"

#include <string.h>

static int lower(int c) { return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c; }

static int ieq(const char *a, size_t an, const char *b) {
    size_t bn = strlen(b);
    if (an != bn) return 0;
    for (size_t i = 0; i < an; i++)
        if (lower((unsigned char)a[i]) != lower((unsigned char)b[i])) return 0;
    return 1;
}

/* The base name of path (after the last '/'). */
static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* The extension of a base name without its dot ("" when none; a leading dot as in ".bashrc"
 * is not an extension). */
static const char *extension(const char *base) {
    const char *d = strrchr(base, '.');
    return d && d != base ? d + 1 : "";
}

typedef struct {
    const char *ext;
    const char *content_type;
    const char *language;
} ext_kind;

/* Writing (docs) and source code by extension. Data formats (json, yaml, toml, xml, csv) are
 * left out on purpose: they are configuration, not the author's writing or code style. */
static const ext_kind ext_kinds[] = {
    {"md", "markdown", "Markdown"}, {"markdown", "markdown", "Markdown"},
    {"mdx", "markdown", "Markdown"}, {"txt", "text", "Text"}, {"rst", "text", "reStructuredText"},
    {"adoc", "text", "AsciiDoc"}, {"org", "text", "Org"}, {"tex", "text", "TeX"},
    {"html", "html", "HTML"}, {"htm", "html", "HTML"},
    {"c", "code", "C"}, {"h", "code", "C"}, {"cc", "code", "C++"}, {"cpp", "code", "C++"},
    {"cxx", "code", "C++"}, {"hpp", "code", "C++"}, {"hh", "code", "C++"}, {"hxx", "code", "C++"},
    {"cu", "code", "CUDA"}, {"cuh", "code", "CUDA"}, {"m", "code", "Objective-C"},
    {"mm", "code", "Objective-C++"}, {"cs", "code", "C#"}, {"java", "code", "Java"},
    {"kt", "code", "Kotlin"}, {"kts", "code", "Kotlin"}, {"scala", "code", "Scala"},
    {"groovy", "code", "Groovy"}, {"go", "code", "Go"}, {"rs", "code", "Rust"},
    {"swift", "code", "Swift"}, {"zig", "code", "Zig"}, {"py", "code", "Python"},
    {"pyi", "code", "Python"}, {"ipynb", "code", "Jupyter Notebook"}, {"rb", "code", "Ruby"},
    {"php", "code", "PHP"}, {"pl", "code", "Perl"}, {"pm", "code", "Perl"},
    {"lua", "code", "Lua"}, {"r", "code", "R"}, {"jl", "code", "Julia"},
    {"js", "code", "JavaScript"}, {"mjs", "code", "JavaScript"}, {"cjs", "code", "JavaScript"},
    {"jsx", "code", "JavaScript"}, {"ts", "code", "TypeScript"}, {"tsx", "code", "TypeScript"},
    {"vue", "code", "Vue"}, {"svelte", "code", "Svelte"}, {"css", "code", "CSS"},
    {"scss", "code", "SCSS"}, {"sass", "code", "Sass"}, {"less", "code", "Less"},
    {"sh", "code", "Shell"}, {"bash", "code", "Shell"}, {"zsh", "code", "Shell"},
    {"fish", "code", "Shell"}, {"ps1", "code", "PowerShell"}, {"sql", "code", "SQL"},
    {"hs", "code", "Haskell"}, {"ml", "code", "OCaml"}, {"mli", "code", "OCaml"},
    {"fs", "code", "F#"}, {"ex", "code", "Elixir"}, {"exs", "code", "Elixir"},
    {"erl", "code", "Erlang"}, {"clj", "code", "Clojure"}, {"cljs", "code", "Clojure"},
    {"lisp", "code", "Common Lisp"}, {"el", "code", "Emacs Lisp"}, {"scm", "code", "Scheme"},
    {"dart", "code", "Dart"}, {"nim", "code", "Nim"}, {"v", "code", "Verilog"},
    {"sv", "code", "SystemVerilog"}, {"vhd", "code", "VHDL"}, {"asm", "code", "Assembly"},
    {"s", "code", "Assembly"}, {"f90", "code", "Fortran"}, {"cmake", "code", "CMake"},
    {"mk", "code", "Makefile"}, {"proto", "code", "Protocol Buffers"},
    {"gradle", "code", "Gradle"}, {"tf", "code", "HCL"}, {"nix", "code", "Nix"},
};

/* Whole file names that are code or docs whatever their extension. */
static const ext_kind name_kinds[] = {
    {"README", "text", "Text"},          {"CHANGELOG", "text", "Text"},
    {"Makefile", "code", "Makefile"},    {"GNUmakefile", "code", "Makefile"},
    {"CMakeLists.txt", "code", "CMake"}, {"Dockerfile", "code", "Dockerfile"},
    {"Rakefile", "code", "Ruby"},        {"Gemfile", "code", "Ruby"},
    {"Justfile", "code", "Just"},        {"meson.build", "code", "Meson"},
};

int crawl_file_kind(const char *path, crawl_file_kind_t *kind) {
    kind->content_type = NULL;
    kind->language = NULL;
    if (!path) return 0;
    const char *base = base_name(path);
    for (size_t i = 0; i < sizeof name_kinds / sizeof name_kinds[0]; i++)
        if (ieq(base, strlen(base), name_kinds[i].ext)) {
            kind->content_type = name_kinds[i].content_type;
            kind->language = name_kinds[i].language;
            return 1;
        }
    const char *ext = extension(base);
    if (!*ext) return 0;
    for (size_t i = 0; i < sizeof ext_kinds / sizeof ext_kinds[0]; i++)
        if (ieq(ext, strlen(ext), ext_kinds[i].ext)) {
            kind->content_type = ext_kinds[i].content_type;
            kind->language = ext_kinds[i].language;
            return 1;
        }
    return 0;
}

/* Folders that hold other people's code or build output. */
static const char *const vendored_dirs[] = {
    "node_modules", "vendor", "third_party", "third-party", "thirdparty", "dist", "build",
    ".git", "__pycache__", "bower_components", "site-packages", ".venv", "venv", ".tox",
    "Pods", "target",
};

/* Files written by package managers. */
static const char *const lock_files[] = {
    "package-lock.json", "yarn.lock", "pnpm-lock.yaml", "npm-shrinkwrap.json", "Cargo.lock",
    "poetry.lock", "Pipfile.lock", "pdm.lock", "uv.lock", "go.sum", "composer.lock",
    "Gemfile.lock", "mix.lock", "flake.lock", "Package.resolved", "pubspec.lock",
    "packages.lock.json", "conda-lock.yml",
};

/* Extensions of files that are not text (or are text no one writes by hand: svg, map). */
static const char *const binary_exts[] = {
    "png", "jpg", "jpeg", "gif", "bmp", "ico", "icns", "webp", "tif", "tiff", "psd", "svg",
    "pdf", "doc", "docx", "xls", "xlsx", "ppt", "pptx", "odt", "zip", "gz", "tgz", "bz2",
    "xz", "zst", "7z", "rar", "tar", "jar", "war", "class", "so", "dll", "dylib", "exe", "o",
    "obj", "a", "lib", "bin", "dat", "wasm", "pyc", "pyo", "whl", "egg", "woff", "woff2",
    "ttf", "otf", "eot", "mp3", "mp4", "wav", "flac", "ogg", "mov", "avi", "mkv", "webm",
    "db", "sqlite", "sqlite3", "gguf", "safetensors", "pt", "pth", "ckpt", "onnx", "npy",
    "npz", "h5", "hdf5", "pkl", "pickle", "parquet", "arrow", "map", "DS_Store",
};

const char *crawl_github_skip_reason(const char *path, int64_t size, size_t max_bytes, char *buf,
                                     size_t cap, size_t *folder_len) {
    if (folder_len) *folder_len = 0;
    if (!buf || cap == 0) return NULL;
    if (!path || !*path) {
        snprintf(buf, cap, "not source or docs (no path)");
        return buf;
    }
    /* Folders: every component but the last. */
    for (const char *p = path;;) {
        const char *slash = strchr(p, '/');
        if (!slash) break;
        for (size_t i = 0; i < sizeof vendored_dirs / sizeof vendored_dirs[0]; i++)
            if (ieq(p, (size_t)(slash - p), vendored_dirs[i])) {
                if (folder_len) *folder_len = (size_t)(slash - path);
                snprintf(buf, cap, "vendored (%s/)", vendored_dirs[i]);
                return buf;
            }
        p = slash + 1;
    }
    const char *base = base_name(path);
    size_t bl = strlen(base);
    for (size_t i = 0; i < sizeof lock_files / sizeof lock_files[0]; i++)
        if (ieq(base, bl, lock_files[i])) {
            snprintf(buf, cap, "lock file (%s)", lock_files[i]);
            return buf;
        }
    if ((bl > 7 && ieq(base + bl - 7, 7, ".min.js")) ||
        (bl > 8 && ieq(base + bl - 8, 8, ".min.css"))) {
        snprintf(buf, cap, "generated (minified %s)", ieq(base + bl - 3, 3, ".js") ? ".js" : ".css");
        return buf;
    }
    const char *ext = extension(base);
    for (size_t i = 0; *ext && i < sizeof binary_exts / sizeof binary_exts[0]; i++)
        if (ieq(ext, strlen(ext), binary_exts[i])) {
            snprintf(buf, cap, "binary (.%s)", binary_exts[i]);
            return buf;
        }
    if (max_bytes && size > 0 && (uint64_t)size > (uint64_t)max_bytes) {
        snprintf(buf, cap, "too large (%lld bytes > %zu)", (long long)size, max_bytes);
        return buf;
    }
    crawl_file_kind_t k;
    if (!crawl_file_kind(path, &k)) {
        if (*ext)
            snprintf(buf, cap, "not source or docs (.%.32s)", ext);
        else
            snprintf(buf, cap, "not source or docs (%.48s)", base);
        return buf;
    }
    return NULL;
}

int crawl_bytes_binary(const void *data, size_t n) {
    if (!data) return 0;
    return memchr(data, 0, n < 8192 ? n : 8192) != NULL;
}

/* 0..63 for the base64 alphabet, -1 for anything else. */
static int b64_value(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

tw_status crawl_base64_decode(const char *in, size_t n, char **out, size_t *out_len) {
    *out = NULL;
    *out_len = 0;
    if (!in && n) return tw_error(TW_ERR_ARG, "base64: NULL input");
    char *buf = tw_malloc(n / 4 * 3 + 4);
    if (!buf) return TW_ERR_NOMEM;
    size_t len = 0, pad_at = 0;
    uint32_t acc = 0;
    int have = 0, pads = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
        if (c == '=') {
            if (!pads) pad_at = i;
            pads++;
            continue;
        }
        int v = b64_value(c);
        if (v < 0 || pads) {
            tw_free(buf);
            return tw_error(TW_ERR_FORMAT, "base64: %s at byte %zu",
                            pads ? "data after '=' padding" : "a character outside the alphabet",
                            i);
        }
        acc = (acc << 6) | (uint32_t)v;
        if (++have == 4) {
            buf[len++] = (char)(acc >> 16);
            buf[len++] = (char)(acc >> 8);
            buf[len++] = (char)acc;
            acc = 0;
            have = 0;
        }
    }
    /* 2 or 3 characters left carry 1 or 2 bytes; 1 left carries less than a byte. */
    if (have == 1 || pads > 2 || (pads && have + pads != 4)) {
        tw_free(buf);
        return tw_error(TW_ERR_FORMAT, "base64: %s at byte %zu",
                        have == 1 ? "a dangling character" : "wrong '=' padding",
                        have == 1 ? n : pad_at);
    }
    if (have == 2) {
        buf[len++] = (char)(acc >> 4);
    } else if (have == 3) {
        buf[len++] = (char)(acc >> 10);
        buf[len++] = (char)(acc >> 2);
    }
    buf[len] = 0;
    *out = buf;
    *out_len = len;
    return TW_OK;
}

char *crawl_url_escape(const char *s, int keep_slash) {
    tw_sb sb;
    tw_sb_init(&sb);
    if (tw_sb_pct(&sb, s ? s : "", s ? strlen(s) : 0, keep_slash ? "/" : NULL)) {
        tw_sb_free(&sb);
        return NULL;
    }
    return tw_sb_take(&sb);
}

/* The line starting at text[i] (up to n): its end (the '\n' or n). */
static size_t line_end(const char *text, size_t n, size_t i) {
    const char *nl = memchr(text + i, '\n', n - i);
    return nl ? (size_t)(nl - text) : n;
}

/* A trimmed heap copy of s[0..l), without a trailing '\r' and closing '#'s; NULL when empty. */
static char *title_copy(const char *s, size_t l, int strip_hashes) {
    while (l && (*s == ' ' || *s == '\t')) s++, l--;
    while (l && (s[l - 1] == ' ' || s[l - 1] == '\t' || s[l - 1] == '\r')) l--;
    if (strip_hashes) {
        size_t k = l;
        while (k && s[k - 1] == '#') k--;
        /* "# C#" keeps its '#': closing hashes only count after a space (CommonMark). */
        if (k < l && (k == 0 || s[k - 1] == ' ' || s[k - 1] == '\t')) {
            l = k;
            while (l && (s[l - 1] == ' ' || s[l - 1] == '\t')) l--;
        }
    }
    /* Surrounding quotes of a front matter value. */
    if (l >= 2 && ((s[0] == '"' && s[l - 1] == '"') || (s[0] == '\'' && s[l - 1] == '\''))) {
        s++;
        l -= 2;
    }
    /* A NUL inside would end the C string early: the title is what comes before it. */
    const char *nul = memchr(s, 0, l);
    if (nul) l = (size_t)(nul - s);
    return l ? tw_strndup(s, l) : NULL;
}

char *crawl_text_title(const char *text, size_t n, int markdown) {
    if (!text || !markdown) return NULL;
    size_t i = 0;
    char *fm_title = NULL;
    if (n >= 3 && !memcmp(text, "\xEF\xBB\xBF", 3)) i = 3;
    /* YAML front matter: "---" on the first line up to the next "---" or "...". */
    if (n - i >= 3 && !memcmp(text + i, "---", 3)) {
        size_t e = line_end(text, n, i);
        size_t j = e < n ? e + 1 : n;
        int closed = 0;
        while (j < n) {
            size_t le = line_end(text, n, j);
            size_t l = le - j;
            while (l && (text[j + l - 1] == '\r' || text[j + l - 1] == ' ')) l--;
            if ((l == 3 && (!memcmp(text + j, "---", 3) || !memcmp(text + j, "...", 3)))) {
                closed = 1;
                j = le < n ? le + 1 : n;
                break;
            }
            if (!fm_title && l > 6 && !memcmp(text + j, "title:", 6))
                fm_title = title_copy(text + j + 6, l - 6, 0);
            j = le < n ? le + 1 : n;
        }
        if (closed) {
            i = j;
        } else {
            tw_free(fm_title); /* not front matter after all */
            fm_title = NULL;
        }
    }
    int in_fence = 0;
    while (i < n) {
        size_t e = line_end(text, n, i);
        const char *s = text + i;
        size_t l = e - i, ind = 0;
        while (ind < l && ind < 4 && s[ind] == ' ') ind++;
        if (ind < 4 && l - ind >= 3 && (!memcmp(s + ind, "```", 3) || !memcmp(s + ind, "~~~", 3))) {
            in_fence = !in_fence;
        } else if (!in_fence && ind < 4 && ind < l && s[ind] == '#') {
            size_t h = ind;
            while (h < l && s[h] == '#') h++;
            if (h - ind <= 6 && (h == l || s[h] == ' ' || s[h] == '\t' || s[h] == '\r')) {
                char *t = title_copy(s + h, l - h, 1);
                if (t) {
                    tw_free(fm_title);
                    return t;
                }
            }
        }
        i = e < n ? e + 1 : n;
    }
    return fm_title;
}
