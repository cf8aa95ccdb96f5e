/*
 * tool.h - the subcommands of the pagewright command, one file each.
 */
#ifndef PW_TOOL_H
#define PW_TOOL_H

int cmd_mount(int argc, char **argv);

#endif
