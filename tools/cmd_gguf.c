/* cmd_gguf.c: twin gguf (being written; see the foundation issue). */
#include "cli.h"

int cmd_gguf(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return cli_fail(CLI_ERR, "gguf", "not built yet");
}
