/* files.c: mmap'd reading, whole-file reading, atomic writes, directories (core.h). */
#include "core.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

tw_status tw_mfile_open(tw_mfile *mf, const char *path) {
    memset(mf, 0, sizeof *mf);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return tw_error(TW_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return tw_error(TW_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return tw_error(TW_ERR_IO, "%s: not a regular file", path);
    }
    mf->path = tw_strdup(path);
    if (!mf->path) {
        close(fd);
        return TW_ERR_NOMEM;
    }
    mf->size = (size_t)st.st_size;
    if (mf->size > 0) {
        void *p = mmap(NULL, mf->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(fd);
            tw_free(mf->path);
            memset(mf, 0, sizeof *mf);
            return tw_error(TW_ERR_IO, "%s: cannot mmap: %s", path, strerror(e));
        }
        mf->data = p;
    }
    close(fd);
    return TW_OK;
}

void tw_mfile_close(tw_mfile *mf) {
    if (mf->data) munmap((void *)mf->data, mf->size);
    tw_free(mf->path);
    memset(mf, 0, sizeof *mf);
}

tw_status tw_file_read(const char *path, char **out, size_t *out_len) {
    *out = NULL;
    if (out_len) *out_len = 0;
    FILE *fp = fopen(path, "rb");
    if (!fp) return tw_error(TW_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    tw_sb sb;
    tw_sb_init(&sb);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, fp)) > 0) {
        if (tw_sb_append(&sb, buf, n)) {
            fclose(fp);
            tw_sb_free(&sb);
            return tw_error(TW_ERR_NOMEM, "%s: out of memory reading the file", path);
        }
    }
    int err = ferror(fp);
    fclose(fp);
    if (err) {
        tw_sb_free(&sb);
        return tw_error(TW_ERR_IO, "%s: read error", path);
    }
    if (out_len) *out_len = sb.len;
    *out = tw_sb_take(&sb);
    return *out ? TW_OK : TW_ERR_NOMEM;
}

tw_status tw_afile_open(tw_afile *af, const char *path) {
    memset(af, 0, sizeof *af);
    tw_sb sb;
    tw_sb_init(&sb);
    tw_sb_printf(&sb, "%s.tmp.%ld", path, (long)getpid());
    if (sb.failed) return TW_ERR_NOMEM;
    af->tmp_path = tw_sb_take(&sb);
    af->path = tw_strdup(path);
    if (!af->path) {
        tw_free(af->tmp_path);
        return TW_ERR_NOMEM;
    }
    af->fp = fopen(af->tmp_path, "wb");
    if (!af->fp) {
        tw_status s = tw_error(TW_ERR_IO, "%s: cannot create: %s", af->tmp_path, strerror(errno));
        tw_free(af->tmp_path);
        tw_free(af->path);
        memset(af, 0, sizeof *af);
        return s;
    }
    return TW_OK;
}

tw_status tw_afile_write(tw_afile *af, const void *data, size_t n) {
    if (n && fwrite(data, 1, n, af->fp) != n)
        return tw_error(TW_ERR_IO, "%s: write failed: %s", af->tmp_path, strerror(errno));
    return TW_OK;
}

void tw_afile_abort(tw_afile *af) {
    if (af->fp) fclose(af->fp);
    if (af->tmp_path) unlink(af->tmp_path);
    tw_free(af->tmp_path);
    tw_free(af->path);
    memset(af, 0, sizeof *af);
}

tw_status tw_afile_commit(tw_afile *af) {
    tw_status s = TW_OK;
    if (fflush(af->fp) != 0 || fsync(fileno(af->fp)) != 0)
        s = tw_error(TW_ERR_IO, "%s: flush failed: %s", af->tmp_path, strerror(errno));
    if (fclose(af->fp) != 0 && s == TW_OK)
        s = tw_error(TW_ERR_IO, "%s: close failed: %s", af->tmp_path, strerror(errno));
    af->fp = NULL;
    if (s == TW_OK && rename(af->tmp_path, af->path) != 0)
        s = tw_error(TW_ERR_IO, "%s: rename failed: %s", af->path, strerror(errno));
    if (s != TW_OK) unlink(af->tmp_path);
    tw_free(af->tmp_path);
    tw_free(af->path);
    memset(af, 0, sizeof *af);
    return s;
}

tw_status tw_file_write_atomic(const char *path, const void *data, size_t n) {
    tw_afile af;
    tw_status s = tw_afile_open(&af, path);
    if (s) return s;
    s = tw_afile_write(&af, data, n);
    if (s) {
        tw_afile_abort(&af);
        return s;
    }
    return tw_afile_commit(&af);
}

int tw_path_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

int tw_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

tw_status tw_mkdir_p(const char *path) {
    char *p = tw_strdup(path);
    if (!p) return TW_ERR_NOMEM;
    size_t n = strlen(p);
    for (size_t i = 1; i <= n; i++) {
        if (p[i] == '/' || p[i] == 0) {
            char c = p[i];
            p[i] = 0;
            if (mkdir(p, 0755) != 0 && errno != EEXIST) {
                tw_status s = tw_error(TW_ERR_IO, "%s: cannot create directory: %s", p,
                                       strerror(errno));
                tw_free(p);
                return s;
            }
            p[i] = c;
        }
    }
    tw_free(p);
    if (!tw_is_dir(path)) return tw_error(TW_ERR_IO, "%s: exists and is not a directory", path);
    return TW_OK;
}
