/* cmd_info.c: twin info (being written; see the foundation issue). */
#include "cli.h"

int cmd_info(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return cli_fail(CLI_ERR, "info", "not built yet");
}
