/* cmd_tokenize.c: twin tokenize (being written; see the foundation issue). */
#include "cli.h"

int cmd_tokenize(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return cli_fail(CLI_ERR, "tokenize", "not built yet");
}
