/* replay_driver.c: a main() for fuzz targets when libFuzzer is not available (gcc builds).
 * Runs LLVMFuzzerTestOneInput on every file of the given folders or files, then on a few
 * thousand seeded mutations of them (bit flips, truncations, byte overwrites), so the smoke
 * run still exercises the parser's error paths. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t next_rand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void run_mutations(const uint8_t *data, size_t size) {
    LLVMFuzzerTestOneInput(data, size);
    if (size == 0) return;
    uint8_t *buf = malloc(size);
    if (!buf) return;
    for (int k = 0; k < 2000; k++) {
        memcpy(buf, data, size);
        size_t n = size;
        int edits = 1 + (int)(next_rand() % 4);
        for (int e = 0; e < edits; e++) {
            size_t at = next_rand() % n;
            switch (next_rand() % 4) {
            case 0: buf[at] ^= (uint8_t)(1u << (next_rand() % 8)); break;
            case 1: buf[at] = (uint8_t)next_rand(); break;
            case 2: buf[at] = (next_rand() & 1) ? 0xFF : 0x00; break;
            case 3: n = at + 1; break; /* truncate */
            }
        }
        LLVMFuzzerTestOneInput(buf, n);
    }
    free(buf);
}

static void run_file(const char *path) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *buf = malloc(n > 0 ? (size_t)n : 1);
    size_t got = buf ? fread(buf, 1, (size_t)n, fp) : 0;
    fclose(fp);
    if (buf) run_mutations(buf, got);
    free(buf);
}

int main(int argc, char **argv) {
    int files = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) continue;
        if (S_ISDIR(st.st_mode)) {
            DIR *d = opendir(argv[i]);
            struct dirent *e;
            while (d && (e = readdir(d))) {
                if (e->d_name[0] == '.') continue;
                char p[4096];
                snprintf(p, sizeof p, "%s/%s", argv[i], e->d_name);
                run_file(p);
                files++;
            }
            if (d) closedir(d);
        } else {
            run_file(argv[i]);
            files++;
        }
    }
    fprintf(stderr, "replayed %d seed files with mutations\n", files);
    return 0;
}
