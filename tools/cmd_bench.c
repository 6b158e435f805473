/* cmd_bench.c: twin bench (being written; see the foundation issue). */
#include "cli.h"

int cmd_bench(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return cli_fail(CLI_ERR, "bench", "not built yet");
}
