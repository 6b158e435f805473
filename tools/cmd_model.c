/* cmd_model.c: twin model (being written; see the foundation issue). */
#include "cli.h"

int cmd_model(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return cli_fail(CLI_ERR, "model", "not built yet");
}

char *cli_resolve_model(const char *cmd, const char *model) {
    if (tw_path_exists(model)) return tw_strdup(model);
    cli_fail(CLI_ERR, cmd, "%s: no such model file or folder", model);
    return NULL;
}
