/*
 * tool.h - the subcommands of the pagewright command, one file each.
 */
#ifndef PW_TOOL_H
#define PW_TOOL_H

#include <stddef.h>
#include <stdint.h>

struct mnt_entry;
struct pw_stats;

int cmd_mount(int argc, char **argv);
int cmd_stat(int argc, char **argv);
int cmd_sync(int argc, char **argv);
int cmd_umount(int argc, char **argv);
int cmd_demo(int argc, char **argv);

/* The mount at arg, which must be pagewright's; otherwise one line on
 * stderr ("pagewright CMD: ... is not a pagewright mount") and exit 1. */
void tool_find_mount(const char *cmd, const char *arg, struct mnt_entry *e);

/* stat.c: pagewright's cache counters as "key value" lines (the part of a
 * stats reply that is not about FUSE), and the report `pagewright stat`
 * prints from a whole reply. */
size_t stats_format_cache(char *buf, size_t size, const struct pw_stats *s);
void stats_report(const char *text);
/* One number of a stats reply; 0 if it is not there. */
uint64_t stats_num(const char *text, const char *key);

#endif
