/*
 * tool.h - the `ckpt` command-line tool's subcommands.  Each one takes the
 * arguments after its name (argv[0] is the subcommand) and returns the
 * process exit status.
 */
#ifndef CKPT_TOOL_H
#define CKPT_TOOL_H

/* `ckpt kcheck`: runs ckpt_kernel_probe(), prints what it found and a
 * verdict.  Exit status 0 when the kernel is safe for libckpt, 1 when not,
 * 2 on a usage error.  (kcheck.c) */
int ckpt_cmd_kcheck(int argc, char **argv);

#endif
